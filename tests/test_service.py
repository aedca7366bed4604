"""The app's service layer without a server (GPU steps in-process, as on a workstation): workspaces,
limits, detect/remove, clicks, runs that stop and cancel, runs split into several GPU calls."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from sam3_video.config import AppLimits, GpuBudget
from sam3_video.errors import BadRequestError, Sam3VideoError
from sam3_video.progress import Progress
from sam3_video.results import read_results
from sam3_video.runfolder import read_record
from sam3_video.types import Edit
from sam3_video.video import VideoReader, probe
from sam3_video.web.runs import Outputs
from sam3_video.web.service import Service
from tests.conftest import cpu_allocation_failure, frames_in_zip, manifest_in_zip


def run_to_end(updates) -> Outputs:
    """Every update of a run; its outputs."""
    items = list(updates)
    assert all(isinstance(i, Progress) for i in items[:-1]) and isinstance(items[-1], Outputs)
    return items[-1]


def run(service, key, direction, max_frames) -> tuple[Outputs, str]:
    """A whole run; its outputs and its folder."""
    out = run_to_end(service.propagate(key, direction, max_frames))
    return out, service.workspaces.get(key).run_dir


def test_detect_remove_and_propagate_keep_the_removal(service, carphone):
    info, image = service.open_video("a", carphone)
    assert info.num_frames == 120 and image.shape == (144, 176, 3)
    shown = service.detect("a", 60, "person, window", None)
    assert shown.objects, "the small model must find objects for this test to mean anything"
    victim = shown.objects[0].id
    kept = service.remove("a", [victim]).objects
    assert victim not in [r.id for r in kept] and len(kept) == len(shown.objects) - 1
    out, folder = run(service, "a", "both", 5)
    assert out.summary["status"] == "complete" and out.summary["frames"] == 9 and out.summary["gpu_calls"] == 1
    results = list(read_results(folder))
    assert [r.frame_index for r in results] == list(range(56, 65))
    assert all(victim not in r.obj_ids.tolist() for r in results)
    assert json.loads(open(os.path.join(folder, "run.json")).read())["removed_ids"] == [victim]
    names = {os.path.basename(f) for f in out.files}
    assert {"coco_instances.json", "mot.txt", "labelme.zip", "davis.zip", "manifest.json"} <= names
    assert probe(out.overlay).num_frames == 9
    assert service.results("a") == out  # read again from the folder: the same files and summary


def test_stop_keeps_exactly_the_frames_done(service, carphone):
    service.open_video("s", carphone)
    service.detect("s", 0, "person", None)
    updates = service.propagate("s", "forward", None)
    for item in updates:
        if isinstance(item, Progress) and item.done >= 20:
            service.stop("s")
            break
    out = run_to_end(updates)
    done = [r.frame_index for r in read_results(service.workspaces.get("s").run_dir)]
    assert out.summary["status"] == "stopped" and 20 <= len(done) < 120
    assert done == list(range(len(done))) and out.summary["frames"] == len(done)
    assert probe(out.overlay).num_frames == len(done)


def test_a_closed_run_finishes_on_its_own_and_keeps_its_frames(service, carphone):
    """A client's cancel closes the run's generator: it returns at once, the run stops after its
    frame and closes its files in a thread of its own; /results waits for them."""
    service.open_video("c", carphone)
    service.detect("c", 0, "person", None)
    updates = service.propagate("c", "forward", None)
    for item in updates:
        if isinstance(item, Progress) and item.done >= 10:
            break
    updates.close()
    out = service.results("c")
    assert out.summary["status"] == "stopped" and 10 <= out.summary["frames"] < 120
    assert [r.frame_index for r in read_results(service.workspaces.get("c").run_dir)] == list(range(out.summary["frames"]))
    assert probe(out.overlay).num_frames == out.summary["frames"]


def test_a_tab_that_reloads_mid_run_comes_back_to_its_run(service, carphone):
    """A page's run goes on when the page goes away (Gradio closes its generator, then the tab's
    unload); the same tab, back with its token under a new session, gets its video, detection and
    phrases, and follows the run to its end."""
    token = service.restore("page-1", "").token
    service.open_video("page-1", carphone)
    shown = service.detect("page-1", 5, "person, window", 0.2)
    updates = service.propagate("page-1", "forward", 30, stop_on_close=False)
    next(u for u in updates if isinstance(u, Progress) and u.done >= 3)
    updates.close()  # the page reloads: its event is closed ...
    service.leave("page-1")  # ... and its session unloaded
    assert service.restore("someone-else", "not the token", wait_s=0).back is False
    back = service.restore("page-2", token, wait_s=0)
    assert back.back and back.token == token and back.running
    assert (back.video, back.frame, back.phrases, back.threshold) == (service.workspaces.get("page-2").video, 5,
                                                                       ("person", "window"), 0.2)
    assert back.info.num_frames == 120 and back.preview.objects == shown.objects and back.outputs is None
    assert service.reopened("page-2", back.video) and not service.reopened("page-2", back.video)  # once
    followed = list(service.follow("page-2"))
    assert isinstance(followed[-1], Outputs) and all(isinstance(u, Progress) for u in followed[:-1])
    assert followed[-1].summary["status"] == "complete" and followed[-1].summary["frames"] == 30
    assert service.workspaces.peek("page-1") is None and list(service.follow("page-2")) == []
    again = service.restore("page-3", token, wait_s=0)  # a tab open: no reclaim (a duplicated tab's token)
    assert not again.back and again.token != token
    service.leave("page-2")
    later = service.restore("page-4", token, wait_s=0)  # after the run: its outputs come back
    assert later.back and not later.running and later.outputs == service.results("page-4")


def test_a_tab_that_does_not_come_back_is_closed_and_its_run_stopped(service, carphone):
    token = service.restore("gone", "").token
    service.open_video("gone", carphone)
    service.detect("gone", 0, "person", None)
    updates = service.propagate("gone", "forward", None, stop_on_close=False)
    next(u for u in updates if isinstance(u, Progress) and u.done >= 3)
    updates.close()
    ws = service.workspaces.get("gone")
    service.leave("gone")
    assert ws.left is not None and os.path.isdir(ws.dir) and not ws.live.ended  # waiting for the tab
    service.workspaces._not_back("gone", ws, ws.left)  # what the grace timer does when it ends
    assert ws.live.wait(300)
    assert service.workspaces.count() == 0 and not os.path.exists(ws.dir)
    assert not service.restore("back-too-late", token, wait_s=0).back


def test_a_run_longer_than_one_gpu_call_goes_on_in_the_next(test_model_dir, backend, carphone, tmp_path):
    """With 3 s of GPU per call, "both" from frame 30 takes several calls (forward, then backward,
    each continuing the folder of the last) and covers exactly the frames of one run; the
    annotations' manifest describes the run as asked (its start frame, direction and removed
    object), not the last call's own start."""
    budget = GpuBudget(start_s=1, per_frame_s=0.1, per_kept_frame_s=0.01, per_edit_s=1, max_s=3)
    service = Service(model=test_model_dir, device="cpu", root=str(tmp_path), budget=budget)
    service.open_video("l", carphone)
    found = service.detect("l", 30, "person", None).objects
    assert found, "the small model must find objects for this test to mean anything"
    removed = [int(found[-1].id)]
    service.remove("l", removed)
    items = list(service.propagate("l", "both", 25))
    out = items[-1]
    assert out.summary["status"] == "complete" and out.summary["gpu_calls"] >= 2
    folder = service.workspaces.get("l").run_dir
    manifest = manifest_in_zip(os.path.join(folder, "annotations.zip"))
    assert (manifest["start_frame"], manifest["direction"], manifest["max_frames"]) == (30, "both", 25)
    assert manifest["removed_ids"] == removed and "continued_from" not in manifest  # a new run, not a continuation
    assert read_record(folder).start.continue_from is not None, "the last call's run.json keeps its own start"
    assert sorted(r.frame_index for r in read_results(folder)) == list(range(6, 55))
    assert probe(out.overlay).num_frames == 49 and out.summary["frames"] == 49
    counts = [i.done for i in items[:-1]]
    assert counts == sorted(counts) and counts[-1] == 49 and {i.total for i in items[:-1]} == {49}  # one bar
    assert [n for n in os.listdir(service.workspaces.get("l").dir) if n.startswith("run-")] == [os.path.basename(folder)]


