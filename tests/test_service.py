"""The app's service layer without a server: workspaces, limits, detect/remove, stoppable jobs."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from sam3_video.config import AppLimits
from sam3_video.errors import Sam3VideoError
from sam3_video.results import read_results
from sam3_video.service import Service
from sam3_video.video import VideoReader, probe
from tests.conftest import cpu_allocation_failure


@pytest.fixture()
def service(test_model_dir, backend, tmp_path):
    return Service(model=test_model_dir, device="cpu", root=str(tmp_path / "root"))


def test_detect_remove_and_propagate_keep_the_removal(service, carphone):
    info, image = service.open_video("a", carphone)
    assert info.num_frames == 120 and image.shape == (144, 176, 3)
    drawn, rows = service.detect("a", 60, "person, window", None)
    assert rows, "the small model must find objects for this test to mean anything"
    victim = rows[0][0]
    _, kept = service.remove("a", [victim])
    assert victim not in [r[0] for r in kept] and len(kept) == len(rows) - 1
    job = service.start("a", "both", 5)
    out = service.last_outputs("a")
    assert job.error is None and out.summary["status"] == "complete" and out.summary["frames"] == 9
    results = list(read_results(job.out_dir))
    assert [r.frame_index for r in results] == list(range(56, 65))
    assert all(victim not in r.obj_ids.tolist() for r in results)
    assert json.loads(open(os.path.join(job.out_dir, "run.json")).read())["removed_ids"] == [victim]
    names = {os.path.basename(f) for f in out.files}
    assert {"coco_instances.json", "mot.txt", "labelme.zip", "davis.zip", "manifest.json"} <= names
    assert probe(out.overlay).num_frames == 9


def test_stop_keeps_exactly_the_frames_done(service, carphone):
    service.open_video("s", carphone)
    service.detect("s", 0, "person", None)
    job = service.start("s", "forward", None)
    while job.progress is None or job.progress.done < 20:
        assert not job.done.wait(0.05), job.error
    service.stop("s")
    out = service.last_outputs("s")
    done = [r.frame_index for r in read_results(job.out_dir)]
    assert out.summary["status"] == "stopped" and 20 <= len(done) < 120
    assert done == list(range(len(done))) and out.summary["frames"] == len(done)
    assert probe(out.overlay).num_frames == len(done)


def test_visitors_are_apart_and_cleaned_up(service, carphone):
    service.open_video("x", carphone)
    service.open_video("y", carphone)
    x, y = service.workspace("x"), service.workspace("y")
    assert x.dir != y.dir and os.path.dirname(x.dir) == os.path.dirname(y.dir) == service.root
    assert ".." not in os.path.basename(x.dir)
    service.close_workspace("x")
    assert not os.path.exists(x.dir) and os.path.exists(y.dir)


def test_idle_workspaces_expire(test_model_dir, backend, carphone, tmp_path):
    service = Service(model=test_model_dir, device="cpu", root=str(tmp_path), limits=AppLimits(session_ttl_s=1))
    service.open_video("old", carphone)
    folder = service.workspace("old").dir
    service.sweep()
    assert os.path.exists(folder)  # touched just now
    time.sleep(1.2)
    service.sweep()
    assert not os.path.exists(folder) and service.workspace_count() == 0


@pytest.mark.parametrize(
    "limits, match",
    [(AppLimits(max_video_seconds=2), "takes up to 2 s"), (AppLimits(max_video_frames=50), "and 50 frames"),
     (AppLimits(max_upload_mb=0), "takes videos up to 0 MB")],
)
def test_limits_are_checked_before_any_work(test_model_dir, carphone, tmp_path, limits, match):
    service = Service(model=test_model_dir, device="cpu", root=str(tmp_path), limits=limits)
    with pytest.raises(Sam3VideoError, match=match):
        service.open_video("v", carphone)


def test_steps_out_of_order_say_what_to_do(service, carphone):
    with pytest.raises(Sam3VideoError, match="Upload a video"):
        service.detect("n", 0, "person", None)
    service.open_video("n", carphone)
    with pytest.raises(Sam3VideoError, match="Press Detect first"):
        service.start("n", "forward", None)
    with pytest.raises(Sam3VideoError, match="Press Detect first"):
        service.remove("n", [1])
    service.detect("n", 0, "person", None)
    with pytest.raises(Sam3VideoError, match="no object #999"):
        service.remove("n", [999])
    with pytest.raises(Sam3VideoError, match="Nothing has run"):
        service.last_outputs("n")


@pytest.mark.parametrize("prompt, match", [("", "prompt is empty"), (" , ,, ", "prompt is empty"),
                                           ("a" * 5000, "5000 characters long")])
def test_phrases_that_cannot_run_are_sentences(service, carphone, prompt, match):
    service.open_video("p", carphone)
    with pytest.raises(Sam3VideoError, match=match):
        service.detect("p", 0, prompt, None)


def test_phrases_in_any_script_and_markup_are_labels_as_typed(service, carphone):
    phrases = ["人", "автомобиль", "<img src=x onerror=alert(1)>"]
    service.open_video("s", carphone)
    image, rows = service.detect("s", 0, ", ".join(phrases), 0.0)  # threshold 0: every phrase finds objects
    assert image.shape == (144, 176, 3)
    assert {label for _, label, _, _ in rows} == set(phrases)
    service.start("s", "forward", 2)
    out = service.last_outputs("s")
    assert set(out.summary["objects_per_label"]) == set(phrases)


def test_missing_model_is_one_sentence(tmp_path):
    service = Service(model=str(tmp_path / "no-such-model"), device="cpu", root=str(tmp_path))
    message = service.model_status()
    assert message and "make-test-model" in message and "Traceback" not in message
    with pytest.raises(Sam3VideoError):
        service.backend()


def _assert_kept(job, out, frames: int) -> None:
    assert out.summary["status"] == "failed" and out.summary["frames"] == frames
    assert [r.frame_index for r in read_results(job.out_dir)] == list(range(frames))
    assert probe(out.overlay).num_frames == frames and out.annotations_zip
    with open(os.path.join(job.out_dir, "annotations", "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["status"] == "failed" and manifest["frames_done"] == frames


def test_a_failure_midway_keeps_the_frames_done_and_says_so(service, carphone, fail_at_frame):
    def bug():
        raise RuntimeError("simulated bug")

    fail_at_frame(10, bug)
    service.open_video("f", carphone)
    service.detect("f", 0, "person", None)
    job = service.start("f", "forward", 30)
    out = service.last_outputs("f")
    assert "simulated bug" in out.summary["error"] and "frames done before it are kept" in out.summary["error"]
    _assert_kept(job, out, 10)


def _gpu_out_of_memory():
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated: no GPU here)")


@pytest.mark.parametrize("fail", [cpu_allocation_failure, _gpu_out_of_memory], ids=["cpu-allocator", "cuda-oom"])
def test_out_of_memory_keeps_the_frames_done_and_the_worker_lives(service, carphone, monkeypatch, fail_at_frame,
                                                                   fail):
    fail_at_frame(10, fail)
    service.open_video("m", carphone)
    service.detect("m", 0, "person", None)
    job = service.start("m", "forward", 30)
    out = service.last_outputs("m")
    error = out.summary["error"]
    assert error.startswith("Ran out of memory on cpu after 10 of 30 frames; the 10 frames done are saved.")
    assert "Track fewer objects" in error and "Traceback" not in error
    _assert_kept(job, out, 10)
    monkeypatch.undo()  # the same service (and model) runs the next job
    service.start("m", "forward", 12)
    again = service.last_outputs("m")
    assert again.summary["status"] == "complete" and again.summary["frames"] == 12


@pytest.fixture()
def edit_service(edit_backend, test_model_dir, tmp_path):
    service = Service(model=test_model_dir, device="cpu", root=str(tmp_path / "root"))
    service._backend = edit_backend  # the small model whose tracker always answers (see conftest)
    return service


def _mask(result, obj_id):
    ids = result.obj_ids.tolist()
    return result.masks[ids.index(obj_id)] if obj_id in ids else np.zeros(result.size, bool)


def test_clicks_fix_the_preview_and_the_run_starts_from_it(edit_service, carphone):
    s = edit_service
    s.open_video("c", carphone)
    _, rows = s.detect("c", 0, "car, person", None)
    ids = [r[0] for r in rows]
    target, ws = ids[0], s.workspace("c")
    before = _mask(ws.preview, target)
    ys, xs = np.nonzero(before)
    _, rows, said = s.click("c", float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), "negative point", None, "")
    assert said.startswith("negative point on object #") and [r[0] for r in rows] == ids  # picked by clicking in it
    assert (_mask(ws.preview, target) != before).any()
    _, _, said = s.click("c", 100, 20, "new object (box)", None, "mirror")
    assert "first corner" in said
    _, rows, said = s.click("c", 170, 100, "new object (box)", None, "mirror")
    new = [r for r in rows if r[0] not in ids]
    assert len(new) == 1 and new[0][1] == "mirror" and new[0][0] > max(ids)
    job = s.start("c", "forward", 5)
    assert s.last_outputs("c").summary["status"] == "complete"
    results = list(read_results(job.out_dir))
    assert all(new[0][0] in r.obj_ids.tolist() for r in results)  # the added object is tracked
    np.testing.assert_array_equal(_mask(results[0], target), _mask(ws.preview, target))  # the fixed mask
    manifest = json.loads(open(os.path.join(job.out_dir, "run.json")).read())
    assert [e["kind"] for e in manifest["edits"]] == ["refine", "add_object"]


def test_clicks_that_cannot_apply_say_why(edit_service, carphone):
    s = edit_service
    s.open_video("d", carphone)
    with pytest.raises(Sam3VideoError, match="Press Detect first"):
        s.click("d", 10, 10, "positive point", None, "")
    s.detect("d", 0, "car, person", None)
    empty = np.ones(s.workspace("d").preview.size, bool)
    for m in s.workspace("d").preview.masks:
        empty &= ~m
    ys, xs = np.nonzero(empty)
    with pytest.raises(Sam3VideoError, match="Click inside an object"):
        s.click("d", float(xs[0]), float(ys[0]), "positive point", None, "")
    with pytest.raises(Sam3VideoError, match="(?i)removed|unknown|no object"):
        s.click("d", 10, 10, "positive point", 999, "")


def test_fixing_a_frame_of_a_stopped_run_continues_from_it(edit_service, carphone):
    s = edit_service
    s.open_video("f", carphone)
    s.detect("f", 0, "car, person", None)
    with pytest.raises(Sam3VideoError, match="Nothing has run on this video yet"):
        s.fix_frame("f", 5)
    first = s.start("f", "forward", 20)  # a frame limit stands in for Stop
    s.last_outputs("f")
    earlier = {r.frame_index: r for r in read_results(first.out_dir)}
    # the slider shows the run's result on a frame it did, and the plain frame on one it did not
    with_run, plain = s.frame_image("f", 12), s.frame_image("f", 60)
    with VideoReader(carphone) as reader:
        assert (with_run != reader[12]).any() and (plain == reader[60]).all()
    with pytest.raises(Sam3VideoError, match="Frame 30 was not processed"):
        s.fix_frame("f", 30)

    _, rows, direction, said = s.fix_frame("f", 12)
    assert direction == "forward" and "Propagate forward continues from it (frames 0-11 of the run are kept)" in said
    seed_ids = earlier[12].obj_ids.tolist()
    assert [r[0] for r in rows] == seed_ids  # the run's objects on that frame, under their ids
    victim, target = seed_ids[0], seed_ids[1]
    s.remove("f", [victim])
    ws = s.workspace("f")
    before = _mask(ws.preview, target)
    ys, xs = np.nonzero(before)
    _, rows, said = s.click("f", float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), "negative point", target, "")
    assert victim not in [r[0] for r in rows] and (_mask(ws.preview, target) != before).any()

    second = s.start("f", "forward", 10)
    summary = s.last_outputs("f").summary
    assert summary["status"] == "complete" and summary["frames"] == 22
    after = {r.frame_index: r for r in read_results(second.out_dir)}
    assert sorted(after) == list(range(22))
    for i in range(12):
        np.testing.assert_array_equal(after[i].masks, earlier[i].masks)
    np.testing.assert_array_equal(_mask(after[12], target), _mask(ws.preview, target))  # the fixed mask
    assert all(victim not in after[i].obj_ids.tolist() for i in range(12, 22))
    assert os.path.isdir(first.out_dir), "the run being continued is kept while its continuation exists"
    third = s.start("f", "forward", 10)  # Propagate again: the same continuation, done again
    s.last_outputs("f")
    assert [r.frame_index for r in read_results(third.out_dir)] == list(range(22))
    s.detect("f", 0, "car", None)  # a new detection starts over: no continuation
    fresh = s.start("f", "forward", 3)
    s.last_outputs("f")
    assert [r.frame_index for r in read_results(fresh.out_dir)] == [0, 1, 2]
    runs = sorted(n for n in os.listdir(ws.dir) if n.startswith("run-"))
    assert runs == sorted(os.path.basename(j.out_dir) for j in (third, fresh))  # the last one and the new one
    s.open_video("f", os.path.join(os.path.dirname(carphone), "bikes.mp4"))  # another video: the run is not its
    with VideoReader(os.path.join(os.path.dirname(carphone), "bikes.mp4")) as reader:
        assert (s.frame_image("f", 1) == reader[1]).all()
    with pytest.raises(Sam3VideoError, match="Nothing has run on this video yet"):
        s.fix_frame("f", 1)


def test_the_visitor_keeps_the_video_after_gradio_deletes_its_upload(service, carphone, tmp_path):
    """Gradio deletes cached uploads on its own clock; the workspace holds its own link."""
    import shutil

    upload = tmp_path / "gradio-cache" / "my clip.mp4"
    upload.parent.mkdir()
    shutil.copyfile(carphone, upload)
    service.open_video("k", str(upload))
    upload.unlink()
    service.detect("k", 3, "person", None)
    service.start("k", "forward", 4)
    out = service.last_outputs("k")
    assert out.summary["status"] == "complete" and out.summary["frames"] == 4
    assert os.path.basename(service.workspace("k").video) == "my clip.mp4"  # the exports quote its name
    with pytest.raises(Sam3VideoError, match="no longer on the server"):
        service.open_video("k", str(upload))
    service.close_workspace("k")
    assert os.listdir(service.root) == []
