"""The app under Hugging Face ZeroGPU's process model (tests/zerogpu): every GPU step in a forked
worker, arguments and answers pickled, nothing a worker changes coming back. Two apps: one forks
a new worker for every call and allows 6 s of GPU per call (so a run of the whole clip takes
several calls), one reuses warm workers with the default cap.

Through gradio_client, as an API user would: the whole visitor flow, Stop, a client's cancel, the
one-shot endpoint. From the stand-in device API's record: each call asks for the GPU time its
work needs (config.GpuBudget, with the figures the apps were given), and a run's /release comes
after its results are final (its overlay and annotations are written in the app, off the GPU). The browser side (a click on the frame) is in test_browser.py.
"""

from __future__ import annotations

import glob
import os
import time

import pytest

from sam3_video.config import GpuBudget
from sam3_video.video import probe
from tests.conftest import ZERO_BUDGET, answer_of, frames_in_zip, manifest_in_zip, video_path, wait_for_frames


@pytest.fixture(scope="module", params=["fresh", "warm"])
def zero(request):
    return request.getfixturevalue(f"zero_{request.param}")


def budget(app) -> GpuBudget:
    """The app's budget (conftest.ZERO_BUDGET and its cap), to compute what each call should ask."""
    return GpuBudget(start_s=float(ZERO_BUDGET["SAM3_GPU_START_S"]),
                     per_frame_s=float(ZERO_BUDGET["SAM3_GPU_SECONDS_PER_FRAME"]),
                     per_kept_frame_s=float(ZERO_BUDGET["SAM3_GPU_SECONDS_PER_KEPT_FRAME"]),
                     per_edit_s=float(ZERO_BUDGET["SAM3_GPU_SECONDS_PER_EDIT"]), max_s=app.cap_s)


class Calls:
    """The device API calls made since it was created (or since `mark()`)."""

    def __init__(self, app):
        self.app, self.start = app, len(app.api.calls)

    def mark(self) -> None:
        self.start = len(self.app.api.calls)

    def since(self, path: str) -> list[dict]:
        return [c for c in self.app.api.calls[self.start:] if c["path"] == path]

    def asked(self) -> list[int]:
        """The GPU seconds each /schedule asked for."""
        return [int(c["params"]["durationSeconds"]) for c in self.since("/schedule")]


def latest_run(zip_path) -> str:
    """The run folder on the server that wrote this annotations.zip (the visitor's newest run)."""
    visitor = os.path.dirname(os.path.dirname(manifest_in_zip(zip_path)["video"]["path"]))
    return max(glob.glob(os.path.join(visitor, "run-*", "run.json")), key=os.path.getmtime)


def assert_released_after_final(calls: Calls, zip_path) -> None:
    """The last GPU call of the run was released after the files it writes (its results and
    run.json) were final; the overlay and annotations are written in the app, from the results."""
    run_json = latest_run(zip_path)
    folder = os.path.dirname(run_json)
    final = max(os.path.getmtime(os.path.join(folder, name)) for name in ("run.json", "results.jsonl"))
    released = calls.since("/release")
    assert released and released[-1]["t"] >= final, (released[-1]["t"] if released else None, final)
    assert os.path.getsize(os.path.join(folder, "overlay.mp4")) and os.path.getsize(os.path.join(folder, "annotations.zip"))


def assert_runs_asked(asked: list[int], b: GpuBudget, frames: int, kept: int = 0, edits: int = 0) -> None:
    """A run's calls: the first asks for the whole run (capped); each later one, continuing, for what is left."""
    assert asked and asked[0] == b.run(frames, kept, edits), (asked, b.run(frames, kept, edits))
    assert all(1 <= a <= b.run(frames, frames + kept) for a in asked[1:]), asked


def test_the_visitor_flow(zero, carphone):
    from gradio_client import Client, handle_file

    b, calls = budget(zero), Calls(zero)
    client = Client(zero.url, verbose=False)
    facts, _, first = client.predict(handle_file(carphone), api_name="/open_video")
    assert "120 frames" in facts and first and calls.asked() == []  # opening a video needs no GPU
    image, table, _ = client.predict(0, "person, window", "", api_name="/detect")
    ids = [row[0] for row in table["data"]]
    assert image and len(ids) >= 3, "the small model must find objects for this test to mean anything"
    assert calls.asked() == [b.step(0)]
    calls.mark()
    _, table, _ = client.predict([ids[-1]], api_name="/remove_objects")
    assert [row[0] for row in table["data"]] == ids[:-1] and calls.asked() == []  # removing needs no GPU
    rows = client.predict(ids[0], 20.0, 30.0, True, api_name="/refine_object")
    assert ids[0] in [row[0] for row in rows] and ids[-1] not in [row[0] for row in rows]
    client.predict("mirror", 100.0, 20.0, 170.0, 100.0, api_name="/add_object")
    assert calls.asked() == [b.step(1), b.step(2)]  # each click replays the edits so far

    calls.mark()
    job = client.submit("forward", 8, api_name="/propagate")
    preview, status, overlay, zip_path, files, summary = answer_of(zero, job)
    assert summary["status"] == "complete" and summary["frames"] == 8 and "complete" in status
    assert len(job.outputs()) >= 3, "at least two progress updates streamed before the result"
    assert frames_in_zip(zip_path) == list(range(8)) and probe(video_path(overlay)).num_frames == 8
    manifest = manifest_in_zip(zip_path)
    assert [e["kind"] for e in manifest["edits"]] == ["refine", "add_object"] and manifest["removed_ids"] == [ids[-1]]
    assert_runs_asked(calls.asked(), b, 8, edits=2)
    assert summary["gpu_calls"] == len(calls.asked())
    assert_released_after_final(calls, zip_path)

    calls.mark()
    with pytest.raises(Exception, match="Frame 50 was not processed"):
        client.predict(50, api_name="/fix_frame")
    _, table, _, direction, said = client.predict(5, api_name="/fix_frame")
    fixed = [row[0] for row in table["data"]]
    assert fixed and direction == "forward" and "frames 0-4 of the run are kept" in said
    client.predict(fixed[0], 20.0, 30.0, False, api_name="/refine_object")
    assert calls.asked() == [b.step(0), b.step(1)]
    calls.mark()
    *_, zip_path, _, summary = answer_of(zero, client.submit("forward", 6, api_name="/propagate"))
    assert summary["status"] == "complete" and summary["frames"] == 11
    assert frames_in_zip(zip_path) == list(range(11))
    assert manifest_in_zip(zip_path)["continued_from"]["frame"] == 5
    assert_runs_asked(calls.asked(), b, 6, kept=5, edits=1)