def test_a_gpu_call_that_breaks_keeps_its_frames(service, carphone, gpu_call_dies):
    """On ZeroGPU a worker can die mid-call (spaces then raises 'GPU task aborted'): the run ends
    with the frames done kept in every file, and its summary says what ended it and what to do."""
    service.open_video("g", carphone)
    service.detect("g", 0, "person", None)
    out = run_to_end(service.propagate("g", "forward", 30))
    assert out == service.results("g")
    summary = out.summary
    assert summary["status"] == "stopped" and summary["stopped_by"] == "the end of the GPU call", summary
    assert 0 < summary["frames"] < 30 and f"after {summary['frames']} frames" in summary["error"]
    assert "continue" in summary["error"] and out.overlay and out.annotations_zip


def test_a_workspace_in_use_is_not_deleted_until_its_run_ends(service, carphone):
    service.open_video("t", carphone)
    service.detect("t", 0, "person", None)
    updates = service.propagate("t", "forward", None)
    next(u for u in updates if isinstance(u, Progress) and u.done >= 5)
    folder = service.workspaces.get("t").dir
    service.close_workspace("t")  # the tab closed mid-run: the run is asked to stop
    service.sweep()
    assert os.path.isdir(folder) and service.workspaces.count() == 0
    out = run_to_end(updates)
    assert out.summary["status"] == "stopped" and not os.path.exists(folder)


