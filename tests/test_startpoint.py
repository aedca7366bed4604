"""The start point: parsed and checked once (`types.StartPoint`), carried by RunOptions and
RunRecord, and written to run.json under the keys it has always had (a run.json written before
StartPoint existed still loads, and is written back the same)."""

from __future__ import annotations

import json

import pytest

from sam3_video.errors import BadRequestError
from sam3_video.runfolder import RunRecord, read_record, write_record
from sam3_video.types import Edit, RunOptions, StartPoint

#: run.json as the code before StartPoint wrote it (RunRecord.to_json of that version), for a
#: continued run with a removal and two corrections
OLD_RUN_JSON = {
    "video": {"path": "/v/clip.mp4", "width": 176, "height": 144, "num_frames": 96, "fps": 25.0, "duration": 3.84,
              "rotation": 0, "codec": "h264", "has_audio": False, "variable_frame_rate": False},
    "prompts": ["person", "window"], "start_frame": 20, "direction": "forward", "max_frames": 15, "threshold": 0.4,
    "removed_ids": [3],
    "edits": [{"kind": "refine", "obj_id": 2, "points": [[10.5, 20.0]], "labels": [1], "box": None, "label": "",
               "positive": True},
              {"kind": "add_object", "obj_id": None, "points": [], "labels": [], "box": [1.0, 2.0, 30.0, 40.0],
               "label": "mirror", "positive": True}],
    "thresholds": {"score": 0.4, "new_det": 0.4}, "model": "test", "backend": "transformers", "device": "cpu",
    "frames_expected": 35, "software": "sam3-video 0.x", "results": "results.jsonl", "postprocessing": None,
    "continued_from": {"folder": "/runs/earlier", "frame": 20, "frames_kept": 20}, "stride": 1, "status": "complete",
    "frames_done": 35, "frame_range": [0, 34], "error": None, "objects_per_label": {"person": 2}, "elapsed_s": 3.5,
    "notice": None,
}


def test_a_start_point_is_parsed_once():
    fix = Edit("exemplar", box=(1, 2, 3, 4))
    start = StartPoint(3, ("car, person", "Car"), 0.5, (5, 2, 2), [fix])  # type: ignore[arg-type]
    assert start == StartPoint(3, ("car", "person"), 0.5, (2, 5), (fix,))
    assert start.removing([7, 2]).removed == (2, 5, 7)
    assert start.with_edits(()).edits == () and start.edits == (fix,)  # frozen: a new one each time
    again = start.continuing("/runs/a", 9)
    assert again == StartPoint(9, ("car", "person"), 0.5, continue_from="/runs/a")
    assert StartPoint(4, (), continue_from="/runs/a").phrases == ()  # continuing: the earlier run's phrases


@pytest.mark.parametrize("kwargs, match", [
    (dict(frame=-1, phrases=("car",)), "Frame -1 is outside this video"),
    (dict(phrases=()), "prompt is empty"),
    (dict(phrases=(" , ",)), "prompt is empty"),
    (dict(phrases=("car",), threshold=1.5), "not a score"),
    (dict(phrases=("car",), threshold="high"), "not a number"),
    (dict(phrases=("car",), removed=("x",)), "must be object ids"),
    (dict(phrases=("car",), removed=3), "must be object ids"),
    (dict(phrases=("car",), edits=("click",)), "not a click or a box"),
    (dict(phrases=("car",), edits=Edit("exemplar")), None),
])
def test_bad_start_points_are_sentences(kwargs, match):
    if match is None:  # one Edit for a tuple of them: taken as one
        assert StartPoint(**kwargs).edits == (kwargs["edits"],)
        return
    with pytest.raises(BadRequestError, match=match):
        StartPoint(**kwargs)


def test_run_options_carry_one_start_point():
    options = RunOptions.of("car", 10, "both", 5, 0.3, removed=(4,), stride=2)
    assert options.start == StartPoint(10, ("car",), 0.3, (4,))
    assert (options.direction, options.max_frames, options.stride) == ("both", 5, 2)
    with pytest.raises(BadRequestError, match="prompt is empty"):
        RunOptions.of("", 0)


def test_an_old_run_json_loads_and_is_written_back_the_same(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps(OLD_RUN_JSON))
    record = read_record(tmp_path)
    assert record is not None and record.out_dir == str(tmp_path)
    assert record.start == StartPoint(20, ("person", "window"), 0.4, (3,), (
        Edit("refine", 2, ((10.5, 20.0),), (1,)), Edit("add_object", box=(1.0, 2.0, 30.0, 40.0), label="mirror")),
        continue_from="/runs/earlier")
    assert record.to_json() == OLD_RUN_JSON
    assert list(record.to_json()) == list(OLD_RUN_JSON)  # the keys in the same order too
    write_record(str(tmp_path), record)
    assert json.loads((tmp_path / "run.json").read_text()) == OLD_RUN_JSON


def test_a_run_json_that_is_no_record_reads_as_none(tmp_path):
    for doc in ({"prompts": ["car"]}, {**OLD_RUN_JSON, "prompts": [], "continued_from": None},
                {**OLD_RUN_JSON, "start_frame": -3}):
        (tmp_path / "run.json").write_text(json.dumps(doc))
        assert read_record(tmp_path) is None
    with pytest.raises(ValueError):
        RunRecord.from_json({**OLD_RUN_JSON, "threshold": 7})
