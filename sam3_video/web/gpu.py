"""The web app's GPU steps: the only code of the app that runs the model.

Each step is a module-level function that takes one request of plain, picklable values and
returns (or yields) plain values. On Hugging Face ZeroGPU `gpu()` wraps it with `spaces.GPU`: it
runs in a worker process forked from the app, its request pickled in and its answers pickled
out, and nothing it changes comes back. Elsewhere it runs in the caller's thread. Either way a
step reads its request, writes only into the run folder and the handoff folder it was given, and
has finished all its work when it returns: no thread of it outlives the call.

Errors the visitor can act on come back as sentences in the answer (spaces would replace an
exception by its class name). Answers stay under 4 KB: a frame drawn and a frame's masks are left
in a file of the workspace (`handoff_dir`) for the app to read (handoff.py: a worker killed in the
middle of a longer answer would leave spaces' reader waiting).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Iterator

from .. import continuation
from ..config import GpuBudget
from ..errors import Sam3VideoError
from ..progress import Progress
from ..session import VideoSession
from ..types import RunOptions, StartPoint, VideoInfo
from .gradio_glue import gpu, sentence
from .handoff import Handoff
from .jobs import Job
from .model import ModelRef
from .runs import RunUpdate, stop_requested

log = logging.getLogger(__name__)
UPDATE_EVERY_S = 0.5  # a running step reports each new frame, and at least this often (a silent ZeroGPU generator fails)
DETECTED_FILE = "detected.pkl"  # in the handoff folder: a detection's frame (`Detected.result`)
LIVE_FRAME_FILE = "live-frame.pkl"  # in the handoff folder: a run's latest frame drawn (`RunUpdate.preview`)


@dataclass(frozen=True)
class DetectRequest:
    """Detect the phrases of `start` on its frame (or start from the run it continues, its result
    on that frame), drop its removals, apply its edits: the preview the visitor built, rebuilt on a
    fresh session (the same calls give the same ids and masks)."""

    model: ModelRef
    video: str
    info: VideoInfo
    start: StartPoint
    handoff_dir: str  # where the step leaves the frame's objects (the workspace's folder)
    seconds: int = 60  # GPU time asked for


@dataclass
class Detected:
    result: Handoff | None  # the frame's objects (removals applied), left in a file, or None and
    error: str | None = None  # the sentence that says why not


@dataclass(frozen=True)
class RunRequest:
    """Run `options` on the video into `out_dir` (sam3_video.pipeline.run), stopping at a stop
    request left in `out_dir`, and, when `enforced`, in time to close its files within `seconds`
    of GPU time. The step writes the results (results.jsonl, run.json) only: the overlay and the
    annotations are written from them in the app's process (writing.Follower), so that the GPU
    time goes to the model."""

    model: ModelRef
    video: str
    info: VideoInfo
    options: RunOptions
    out_dir: str
    handoff_dir: str  # where the step leaves the latest frame drawn (the workspace's folder)
    seconds: int
    enforced: bool = False


@gpu(lambda request: request.seconds)
def detect_step(request: DetectRequest) -> Detected:
    try:
        backend = request.model.load()
        start = request.start
        with VideoSession(request.video, backend, request.info) as session:
            earlier = None
            if start.continue_from:
                earlier = continuation.load(start.continue_from, start.frame, None, request.info)
            result = session.replay(start.frame, start.phrases, start.threshold, start.removed, start.edits, earlier)
        return Detected(Handoff.leave(result, os.path.join(request.handoff_dir, DETECTED_FILE)))
    except Exception as err:  # a sentence for the visitor (a bug's details go to the log)
        return Detected(None, sentence(err, "detection"))


@gpu(lambda request: request.seconds)
def run_step(request: RunRequest) -> Iterator[RunUpdate]:
    """Yields a `RunUpdate` at once, then at least every UPDATE_EVERY_S, then a last one
    (`finished`) once the results are closed. Closed early (a client's cancel through spaces'
    stop event, or in-process), it stops the run and returns only when the files are final."""
    started = time.time()
    deadline = started + request.seconds - GpuBudget.margin_s(request.seconds) if request.enforced else None
    job: Job | None = None

    def should_stop() -> bool:
        """A stop request, or too little time left for the next frame (at the pace so far, twice over)."""
        if stop_requested(request.out_dir):
            return True
        if deadline is None:
            return False
        pace = job.progress.fps if job is not None and job.progress is not None else 0.0
        return time.time() + (2 / pace if pace > 0 else 0.0) >= deadline

    yield RunUpdate()
    try:
        job = Job(request.model.load(), request.video, request.info, request.options, request.out_dir, should_stop,
                  outputs=())
    except Sam3VideoError as err:
        yield RunUpdate(Progress(finished=True), error=str(err))
        return
    shown = None
    try:
        while not job.done.is_set():
            job.updated.wait(UPDATE_EVERY_S)  # a new frame, or half a second without one
            job.updated.clear()
            if should_stop():
                job.stop()
            if not job.done.is_set():
                yield _update(job, None if job.preview is shown else job.preview, request)
                shown = job.preview
        stopped_for = None
        if job.summary is not None and job.summary.status == "stopped":
            stopped_for = "request" if stop_requested(request.out_dir) else "time"
        final = _update(job, None if job.preview is shown else job.preview, request)
        final.progress.finished, final.stopped_for, final.error = True, stopped_for, job.error
        p = job.progress
        if p is not None and p.fps > 0:
            kept = (job.summary.continued_from or {}).get("frames_kept", 0) if job.summary is not None else 0
            final.frames_run = max(0, p.done - int(kept))
            final.model_s = final.frames_run / p.fps
            final.start_s = max(0.0, time.time() - started - final.model_s)
        yield final
    finally:
        if not job.done.is_set():  # closed at a yield: finish here, so that the call ends with the files final
            job.stop()
            job.done.wait()


def _update(job: Job, preview, request: RunRequest) -> RunUpdate:
    """The job's progress as it leaves the step, with `preview` (None: no new frame drawn) left in
    the request's handoff folder."""
    left = None
    if preview is not None:
        try:
            left = Handoff.leave(preview, os.path.join(request.handoff_dir, LIVE_FRAME_FILE))
        except OSError as err:  # a preview is not worth failing the run for
            log.warning("could not leave the frame drawn for the app: %s", err)
    return RunUpdate((job.progress or Progress()).sent(None), preview=left)