def test_visitors_are_apart_and_cleaned_up(service, carphone):
    service.open_video("x", carphone)
    service.open_video("y", carphone)
    x, y = service.workspaces.get("x"), service.workspaces.get("y")
    assert x.dir != y.dir and os.path.dirname(x.dir) == os.path.dirname(y.dir) == service.root
    assert ".." not in os.path.basename(x.dir)
    service.close_workspace("x")
    assert not os.path.exists(x.dir) and os.path.exists(y.dir)


def test_idle_workspaces_expire(test_model_dir, backend, carphone, tmp_path):
    service = Service(model=test_model_dir, device="cpu", root=str(tmp_path), limits=AppLimits(session_ttl_s=60))
    service.open_video("old", carphone)
    ws = service.workspaces.get("old")
    service.sweep()
    assert os.path.exists(ws.dir)  # touched just now
    ws.touched -= 61  # a minute without activity
    service.sweep()
    assert not os.path.exists(ws.dir) and service.workspaces.count() == 0


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
        next(service.propagate("n", "forward", None))
    with pytest.raises(Sam3VideoError, match="Press Detect first"):
        service.remove("n", [1])
    service.detect("n", 0, "person", None)
    with pytest.raises(Sam3VideoError, match="no object #999"):
        service.remove("n", [999])
    with pytest.raises(Sam3VideoError, match="Nothing has run"):
        service.results("n")
    with pytest.raises(Sam3VideoError, match="outside this video"):
        service.detect("n", 500, "person", None)


def test_a_failed_step_keeps_what_was_there(service, carphone):
    service.open_video("k", carphone)
    shown = service.detect("k", 7, "person", None)
    with pytest.raises(Sam3VideoError, match="prompt is empty"):
        service.detect("k", 9, " , ", None)
    ws = service.workspaces.get("k")
    assert ws.start.frame == 7 and ws.start.phrases == ("person",)
    assert [r.id for r in service.remove("k", []).objects] == [r.id for r in shown.objects]


@pytest.mark.parametrize("prompt, match", [("", "prompt is empty"), (" , ,, ", "prompt is empty"),
                                           ("a" * 5000, "5000 characters long")])
def test_phrases_that_cannot_run_are_sentences(service, carphone, prompt, match):
    service.open_video("p", carphone)
    with pytest.raises(Sam3VideoError, match=match):
        service.detect("p", 0, prompt, None)