def running(zero, carphone, start: int):
    """A client whose run from `start` to the end is 10 frames in; the device API's calls since it began."""
    from gradio_client import Client, handle_file

    client = Client(zero.url, verbose=False)
    client.predict(handle_file(carphone), api_name="/open_video")
    client.predict(start, "person", "", api_name="/detect")
    calls = Calls(zero)
    job = client.submit("forward", None, api_name="/propagate")
    wait_for_frames(job, 10)
    return client, calls, job


def test_stop_keeps_exactly_the_frames_done(zero, carphone):
    client, calls, job = running(zero, carphone, 0)
    client.predict(api_name="/stop")
    _, status, overlay, zip_path, _, summary = answer_of(zero, job)
    assert summary["status"] == "stopped" and 10 <= summary["frames"] < 120 and status.startswith("stopped")
    assert frames_in_zip(zip_path) == list(range(summary["frames"]))
    assert probe(video_path(overlay)).num_frames == summary["frames"]
    assert client.predict(api_name="/results")[-1] == summary  # the run folder says the same
    assert_runs_asked(calls.asked(), budget(zero), 120)
    assert_released_after_final(calls, zip_path)


def test_a_client_cancel_stops_the_run_and_keeps_its_frames(zero, carphone):
    client, calls, job = running(zero, carphone, 30)
    job.cancel()
    while not job.done():  # gradio_client cancels on its own thread; a call sent meanwhile was cancelled with it
        time.sleep(0.05)
    overlay, zip_path, _, summary = client.predict(api_name="/results")  # waits until its files are final
    assert summary["status"] == "stopped" and 10 <= summary["frames"] < 90
    assert frames_in_zip(zip_path) == list(range(30, 30 + summary["frames"]))
    assert probe(video_path(overlay)).num_frames == summary["frames"]
    assert_runs_asked(calls.asked(), budget(zero), 90)
    assert_released_after_final(calls, zip_path)
    *_, summary = answer_of(zero, client.submit("forward", 3, api_name="/propagate"))  # the tab goes on
    assert summary["status"] == "complete" and summary["frames"] == 3


def test_the_one_shot_endpoint_asks_for_its_own_work(zero, carphone):
    from gradio_client import Client, handle_file

    b, calls = budget(zero), Calls(zero)
    client = Client(zero.url, verbose=False)
    overlay, zip_path, summary = client.predict(handle_file(carphone), "person, window", 60, "both", 5, "",
                                                api_name="/segment_video")
    assert summary["status"] == "complete" and summary["frames"] == 9
    assert frames_in_zip(zip_path) == list(range(56, 65))
    assert_runs_asked(calls.asked(), b, 9)
    assert_released_after_final(calls, zip_path)


def test_a_run_longer_than_one_call_goes_on_in_the_next(zero, carphone):
    """The whole clip: more than one 6 s call on the fresh-worker app (each continuing the last,
    one progress bar), one call under the default cap; the same frames either way."""
    from gradio_client import Client, handle_file

    b, calls = budget(zero), Calls(zero)
    client = Client(zero.url, verbose=False)
    job = client.submit(handle_file(carphone), "person", 0, "forward", None, "", api_name="/segment_video")
    overlay, zip_path, summary = job.result(timeout=900)
    assert summary["status"] == "complete" and summary["frames"] == 120
    assert frames_in_zip(zip_path) == list(range(120)) and probe(video_path(overlay)).num_frames == 120
    asked = calls.asked()
    assert summary["gpu_calls"] == len(asked) and (len(asked) >= 2 if b.run(120) >= zero.cap_s else len(asked) == 1)
    assert_runs_asked(asked, b, 120)
    assert_released_after_final(calls, zip_path)


def test_the_app_log_has_no_cuda_init_and_no_aborted_task(zero):
    with open(zero.log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert "Low-level CUDA init" not in log and "GPU task aborted" not in log, log[-3000:]
    assert zero.proc.poll() is None
