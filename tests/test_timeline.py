"""Each object's frames as ranges (sam3_video/timeline.py) against the same facts computed the
slow way from results.jsonl: every mask decoded, every frame looked at. On made-up runs (a stride,
frames written forward then backward, objects lost and found again, empty masks) and on real
runs of the small SAM3 (a stride of 2 both ways; a run continued from one of its frames)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sam3_video.pipeline import run
from sam3_video.results import ResultsWriter, decode_mask
from sam3_video.runfolder import RESULTS
from sam3_video.timeline import OBJECTS, FolderTimeline, Timeline, read_timeline
from sam3_video.types import FrameResult, RunOptions


def naive(folder, stride: int) -> list[dict]:
    """Per object, from results.jsonl with every mask decoded: id, label, first, last, ranges of
    frames `stride` apart with a mask, the gaps between them, frames with a mask, best score."""
    with open(os.path.join(folder, RESULTS), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    seen: dict[int, dict] = {}
    for record in records:
        for o in record["objects"]:
            obj = seen.setdefault(o["id"], {"label": o["label"], "frames": [], "scores": {}})
            if decode_mask(o["mask"]).any():
                obj["frames"].append(record["frame_index"])
                obj["scores"][record["frame_index"]] = o["score"]
    out = []
    for obj_id in sorted(seen):
        frames = sorted(seen[obj_id]["frames"])
        ranges: list[list[int]] = []
        for index in frames:
            if ranges and index == ranges[-1][1] + stride:
                ranges[-1][1] = index
            else:
                ranges.append([index, index])
        gaps = [[a[1] + stride, b[0] - stride] for a, b in zip(ranges, ranges[1:])]
        scores = seen[obj_id]["scores"]
        best = max(scores.values()) if scores else None
        out.append({"id": obj_id, "label": seen[obj_id]["label"], "first": frames[0] if frames else None,
                    "last": frames[-1] if frames else None, "frames": len(frames), "ranges": ranges, "gaps": gaps,
                    "gap_frames": sum(len(range(a, b + 1, stride)) for a, b in gaps),
                    "best_score": best})
    return out


def comparable(facts: dict) -> list[dict]:
    keys = ("id", "label", "first", "last", "frames", "ranges", "gaps", "gap_frames", "best_score")
    return [{k: (round(o[k], 4) if k == "best_score" and o[k] is not None else o[k]) for k in keys}
            for o in facts["objects"]]


def rounded(objects: list[dict]) -> list[dict]:
    return [{**o, "best_score": None if o["best_score"] is None else round(o["best_score"], 4)} for o in objects]


def made_up_run(folder, stride: int, order: list[int], objects: int = 5, seed: int = 0, size=(24, 32)) -> None:
    """A results.jsonl written in `order`: objects that come and go, some present with an empty mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    with_mask = rng.random((max(order) + 1, objects)) < 0.7
    present = with_mask | (rng.random(with_mask.shape) < 0.5)  # tracked, but the mask is empty
    writer = ResultsWriter(folder)
    for index in order:
        ids = [k + 1 for k in range(objects) if present[index, k]]
        masks = np.zeros((len(ids), h, w), bool)
        for n, obj_id in enumerate(ids):
            if with_mask[index, obj_id - 1]:
                y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
                masks[n, y:y + rng.integers(1, 3), x:x + rng.integers(1, 3)] = True
        writer.write(FrameResult(index, ids, [("car", "person")[i % 2] for i in ids],
                                 rng.random(len(ids)).astype(np.float32), np.zeros((len(ids), 4)), masks))
    writer.close()


@pytest.mark.parametrize("stride", [1, 3])
def test_ranges_equal_the_ones_from_every_decoded_mask(tmp_path, stride):
    start, last = 30 * stride, 90 * stride
    forward = list(range(start, last + 1, stride))
    backward = list(range(start - stride, -1, -stride))  # a run going both ways: forward, then backward
    made_up_run(tmp_path, stride, forward + backward)
    facts = FolderTimeline(tmp_path, stride).update()
    assert comparable(facts) == rounded(naive(tmp_path, stride))
    assert facts["frames_done"] == len(forward + backward) and facts["frame_range"] == [0, last]
    assert any(o["gaps"] for o in facts["objects"]), "the made-up run must lose objects for this test to mean anything"


def test_a_growing_file_is_read_a_line_at_a_time(tmp_path):
    """While a run writes results.jsonl, each look reads only what was added, and a line cut short
    (being written) waits for its end."""
    made_up_run(tmp_path, 2, list(range(0, 80, 2)))
    whole = (tmp_path / RESULTS).read_bytes()
    lines = whole.splitlines(keepends=True)
    (tmp_path / RESULTS).write_bytes(b"".join(lines[:10]) + lines[10][:20])
    following = FolderTimeline(tmp_path, stride=2)
    assert following.update()["frames_done"] == 10
    (tmp_path / RESULTS).write_bytes(whole)
    grown = following.update()
    assert grown == FolderTimeline(tmp_path, stride=2).update() and grown["frames_done"] == 40
    assert comparable(grown) == rounded(naive(tmp_path, 2))