def test_phrases_in_any_script_and_markup_are_labels_as_typed(service, carphone):
    phrases = ["人", "автомобиль", "<img src=x onerror=alert(1)>"]
    service.open_video("s", carphone)
    shown = service.detect("s", 0, ", ".join(phrases), 0.0)  # threshold 0: every phrase finds objects
    assert shown.image.shape == (144, 176, 3)
    assert {row.label for row in shown.objects} == set(phrases)
    out, _ = run(service, "s", "forward", 2)
    assert set(out.summary["objects_per_label"]) == set(phrases)


def test_missing_model_is_one_sentence(tmp_path):
    service = Service(model=str(tmp_path / "no-such-model"), device="cpu", root=str(tmp_path))
    message = service.model_status()
    assert message and "make-test-model" in message and "Traceback" not in message
    service.open_video("m", os.path.join(os.path.dirname(__file__), "..", "assets", "bikes.mp4"))
    with pytest.raises(Sam3VideoError, match="make-test-model"):
        service.detect("m", 0, "car", None)


def _assert_kept(folder, out, frames: int) -> None:
    assert out.summary["status"] == "failed" and out.summary["frames"] == frames
    assert [r.frame_index for r in read_results(folder)] == list(range(frames))
    assert probe(out.overlay).num_frames == frames and out.annotations_zip
    with open(os.path.join(folder, "annotations", "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["status"] == "failed" and manifest["frames_done"] == frames


def test_a_failure_midway_keeps_the_frames_done_and_says_so(service, carphone, fail_at_frame):
    def bug():
        raise RuntimeError("simulated bug")

    fail_at_frame(10, bug)
    service.open_video("f", carphone)
    service.detect("f", 0, "person", None)
    out, folder = run(service, "f", "forward", 30)
    assert "simulated bug" in out.summary["error"] and "frames done before it are kept" in out.summary["error"]
    _assert_kept(folder, out, 10)


def _gpu_out_of_memory():
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated: no GPU here)")


@pytest.mark.parametrize("fail", [cpu_allocation_failure, _gpu_out_of_memory], ids=["cpu-allocator", "cuda-oom"])
def test_out_of_memory_keeps_the_frames_done_and_the_worker_lives(service, carphone, monkeypatch, fail_at_frame,
                                                                   fail):
    fail_at_frame(10, fail)
    service.open_video("m", carphone)
    service.detect("m", 0, "person", None)
    out, folder = run(service, "m", "forward", 30)
    error = out.summary["error"]
    assert error.startswith("Ran out of memory on cpu after 10 of 30 frames; the 10 frames done are saved.")
    assert "Track fewer objects" in error and "Traceback" not in error
    _assert_kept(folder, out, 10)
    monkeypatch.undo()  # the same service (and model) runs the next job
    again, _ = run(service, "m", "forward", 12)
    assert again.summary["status"] == "complete" and again.summary["frames"] == 12


@pytest.fixture()
def edit_service(edit_model, tmp_path):
    """A service on the small model whose tracker always answers (see conftest's edit_backend)."""
    return Service(model=edit_model, backend="transformers", device="cpu", root=str(tmp_path / "root"))


def _mask(result, obj_id):
    ids = result.obj_ids.tolist()
    return result.masks[ids.index(obj_id)] if obj_id in ids else np.zeros(result.size, bool)


NEGATIVE, POSITIVE = Edit("refine", labels=(0,)), Edit("refine", labels=(1,))


def test_clicks_fix_the_preview_and_the_run_starts_from_it(edit_service, carphone):
    s = edit_service
    s.open_video("c", carphone)
    ids = [r.id for r in s.detect("c", 0, "car, person", None).objects]
    target, ws = ids[0], s.workspaces.get("c")
    before = _mask(ws.preview, target)
    ys, xs = np.nonzero(before)
    shown = s.click("c", float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), NEGATIVE)
    assert shown.said.startswith("negative point on object #") and [r.id for r in shown.objects] == ids  # picked by clicking in it
    assert (_mask(ws.preview, target) != before).any()
    corner = s.click("c", 100, 20, Edit("add_object", label="mirror"))
    assert "first corner" in corner.said and s.said("c") == corner.said
    changed = np.argwhere((corner.image != shown.image).any(axis=2))  # the corner's cross, drawn where clicked
    assert len(changed) and np.abs(changed.mean(axis=0) - (20, 100)).max() < 3
    shown = s.click("c", 170, 100, Edit("add_object", label="mirror"))
    new = [r for r in shown.objects if r.id not in ids]
    assert len(new) == 1 and new[0].label == "mirror" and new[0].id > max(ids)
    assert shown.said == f"added a new 'mirror' object: id #{new[0].id}"
    out, folder = run(s, "c", "forward", 5)
    assert out.summary["status"] == "complete"
    results = list(read_results(folder))
    assert all(new[0].id in r.obj_ids.tolist() for r in results)  # the added object is tracked
    np.testing.assert_array_equal(_mask(results[0], target), _mask(ws.preview, target))  # the fixed mask
    manifest = json.loads(open(os.path.join(folder, "run.json")).read())
    assert [e["kind"] for e in manifest["edits"]] == ["refine", "add_object"]
    undone = s.clear_edits("c")
    assert undone.said == "" and s.said("c") == "" and ws.start.edits == ()
    assert (undone.image != shown.image).any()  # the marks went with the clicks


