"""A run's files written by several processes (lanes.py): the same files as one process writes,
a lane that fails or dies is a sentence and never a hang, and how the outputs are shared out."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from types import SimpleNamespace

import pytest

from sam3_video import lanes, writing
from sam3_video.export import FORMATS, OUTPUTS
from sam3_video.pipeline import run
from sam3_video.runfolder import read_record
from sam3_video.types import RunOptions
from sam3_video.video import probe
from sam3_video.writing import FileWriter, Follower


@pytest.fixture(scope="module")
def results_only(carphone, backend, tmp_path_factory) -> str:
    """A run of 16 frames of carphone, forward from frame 4, that wrote its results only (as a GPU call)."""
    folder = str(tmp_path_factory.mktemp("results"))
    assert run(carphone, RunOptions.of(("person, window",), 4, "forward", 16), folder, backend=backend,
               outputs=()).complete
    return folder


@pytest.fixture(scope="module")
def records(results_only) -> list[dict]:
    with open(os.path.join(results_only, "results.jsonl"), encoding="utf-8") as f:
        out = [json.loads(line) for line in f]
    assert any(r["objects"] for r in out), "the small model must find something for these tests to mean anything"
    return out


def tree(folder: str) -> dict[str, bytes]:
    """Every file under `folder` by its path, a zip by its members (a zip's own bytes hold times)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            key = os.path.relpath(path, folder)
            if name.endswith(".zip"):
                with zipfile.ZipFile(path) as z:
                    out.update({f"{key}:{member}": z.read(member) for member in z.namelist()})
            else:
                with open(path, "rb") as f:
                    out[key] = f.read()
    return out


def write(folder: str, records: list[dict], info, processes: int, wanted=OUTPUTS) -> FileWriter:
    os.makedirs(folder, exist_ok=True)
    writer = FileWriter(folder, list(wanted), info, ["person", "window"], records[0]["frame_index"],
                        processes=processes)
    for record in records:
        writer.write(record)
    list(writer.settle())
    return writer


@pytest.mark.parametrize("processes", [2, 3])
def test_lanes_write_the_files_one_process_writes(records, carphone, tmp_path, processes):
    info = probe(carphone)
    alone = write(str(tmp_path / "alone"), records, info, 0)
    assert alone.lanes == [] and alone.close(None) is None
    shared = write(str(tmp_path / "shared"), records, info, processes)
    assert len(shared.lanes) == processes
    assert sorted(n for lane in shared.lanes for n in lane.wanted) == sorted(OUTPUTS)
    assert shared.written == [r["frame_index"] for r in records]
    assert shared.close(None) is None
    a, b = tree(str(tmp_path / "alone")), tree(str(tmp_path / "shared"))
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []
    assert any(name.endswith("manifest.json") for name in a) and "overlay.mp4" in a


def test_a_lane_that_dies_is_a_sentence_and_the_others_finish(records, carphone, tmp_path):
    info = probe(carphone)
    writer = FileWriter(str(tmp_path), ["overlay", "coco", "mot"], info, ["person", "window"],
                        records[0]["frame_index"], processes=2)
    for record in records[:4]:
        writer.write(record)
    list(writer.settle())
    assert len(writer.written) == 4
    victim = next(lane for lane in writer.lanes if "overlay" in lane.wanted)
    victim._proc.kill()
    with pytest.raises(RuntimeError, match=r"the process writing overlay.* ended \(exit code -9\)"):
        for record in records[4:]:
            writer.write(record)
            list(writer.settle())
    assert len(writer.written) == 4, "only the frames every output wrote count"
    error = writer.close(None)
    assert isinstance(error, RuntimeError) and "overlay" in str(error)


def test_a_lane_whose_writer_fails_stops_writing_and_says_why(records, carphone, tmp_path):
    info = probe(carphone)
    writer = FileWriter(str(tmp_path), ["coco", "mot"], info, ["person", "window"], records[0]["frame_index"],
                        processes=2)
    assert [lane.wanted for lane in writer.lanes] == [["coco"], ["mot"]]
    writer.write(records[0])
    writer.write(dict(records[1], frame_index=info.num_frames + 50))  # coco's lane cannot read that frame
    list(writer.settle())
    with pytest.raises(RuntimeError, match="IndexError"):
        writer.write(records[2])
    assert writer.written == [records[0]["frame_index"]], "only the frames every output wrote count"
    error = writer.close(None)
    assert isinstance(error, RuntimeError) and "IndexError" in str(error)


def test_the_follower_writes_with_lanes(results_only, records, carphone, tmp_path, monkeypatch):
    """The web app's way: results land in a folder, the follower writes the files through lanes."""
    monkeypatch.setenv(lanes.PROCESSES_ENV, "2")
    info = probe(carphone)
    folder = str(tmp_path / "run")
    shutil.copytree(results_only, folder)
    wanted = ["overlay", "coco", "davis", "cvat"]
    follower = Follower(str(tmp_path / "staging"), wanted, info)
    follower.follow(folder)
    steps = list(follower.finish(folder, read_record(folder)))
    assert steps[-1] == (len(records), len(records)) and [w for w, _ in steps] == sorted(w for w, _ in steps)
    alone = str(tmp_path / "alone")
    monkeypatch.setenv(lanes.PROCESSES_ENV, "0")
    assert write(alone, records, info, 0, wanted).close(read_record(folder)) is None
    a, b = tree(alone), tree(folder)
    assert [name for name in a if a[name] != b.get(name)] == []
    assert "overlay.mp4" in b and "annotations.zip:annotations/cvat_video.xml" in b


@pytest.mark.parametrize("overlap", [True, False])
def test_a_run_sends_its_lanes_the_lines_it_wrote(carphone, backend, tmp_path, monkeypatch, overlap):
    """pipeline.run turns each record into its results line once: the lanes are sent that line,
    never a second dump of the record (the model's thread and the writer's share one GIL)."""
    monkeypatch.setenv(lanes.PROCESSES_ENV, "2")

    def dumps(*args, **kwargs):
        raise AssertionError("a record was dumped to JSON again for the lanes")

    monkeypatch.setattr(writing, "json", SimpleNamespace(dumps=dumps, loads=json.loads))
    folder = str(tmp_path / "run")
    record = run(carphone, RunOptions.of(("person, window",), 4, "forward", 6), folder, backend=backend,
                 outputs=("overlay", "coco", "mot"), overlap=overlap)
    assert record.status == "complete" and record.frames_done == 6, record.error
    with open(os.path.join(folder, "results.jsonl"), encoding="utf-8") as f:
        assert [json.loads(line)["frame_index"] for line in f] == list(range(4, 10))
    assert os.path.getsize(os.path.join(folder, "overlay.mp4")) > 0


def test_outputs_are_shared_out_by_cost_with_the_jpeg_formats_together():
    every = list(OUTPUTS)
    assert lanes.split(every, 1) == [every]
    two = lanes.split(every, 2)
    assert sorted(n for lane in two for n in lane) == sorted(every) and len(two) == 2
    jpeg = [lane for lane in two if "labelme" in lane][0]
    assert {"coco", "ytvis"} <= set(jpeg), "the formats that ship frames share one JPEG"
    loads = [lanes.cost(lane) for lane in two]
    assert max(loads) - min(loads) <= max(lanes.COST.values()), two
    for lane in lanes.split(every, 4):
        assert lane == [n for n in every if n in lane], "each lane keeps the outputs' order"
    assert len(lanes.split(every, 50)) == len(lanes.units(every))
    assert lanes.split(["mot"], 3) == [["mot"]]


def test_how_many_lanes(monkeypatch):
    monkeypatch.delenv(lanes.PROCESSES_ENV, raising=False)
    every = list(OUTPUTS)
    assert lanes.processes(every, (144, 176), 16) == 0, "a small job is written in-process"
    assert lanes.processes(every, (720, 1280), 600) == min(len(lanes.units(every)), os.cpu_count() or 1)
    assert lanes.processes(every, (720, 1280), None) >= 1
    assert lanes.processes(every, (720, 1280), 600, cores=2) == 2, "a batch worker's share of the cores"
    assert lanes.processes(every, (720, 1280), 600, cores=64) == len(lanes.units(every))
    assert lanes.processes([], (720, 1280), 600, cores=4) == 0
    monkeypatch.setenv(lanes.PROCESSES_ENV, "3")
    assert lanes.processes(every, (144, 176), 16) == 3
    assert lanes.processes(["mot", "mots"], (720, 1280), 600) == 2, "never more lanes than groups"
    assert lanes.processes(every, (720, 1280), 600, cores=1) == 3, "the setting wins over a share"
    monkeypatch.setenv(lanes.PROCESSES_ENV, "many")
    with pytest.raises(ValueError, match="SAM3_WRITER_PROCESSES must be a whole number"):
        lanes.processes(every, (720, 1280), 600)
    assert set(FORMATS) < set(every)
