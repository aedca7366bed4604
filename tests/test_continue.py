"""Correcting a frame of an earlier run and continuing from it, on the small random SAM3 (CPU),
with conftest's `edit_backend` (its tracker always says "object", so objects stay visible)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from sam3_video import continuation
from sam3_video.errors import BackendUnavailableError, BadRequestError
from sam3_video.pipeline import run
from sam3_video.results import read_results
from sam3_video.session import VideoSession
from sam3_video.types import Edit, RunOptions
from sam3_video.video import probe
from tests.test_cli import cli
from tests.test_refine import BOX, mask_of, outside_click

PHRASES = ("car, person",)
OUTPUTS = ["overlay", "coco", "mot"]


@pytest.fixture(scope="module")
def earlier(carphone, edit_backend, tmp_path_factory):
    """A forward run from frame 0 that stopped after 30 frames (a frame limit stands in for Stop)."""
    out = tmp_path_factory.mktemp("earlier")
    summary = run(carphone, RunOptions.of(PHRASES, 0, "forward", max_frames=30), out, edit_backend, outputs=OUTPUTS)
    assert summary.frames_done == 30
    return out, {r.frame_index: r for r in read_results(out)}


def ids(result) -> list[int]:
    return result.obj_ids.tolist()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_corrected_frame_continues_with_the_earlier_frames_and_ids(carphone, edit_backend, earlier, tmp_path):
    folder, before = earlier
    seed = before[20]
    assert len(seed) >= 2, "needs an object to correct and one to leave alone"
    target, other = ids(seed)[:2]
    fix = Edit("refine", target, (outside_click(mask_of(seed, target)),), (1,))
    out = tmp_path / "continued"
    summary = run(carphone, RunOptions.of(PHRASES, 20, "forward", max_frames=15, edits=(fix,), continue_from=str(folder)),
                  out, edit_backend, outputs=OUTPUTS)

    assert (summary.status, summary.frames_done, summary.frames_expected) == ("complete", 35, 35)
    after = {r.frame_index: r for r in read_results(out)}
    assert sorted(after) == list(range(35))
    for i in range(20):  # the earlier frames behind the corrected one, unchanged
        assert ids(after[i]) == ids(before[i])
        np.testing.assert_array_equal(after[i].masks, before[i].masks)
    # on the corrected frame: the clicked object is the tracker's new answer, the others its own
    # rendering of the earlier masks (through its low-resolution mask input)
    assert ids(after[20]) == ids(seed)
    assert iou(mask_of(after[20], target), mask_of(seed, target)) < 0.95
    assert iou(mask_of(after[20], other), mask_of(seed, other)) > 0.8
    for i in range(21, 35):  # propagation goes on with the same objects under the same ids
        assert set(ids(seed)) <= set(ids(after[i])), i
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["continued_from"] == {"folder": str(folder), "frame": 20, "frames_kept": 20}
    assert manifest["frame_range"] == [0, 34] and manifest["edits"][0]["obj_id"] == target
    assert probe(out / "overlay.mp4").num_frames == 35
    mot_frames = {int(line.split(",")[0]) for line in (out / "annotations" / "mot.txt").read_text().splitlines()}
    assert mot_frames == set(range(1, 36))


def test_a_continued_run_stopped_before_it_began_keeps_its_earlier_frames(carphone, edit_backend, earlier, tmp_path):
    """A stop asked before a continued run's first frame (as between two GPU calls of one app run)
    ends it after its kept frames: the frames done are never lost."""
    folder, before = earlier
    out = tmp_path / "continued"
    summary = run(carphone, RunOptions.of(PHRASES, 20, "forward", max_frames=15, continue_from=str(folder)), out,
                  edit_backend, outputs=OUTPUTS, on_session=lambda session: session.stop())
    assert (summary.status, summary.frames_done, summary.frames_expected) == ("stopped", 20, 35)
    after = {r.frame_index: r for r in read_results(out)}
    assert sorted(after) == list(range(20))
    assert all(ids(after[i]) == ids(before[i]) for i in range(20))
    assert probe(str(out / "overlay.mp4")).num_frames == 20


def test_removed_and_added_objects_when_continuing(carphone, edit_backend, earlier, tmp_path):
    folder, before = earlier
    victim = ids(before[25])[0]
    added = Edit("add_object", box=BOX, label="mirror")
    out = tmp_path / "continued"
    run(carphone, RunOptions.of(PHRASES, 25, "forward", max_frames=10, removed=(victim,), edits=(added,),
                                continue_from=str(folder)), out, edit_backend, outputs=[])
    after = {r.frame_index: r for r in read_results(out)}
    assert victim in ids(after[24]), "kept frames are as they were"
    assert all(victim not in ids(after[i]) for i in range(25, 35)), "removed from the corrected frame on"
    earlier_ids = {i for r in before.values() for i in ids(r)}
    new_id = max(ids(after[25]))
    assert new_id > max(earlier_ids), "a new object never takes an id the earlier run used"
    assert all(new_id in ids(after[i]) and after[i].labels[ids(after[i]).index(new_id)] == "mirror"
               for i in range(25, 35))


def test_continuing_backward_keeps_the_frames_after(carphone, edit_backend, tmp_path):
    first = tmp_path / "first"
    run(carphone, RunOptions.of(PHRASES, 60, "backward", max_frames=20), first, edit_backend, outputs=["overlay"])
    before = {r.frame_index: r for r in read_results(first)}
    assert sorted(before) == list(range(41, 61))
    out = tmp_path / "continued"
    summary = run(carphone, RunOptions.of(PHRASES, 50, "backward", max_frames=15, continue_from=str(first)), out,
                  edit_backend, outputs=["overlay"])
    after = {r.frame_index: r for r in read_results(out)}
    assert summary.frames_done == 25 and sorted(after) == list(range(36, 61))
    for i in range(51, 61):
        np.testing.assert_array_equal(after[i].masks, before[i].masks)
    assert set(ids(before[50])) <= set(ids(after[49]))
    assert probe(out / "overlay.mp4").num_frames == 25


@pytest.mark.parametrize("direction, start, frame, way", [
    ("forward", 10, 50, "forward"), ("backward", 90, 50, "backward"),
    ("both", 40, 40, "forward"), ("both", 40, 39, "backward"),
])
def test_a_continuation_goes_the_way_the_run_went_through_the_frame(direction, start, frame, way):
    assert continuation.heading(SimpleNamespace(direction=direction, start=SimpleNamespace(frame=start)), frame) == way


def test_seeded_session_replays_to_the_same_result(carphone, edit_backend, earlier):
    """The app rebuilds a corrected frame on a fresh session for every click: same calls, same masks."""
    folder, before = earlier
    info = probe(carphone)
    results = []
    for _ in range(2):
        with VideoSession(carphone, edit_backend, info) as session:
            back = continuation.load(folder, 12, "forward", info)
            session.resume(back)
            target = ids(back.seed)[0]
            results.append(session.refine(12, target, [outside_click(mask_of(back.seed, target))], [1]))
    assert ids(results[0]) == ids(results[1])
    np.testing.assert_array_equal(results[0].masks, results[1].masks)


@pytest.mark.parametrize("frame, video, message", [
    (29, "carphone", None),
    (30, "carphone", "Frame 30 was not processed by the run .* frames 0 to 29"),
    (5, "other", "made on another video"),
])
def test_what_can_be_continued(carphone, media, earlier, frame, video, message):
    folder, _ = earlier
    path = carphone if video == "carphone" else f"{media}/bikes.mp4"
    info = probe(path)
    if message is None:
        back = continuation.load(folder, frame, "forward", info)
        assert back.kept == list(range(29)) and back.prompts == ("car", "person")
        assert continuation.last_frame(folder) == 29
        return
    with pytest.raises(BadRequestError, match=message):
        continuation.load(folder, frame, "forward", info)


def test_bad_continuations_get_a_sentence(carphone, edit_backend, earlier, tmp_path):
    folder, _ = earlier
    with pytest.raises(BadRequestError, match="not the output folder of a run"):
        run(carphone, RunOptions.of(PHRASES, 3, continue_from=str(tmp_path)), tmp_path / "x", edit_backend)
    with pytest.raises(BadRequestError, match="new folder"):
        run(carphone, RunOptions.of(PHRASES, 3, continue_from=str(folder)), folder, edit_backend)
    assert json.loads((folder / "run.json").read_text())["frames_done"] == 30, "the earlier run is untouched"


def test_official_backend_says_it_cannot_continue(earlier, carphone):
    from sam3_video.backends.official import OfficialSession

    session = VideoSession.__new__(VideoSession)  # no GPU here: only the refusal is checked
    session._session = OfficialSession.__new__(OfficialSession)
    session.backend = type("B", (), {"name": "sam3"})()
    session.info = probe(carphone)
    with pytest.raises(BackendUnavailableError, match="transformers backend"):
        session.resume(continuation.load(earlier[0], 10, "forward", session.info))


def test_cli_continues_a_stopped_run_from_its_last_frame(carphone, test_model_dir, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    proc = cli("segment", carphone, "-p", "person", "-o", str(first), "--model", test_model_dir, "--device", "cpu",
               "--max-frames", "12", "--outputs", "mot", "--threshold", "0.3", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = cli("segment", carphone, "-o", str(second), "--continue-from", str(first), "--model", test_model_dir,
               "--device", "cpu", "--max-frames", "10", "--outputs", "mot", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "complete: 21/21 frames" in proc.stdout
    manifest = json.loads((second / "run.json").read_text())
    assert manifest["prompts"] == ["person"] and manifest["threshold"] == 0.3  # the earlier run's
    assert manifest["continued_from"]["frame"] == 11 and manifest["direction"] == "forward"
    assert [r.frame_index for r in read_results(second)] == list(range(21))
    back, on = tmp_path / "back", tmp_path / "back-on"  # a stopped backward run goes on backward
    assert cli("segment", carphone, "-p", "person", "-o", str(back), "--model", test_model_dir, "--device", "cpu",
               "--start-frame", "30", "--direction", "backward", "--max-frames", "5", "--outputs", "mot",
               "-q").returncode == 0
    proc = cli("segment", carphone, "-o", str(on), "--continue-from", str(back), "--model", test_model_dir,
               "--device", "cpu", "--max-frames", "3", "--outputs", "mot", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((on / "run.json").read_text())
    assert manifest["direction"] == "backward" and manifest["continued_from"]["frame"] == 26
    assert [r.frame_index for r in read_results(on)] == list(range(24, 31))
    proc = cli("segment", carphone, "-o", str(tmp_path / "third"), "--continue-from", str(tmp_path / "nothing"),
               "--model", test_model_dir, "--device", "cpu")
    assert proc.returncode == 2 and "no finished frame of a run" in proc.stderr and "Traceback" not in proc.stderr