def test_clicks_that_cannot_apply_say_why(edit_service, carphone):
    s = edit_service
    s.open_video("d", carphone)
    with pytest.raises(Sam3VideoError, match="Press Detect first"):
        s.click("d", 10, 10, POSITIVE)
    s.detect("d", 0, "car, person", None)
    empty = np.ones(s.workspaces.get("d").preview.size, bool)
    for m in s.workspaces.get("d").preview.masks:
        empty &= ~m
    ys, xs = np.nonzero(empty)
    with pytest.raises(Sam3VideoError, match="Click inside an object"):
        s.click("d", float(xs[0]), float(ys[0]), POSITIVE)
    with pytest.raises(Sam3VideoError, match="(?i)removed|unknown|no object|not tracked"):
        s.click("d", 10, 10, Edit("refine", obj_id=999, labels=(1,)))
    assert s.workspaces.get("d").start.edits == ()  # the failed click is not kept


def test_fixing_a_frame_of_a_stopped_run_continues_from_it(edit_service, carphone):
    s = edit_service
    s.open_video("f", carphone)
    s.detect("f", 0, "car, person", None)
    with pytest.raises(Sam3VideoError, match="Nothing has run on this video yet"):
        s.fix_frame("f", 5)
    _, first = run(s, "f", "forward", 20)  # a frame limit stands in for Stop
    earlier = {r.frame_index: r for r in read_results(first)}
    # the slider shows the run's result on a frame it did, and the plain frame on one it did not
    with_run, plain = s.frame_image("f", 12), s.frame_image("f", 60)
    with VideoReader(carphone) as reader:
        assert (with_run != reader[12]).any() and (plain == reader[60]).all()
    with pytest.raises(Sam3VideoError, match="Frame 30 was not processed by the last run") as caught:
        s.fix_frame("f", 30)
    assert s.root not in str(caught.value)  # no server path in a visitor's sentence

    shown, direction = s.fix_frame("f", 12)
    assert direction == "forward" and "Propagate forward continues from it (frames 0-11 of the run are kept)" in shown.said
    seed_ids = earlier[12].obj_ids.tolist()
    assert [r.id for r in shown.objects] == seed_ids  # the run's objects on that frame, under their ids
    victim, target = seed_ids[0], seed_ids[1]
    s.remove("f", [victim])
    ws = s.workspaces.get("f")
    before = _mask(ws.preview, target)
    ys, xs = np.nonzero(before)
    shown = s.click("f", float(xs[len(xs) // 2]), float(ys[len(ys) // 2]), Edit("refine", obj_id=target, labels=(0,)))
    assert victim not in [r.id for r in shown.objects] and (_mask(ws.preview, target) != before).any()

    out, second = run(s, "f", "forward", 10)
    assert out.summary["status"] == "complete" and out.summary["frames"] == 22
    after = {r.frame_index: r for r in read_results(second)}
    assert sorted(after) == list(range(22))
    for i in range(12):
        np.testing.assert_array_equal(after[i].masks, earlier[i].masks)
    np.testing.assert_array_equal(_mask(after[12], target), _mask(ws.preview, target))  # the fixed mask
    assert all(victim not in after[i].obj_ids.tolist() for i in range(12, 22))
    assert os.path.isdir(first), "the run being continued is kept while its continuation exists"
    _, third = run(s, "f", "forward", 10)  # Propagate again: the same continuation, done again
    assert [r.frame_index for r in read_results(third)] == list(range(22))
    s.detect("f", 0, "car", None)  # a new detection starts over: no continuation
    _, fresh = run(s, "f", "forward", 3)
    assert [r.frame_index for r in read_results(fresh)] == [0, 1, 2]
    runs = sorted(n for n in os.listdir(ws.dir) if n.startswith("run-"))
    assert runs == [os.path.basename(fresh)]  # the latest run only: nothing continues the earlier ones now
    bikes = os.path.join(os.path.dirname(carphone), "bikes.mp4")
    s.open_video("f", bikes)  # another video: the run is not its
    with VideoReader(bikes) as reader:
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
    out, _ = run(service, "k", "forward", 4)
    assert out.summary["status"] == "complete" and out.summary["frames"] == 4
    assert os.path.basename(service.workspaces.get("k").video) == "my clip.mp4"  # the exports quote its name
    with pytest.raises(Sam3VideoError, match="no longer on the server"):
        service.open_video("k", str(upload))
    service.close_workspace("k")
    assert os.listdir(service.root) == []


def overlay_frames(path) -> int:
    import av

    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


def test_a_gpu_call_killed_mid_run_keeps_every_frame_it_wrote(service, carphone, gpu_call_killed):
    """A worker SIGKILLed mid-call (ZeroGPU ends a call that runs past its duration) leaves its
    folder cut off: the run's results are written again in the main process, every file holds the
    same frames, the summary says what ended it, and Continue takes the run to its end."""
    service.open_video("k", carphone)
    service.detect("k", 0, "person", None)
    out = run_to_end(service.propagate("k", "forward", 40))
    summary = out.summary
    assert summary["status"] == "stopped" and summary["stopped_by"] == "the end of the GPU call", summary
    done = summary["frames"]
    assert 0 < done < 40 and summary["frame_range"] == [0, done - 1]
    assert frames_in_zip(out.annotations_zip) == list(range(done)) and overlay_frames(out.overlay) == done
    assert len(list(read_results(service.workspaces.get("k").run_dir))) == done
    assert f"the files for frames 0-{done - 1} are below" in summary["error"] and "continue" in summary["error"]
    assert service.estimate("k", "forward", 40)  # the page still says what a run needs
    out = run_to_end(service.continue_run("k"))
    assert out.summary["status"] == "complete" and out.summary["frames"] == 40, out.summary
    assert frames_in_zip(out.annotations_zip) == list(range(40)) and overlay_frames(out.overlay) == 40
    with pytest.raises(BadRequestError, match="no unfinished run"):
        list(service.continue_run("k"))


def test_a_refused_run_never_hides_the_earlier_one(service, carphone, monkeypatch):
    """A run whose first GPU call is refused (the quota, the queue) did nothing: the visitor is told
    so, and the earlier run, its files and its summary, stays what /results gives."""
    import gradio as gr

    from sam3_video.web import gpu

    service.open_video("e", carphone)
    service.detect("e", 0, "person", None)
    first = run_to_end(service.propagate("e", "forward", 6))
    assert first.summary["status"] == "complete"

    def refused(request):
        raise gr.Error("You have exceeded your free ZeroGPU quota (90s requested vs. 3s left). Try again in 23:59:00.")
        yield

    monkeypatch.setattr(gpu, "run_step", refused)
    with pytest.raises(BadRequestError, match="Nothing of this run was done.*quota.*earlier run and its files are kept"):
        list(service.propagate("e", "forward", 20))
    again = service.results("e")
    assert again.summary == first.summary and frames_in_zip(again.annotations_zip) == list(range(6))


def test_a_frame_step_that_makes_no_sense_is_a_sentence(service, carphone):
    service.open_video("s", carphone)
    service.detect("s", 0, "person", None)
    for stride, words in ((0, "at least 1"), (-2, "at least 1"), (2.5, "whole number"), ("x", "not a number"),
                          (121, "longer than this video")):
        with pytest.raises(BadRequestError, match=words):
            list(service.propagate("s", "forward", 5, stride))


def files_cover(folder) -> dict[str, list[int]]:
    """The frames each file of a run folder covers (results.jsonl, the overlay, every format)."""
    import zipfile

    done = sorted(r.frame_index for r in read_results(folder))
    covered = {"results": done, "overlay": list(range(overlay_frames(os.path.join(folder, "overlay.mp4"))))}
    with zipfile.ZipFile(os.path.join(folder, "annotations.zip")) as z:
        names = z.namelist()
        coco = json.loads(z.read("annotations/coco_instances.json"))
        covered["coco"] = sorted(i["frame_index"] for i in coco["images"])
        covered["ytvis"] = json.loads(z.read("annotations/ytvis_dataset.json"))["videos"][0]["frame_indices"]
        covered["labelme"] = sorted(int(os.path.basename(n)[:-5]) for n in names
                                    if n.startswith("annotations/labelme/") and n.endswith(".json"))
        covered["davis"] = sorted(int(os.path.basename(n)[:-4]) for n in names
                                  if n.startswith("annotations/davis/") and n.endswith(".png"))
    return covered


@pytest.mark.parametrize("stop_at", ["while the model runs", "when only the writing is left"])
def test_a_stop_while_the_files_are_written_keeps_exactly_the_frames_done(service, carphone, monkeypatch, stop_at):
    """The GPU call writes results only; the overlay and annotations are written from them here,
    and may lag. A writer held back while the visitor presses Stop: the files still cover exactly
    the frames the model did, in every format, and the page said it was writing them."""
    import threading

    from sam3_video import writing

    release, held = threading.Event(), threading.Event()
    write = writing.FileWriter.write

    def slow_write(self, frame, line=None):
        held.set()
        assert release.wait(600), "the writer was never released"  # only binds if the test is broken
        return write(self, frame, line)

    if stop_at == "when only the writing is left":  # a writer that fell behind: all of it after the GPU
        monkeypatch.setattr(writing.Follower, "_work", lambda self: None)
    monkeypatch.setattr(writing.FileWriter, "write", slow_write)
    service.open_video("w", carphone)
    service.detect("w", 0, "person", None)
    items = []
    for item in service.propagate("w", "forward", 40):
        items.append(item)
        if isinstance(item, Progress) and not release.is_set():
            writing_now = "writing the overlay and annotations" in item.text
            if (stop_at == "while the model runs" and item.done >= 8 and held.is_set()) or writing_now:
                service.stop("w")
                release.set()
    out = items[-1]
    folder = service.workspaces.get("w").run_dir
    covered = files_cover(folder)
    done = covered["results"]
    assert all(frames == done for frames in covered.values()), covered
    assert out.summary["frames"] == len(done) and done == list(range(len(done)))
    if stop_at == "while the model runs":
        assert 8 <= len(done) < 40 and out.summary["stopped_by"] == "you"
    else:  # the GPU had finished: a Stop cuts nothing short
        assert len(done) == 40 and out.summary["status"] == "complete"
    texts = [i.text for i in items[:-1]]
    assert any("GPU released · writing the overlay and annotations" in t for t in texts), texts[-5:]
    assert [n for n in os.listdir(service.workspaces.get("w").dir) if n.startswith("writing-")] == []


def test_the_gpu_call_writes_results_only(service, carphone, monkeypatch):
    """What the GPU step writes into its folder: the results and the record, never the overlay or
    an annotation file (those are written in the app's process, from the results)."""
    from sam3_video.web import gpu

    seen = []
    step = gpu.run_step

    def watched(request):
        for update in step(request):
            yield update
        seen.append(sorted(os.listdir(request.out_dir)))  # as the GPU step leaves it

    monkeypatch.setattr(gpu, "run_step", watched)
    service.open_video("r", carphone)
    service.detect("r", 0, "person", None)
    out, folder = run(service, "r", "forward", 10)
    assert seen == [["results.jsonl", "run.json"]]
    assert probe(out.overlay).num_frames == 10 and frames_in_zip(out.annotations_zip) == list(range(10))
    assert files_cover(folder)["davis"] == list(range(10))
