"""The files written from the results (sam3_video/writing.py): the web app's Follower, which writes
them while GPU calls write results into successive folders and finishes them in the run's final
folder, writing again from it whenever the final results differ from the ones followed."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from sam3_video.pipeline import run
from sam3_video.runfolder import read_record
from sam3_video.types import RunOptions
from sam3_video.video import probe
from sam3_video.writing import Follower
from tests.conftest import frames_in_zip


@pytest.fixture(scope="module")
def results_only(carphone, backend, tmp_path_factory):
    """A run of 12 frames that wrote its results only, as a GPU call does."""
    folder = str(tmp_path_factory.mktemp("results-only"))
    assert run(carphone, RunOptions.of(("person, window",), 0, "forward", 12), folder, backend=backend,
               outputs=()).complete
    assert sorted(os.listdir(folder)) == ["results.jsonl", "run.json"]
    return folder


def scores_in(zip_path) -> dict[int, list[float]]:
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        coco = json.loads(z.read("annotations/coco_instances.json"))
    frame_of = {image["id"]: image["frame_index"] for image in coco["images"]}
    out: dict[int, list[float]] = {}
    for a in coco["annotations"]:
        out.setdefault(frame_of[a["image_id"]], []).append(round(a["score"], 4))
    return out


def finish(follower: Follower, folder: str) -> list[tuple[int, int]]:
    return list(follower.finish(folder, read_record(folder)))


def test_the_follower_writes_the_files_into_the_final_folder(results_only, carphone, tmp_path):
    info = probe(carphone)
    folder = str(tmp_path / "run")
    shutil.copytree(results_only, folder)
    follower = Follower(str(tmp_path / "staging"), ["overlay", "coco", "ytvis", "davis"], info)
    follower.follow(folder)
    steps = finish(follower, folder)
    assert steps[-1] == (12, 12) and [w for w, _ in steps] == sorted(w for w, _ in steps)
    assert frames_in_zip(os.path.join(folder, "annotations.zip")) == list(range(12))
    assert probe(os.path.join(folder, "overlay.mp4")).num_frames == 12
    assert os.path.exists(os.path.join(folder, "objects.json")) and not os.path.exists(tmp_path / "staging")


def test_final_results_other_than_the_ones_followed_are_written_again(results_only, carphone, tmp_path):
    """A call followed to its end, then the run's final folder holds other results (a cut-off call
    rewritten, a frame redone): the files are the final folder's, not the ones followed."""
    info = probe(carphone)
    followed, final = str(tmp_path / "followed"), str(tmp_path / "final")
    shutil.copytree(results_only, followed)
    shutil.copytree(results_only, final)
    with open(os.path.join(final, "results.jsonl"), encoding="utf-8") as f:
        lines = f.readlines()
    changed = json.loads(lines[5])
    assert changed["objects"], "the small model must find an object on frame 5 for this test to mean anything"
    changed["objects"][0]["score"] = 0.125
    lines[5] = json.dumps(changed, separators=(",", ":")) + "\n"
    with open(os.path.join(final, "results.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(lines[:9])  # and three frames fewer
    follower = Follower(str(tmp_path / "staging"), ["coco", "ytvis"], info)
    follower.follow(followed)
    follower.follow(final)  # the next call's folder: what the followed one holds is read first
    assert follower.written == 12
    assert finish(follower, final)[-1] == (9, 9)
    zip_path = os.path.join(final, "annotations.zip")
    assert frames_in_zip(zip_path) == list(range(9))
    assert 0.125 in scores_in(zip_path)[changed["frame_index"]]