def test_a_frame_fed_in_any_order_joins_its_neighbours():
    timeline = Timeline(stride=5)
    for index in (20, 10, 30, 15, 40, 25):
        timeline.add(index, [(7, "car", index / 100, 1)])
    timeline.add(35, [(7, "car", 0.9, 0)])  # tracked, no mask
    timeline.add(10, [(7, "car", 0.99, 0)])  # a frame again: the first counts
    (obj,) = timeline.to_json()["objects"]
    assert (obj["ranges"], obj["gaps"], obj["gap_frames"], obj["frames"]) == ([[10, 30], [40, 40]], [[35, 35]], 1, 6)
    assert (obj["first"], obj["last"], obj["best_score"], obj["best_frame"]) == (10, 40, 0.4, 40)
    assert timeline.to_json()["frame_range"] == [10, 40]


def test_a_run_writes_objects_json_equal_to_its_results(carphone, backend, tmp_path):
    """A real run, every 2nd frame both ways from frame 20, then continued from frame 24."""
    first = tmp_path / "first"
    record = run(carphone, RunOptions.of(("person, window",), 20, "both", 6, stride=2), first, backend=backend,
                 outputs=["coco"])
    written = json.loads((first / OBJECTS).read_text())
    assert written["stride"] == 2 and written["frame_range"] == record.frame_range == [10, 30]
    assert comparable(written) == rounded(naive(first, 2))
    assert sum(o["frames"] for o in written["objects"]) > 0, "the small model must find objects"
    assert read_timeline(first) == written  # a finished run's file, as it is
    (first / OBJECTS).unlink()
    assert read_timeline(first) == written  # a folder from before objects.json: the same, from results.jsonl

    continued = tmp_path / "continued"
    run(carphone, RunOptions.of((), 24, "forward", 4, continue_from=str(first)), continued, backend=backend, outputs=["coco"])
    facts = json.loads((continued / OBJECTS).read_text())
    assert facts["frame_range"] == [10, 30] and facts["frames_done"] == 11  # frames 10-22 kept, 24-30 new
    assert comparable(facts) == rounded(naive(continued, 2))


# -- the page's timeline (sam3_video/web/review.py) ------------------------------------------------
def made_up_facts(frames: int, stride: int = 1, objects: int = 3, continued: int | None = None) -> dict:
    """A run's facts (review.run_facts) over `frames` frames from 0: each object with a mask in
    stretches, missing in between."""
    from sam3_video.timeline import Timeline

    timeline = Timeline(stride)
    rng = np.random.default_rng(1)
    for index in range(0, frames * stride, stride):
        timeline.add(index, [(k, "car", float(rng.random()), int((index // (stride * (7 + k))) % 3 != 1))
                             for k in range(1, objects + 1)])
    facts = timeline.to_json()
    last = (frames - 1) * stride
    return {"status": "complete", "stride": stride, "covers": [0, last], "frame_range": [0, last],
            "frames_done": frames, "start_frame": continued or 0, "direction": "forward",
            "continued_from": None if continued is None else {"frame": continued, "kept": [0, continued - stride]},
            "objects": facts["objects"]}


@pytest.mark.parametrize("frames, columns", [(250, 250), (18_000, 600)])
def test_the_timeline_has_a_row_per_object_and_bins_a_long_run(frames, columns):
    import re

    from sam3_video.web.review import timeline_html

    facts = made_up_facts(frames, continued=120)
    page = timeline_html(facts, frame=200, selected=2)
    assert len(re.findall(r'class="tl-row[^"]*" data-id="(\d+)"', page)) == 3
    assert page.count(f'viewBox="0 0 {columns} 10"') == 3
    assert ("Each column is 30 frames" in page) == (frames > columns)
    assert "continued from frame 120 (frames 0-119 kept from the earlier run)" in page
    assert page.count('class="tl-mark tl-cursor"') == 3 and page.count("tl-selected") == 1
    assert 'class="tl-gap"' in page  # each object is missing somewhere inside its span
    assert len(page) < 400_000  # bins, never a rect per frame


def test_a_click_along_a_bar_is_the_frame_under_it():
    from sam3_video.web.review import frame_at

    facts = made_up_facts(50, stride=4)  # frames 0, 4, ..., 196
    assert [frame_at(facts, x) for x in (0, 0.01, 0.5, 0.999, 1, 2, -1)] == [0, 0, 100, 196, 196, 196, 0]
    facts["frame_range"] = [0, 40]  # a run still going: its frames done only
    assert frame_at(facts, 0.9) == 40
    first = next(o for o in facts["objects"] if o["id"] == 1)["first"]
    assert frame_at(facts, None, 1) == first and frame_at(facts, float("nan"), 99) == 0


def test_labels_are_text_not_markup():
    from sam3_video.web.review import timeline_html

    facts = made_up_facts(20)
    facts["objects"][0]["label"] = "<img src=x onerror=alert(1)>"
    page = timeline_html(facts)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
