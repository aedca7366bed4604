"""The visitor's steps, as the page and the API call them: open a video, detect, remove, fix with
clicks, propagate, stop, fix a frame of a run and continue, get the results.

Everything here runs in the app's main process and owns its state (the workspaces); the model
runs only in the GPU steps of `gpu.py`, called with plain values. A detection and every correction
are replayed on a fresh model session, so no model state lives between calls and a step can run
in another process (Hugging Face ZeroGPU). A run's folder is the record of the run: its results,
the slider after it, Fix this frame and /results read the files (`runs.py`).

A run is one generator from the visitor's point of view, however many GPU calls it takes: it
yields `Progress` at least every second, then the run's `Outputs`. The run itself goes on in a
thread of its own (`live.py`), so that the folder stays in use (never swept) until its files are
final whoever watches: closed early by an API client (a cancel), it asks the run to stop; a page
that goes away (a reload) leaves it going on, and the same tab, back (`restore`), follows it again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

import numpy as np

from .. import continuation
from ..config import LIMITS, ON_SPACE, AppLimits, GpuBudget
from ..errors import BadRequestError
from ..export import check_outputs
from ..progress import Progress
from ..results import rle_areas
from ..runfolder import read_record
from ..session import check_direction, check_frame
from ..types import Edit, FrameResult, RunOptions, StartPoint, VideoInfo, check_stride, phrases_of
from ..video import VideoReader
from . import clicks, gpu, review, runloop, runs
from .live import LiveRun
from .model import AppModel
from .previews import Preview, draw, object_rows, to_video_pixels
from .gpucalls import Pace, duration_factor, refusal
from .runloop import RunLoop, Sizer
from .runs import Outputs, Plan, RunSummary, RunUpdate
from .uploads import check_video, keep_upload
from .workspaces import Workspace, Workspaces

log = logging.getLogger(__name__)
FINISH_WAIT_S = 60  # how long a new run waits for a stopped one of the same visitor to close its files


@dataclass
class Restored:
    """What a tab starts with: the token its page keeps (sessionStorage) to come back after a
    reload, and, when it did come back (`back`), what its workspace holds: the video, the
    detected (or fixed) frame drawn with its objects, the phrases, and the run (going on, or its
    outputs)."""

    token: str
    back: bool = False
    video: str | None = None
    info: VideoInfo | None = None
    frame: int = 0
    phrases: tuple[str, ...] = ()
    threshold: float | None = None
    preview: Preview | None = None
    running: bool = False
    outputs: Outputs | None = None


class Service:
    """The app's state: the model (loaded now, once, shared) and the visitors' workspaces."""

    def __init__(self, model: str | None = None, backend: str | None = None, device: str | None = None,
                 dtype: str | None = None, limits: AppLimits = LIMITS, root: str | None = None,
                 budget: GpuBudget | None = None):
        self.model = AppModel(model, backend, device, dtype)
        if self.model.problem:  # for whoever runs the app (on a Space: its owner, in the logs)
            log.error("The model is not available: %s", self.model.problem)
        self.limits = limits
        self.budget = budget or GpuBudget()
        self.workspaces = Workspaces(root, limits)
        self.outputs = tuple(check_outputs([limits.outputs]))  # checked now: a typo is one sentence at start
        self.root = self.workspaces.root
        self.sizer = Sizer(self.budget, Pace(), learn=self.budget.learn)
        self.loop = RunLoop(self.workspaces, self.sizer, self.outputs)

    def model_status(self) -> str | None:
        """None when the model is ready, else the sentence that says why not and what to do."""
        return self.model.problem

    def visitor_problem(self) -> str | None:
        """What the page says when the model is missing: the owner's sentence where the person at
        the page runs the app; on a Hugging Face Space, words for its visitors (the owner's
        instructions are in the log, and in the README)."""
        if self.model.problem is None or not ON_SPACE:
            return self.model.problem
        return ("This Space cannot run SAM3 right now: it has no access to the model's weights. You can still "
                "open a video; detecting and tracking need the model, so come back later, or run the app on "
                "your own machine (see the Space's README).")

    # -- the tab ---------------------------------------------------------------------------------
    def restore(self, key: str, token: str, wait_s: float = 5.0) -> Restored:
        """A tab opens: the workspace it left on a reload when it shows that workspace's `token`
        (its run going on), else a new one; either way the token to keep. `wait_s`: how long to
        wait for the old session to be seen gone (Workspaces.reclaim)."""
        ws = self.workspaces.reclaim(key, token, wait_s)
        if ws is None:
            return Restored(self.workspaces.get(key).token)
        if ws.video is None or ws.info is None:
            return Restored(ws.token, back=True)
        ws.reopen = _file_id(ws.video)
        running = ws.live is not None and not ws.live.ended
        frame = ws.start.frame if ws.start is not None else 0
        if ws.preview is not None:
            shown = self._shown(ws, ws.said)
        else:
            shown = Preview(self.frame_image(key, frame), [], "")
        outputs = runs.outputs(ws.run_dir) if ws.run_dir and not running and read_record(ws.run_dir) else None
        threshold = ws.start.threshold if ws.start is not None else None
        return Restored(ws.token, True, ws.video, ws.info, frame, ws.phrases, threshold, shown, running, outputs)

    def reopened(self, key: str, path: str) -> bool:
        """Whether `path` is the tab's own video given back to its page by `restore` (the page
        then opens it again: nothing is to start over)."""
        ws = self.workspaces.peek(key)
        if ws is None or ws.reopen is None or ws.reopen != _file_id(path):
            return False
        ws.reopen = None
        return True

    def leave(self, key: str) -> None:
        """The tab went away: a reload, or closed (see Workspaces.leave)."""
        self.workspaces.leave(key)

    # -- the video -------------------------------------------------------------------------------
    def open_video(self, key: str, path: str) -> tuple[VideoInfo, np.ndarray]:
        """Check the upload against the limits; return its facts and its first frame (drawn)."""
        info = check_video(path, self.limits)
        ws = self.workspaces.get(key)
        if ws.running:
            raise BadRequestError("A run is still going on. Press Stop (or wait for it) before opening another video.")
        with self.workspaces.in_use(ws):
            ws.video, ws.info, ws.reopen = keep_upload(ws.dir, path), info, None
            ws.start_over()
            self.workspaces.set_run(ws, None)
        return info, self.frame_image(key, 0)

    def frame_image(self, key: str, index: int) -> np.ndarray:
        """Frame `index` for the slider: with the detections when it is the detected (or fixed)
        frame, else with the latest run's result on it when the run did it."""
        ws = self.workspaces.get(key)
        _, info = ws.need_video()
        index = int(np.clip(int(index or 0), 0, info.num_frames - 1))
        image = _read_frame(ws, index)
        if ws.preview is not None and ws.start is not None and ws.start.frame == index:
            return draw(image, ws.preview.without(ws.start.removed), clicks.marks(ws.start.edits, ws.corner))
        frames = self._run_frames(ws)
        return draw(image, frames.get(index, info.height, info.width) if frames and index in frames else None)

    @staticmethod
    def _run_frames(ws: Workspace) -> continuation.RunFrames | None:
        """The latest run's results on this video, once it has ended (None otherwise); read once
        per run (the slider asks for frame after frame)."""
        if ws.run_dir is None or ws.running:
            return None
        if ws.run_frames is None or os.path.dirname(ws.run_frames.path) != ws.run_dir:
            try:
                ws.run_frames = continuation.RunFrames(ws.run_dir)
            except (OSError, BadRequestError):
                return None
        return ws.run_frames

    def to_video_pixels(self, key: str, x: float, y: float) -> tuple[float, float]:
        _, info = self.workspaces.get(key).need_video()
        return to_video_pixels(info, x, y)

    # -- the detected frame and its corrections ----------------------------------------------------
    def _rebuild(self, ws: Workspace, start: StartPoint) -> FrameResult:
        """The preview `start` makes: its phrases detected on its frame (or the run it continues
        taken there), its removals dropped, its edits applied, in a GPU step; the workspace is not
        changed (the caller keeps what worked)."""
        video, info = ws.need_video()
        request = gpu.DetectRequest(self.model.require(), video, info, start, ws.dir, self.sizer.step(len(start.edits)))
        with self.workspaces.in_use(ws):
            try:
                answer = gpu.detect_step(request)
            except Exception as err:  # refused for want of quota: once more, asking for what is left
                shorter = self.sizer.shorter_step(request.seconds, refusal(err))
                if shorter is None:
                    raise
                answer = gpu.detect_step(replace(request, seconds=shorter))
        if answer.result is None:
            raise BadRequestError(answer.error or "The detection failed; run it again.")
        return answer.result.take(remove=True)

    @staticmethod
    def _start(ws: Workspace, what: str = "") -> tuple[StartPoint, FrameResult]:
        """The workspace's start point and its preview, else the sentence that says to Detect."""
        preview = ws.need_preview(what)
        assert ws.start is not None  # a preview is made from a start point
        return ws.start, preview

    def _shown(self, ws: Workspace, said: str = "") -> Preview:
        """The detected (or fixed) frame with its objects, removals applied, the clicks made on it
        drawn, and `said`."""
        start, preview = self._start(ws)
        kept = preview.without(start.removed)
        return Preview(draw(_read_frame(ws, start.frame), kept, clicks.marks(start.edits, ws.corner)), object_rows(kept),
                       said)

    def said(self, key: str) -> str:
        """What the visitor's last click made, in words ("" once Detect, Undo all clicks or a new
        video started over)."""
        ws = self.workspaces.peek(key)
        return ws.said if ws is not None else ""

    def detect(self, key: str, index: int, prompts: str, threshold: float | None) -> Preview:
        """Detect the phrases on frame `index` (starts over: no removals, clicks or continuation)."""
        ws = self.workspaces.get(key)
        _, info = ws.need_video()
        phrases = phrases_of(prompts)
        start = StartPoint(check_frame(info, int(index or 0)), phrases, threshold)
        ws.start_over(start, self._rebuild(ws, start))
        return self._shown(ws)

    def remove(self, key: str, ids: Sequence[int]) -> Preview:
        """Drop objects from the preview (and from the run that follows)."""
        ws = self.workspaces.get(key)
        start, preview = self._start(ws, "there are no objects to remove yet.")
        unknown = sorted(set(int(i) for i in ids) - set(preview.obj_ids.tolist()))
        if unknown:
            raise BadRequestError(f"There is no object #{unknown[0]} on this frame. Pick ids from the table.")
        ws.start = start.removing(int(i) for i in ids)
        return self._shown(ws)

    def edit(self, key: str, edit: Edit, said: str = "") -> Preview:
        """Apply one correction (a click on an object, a new object's box, an example box) to the
        preview with the model, and keep it for the run."""
        ws = self.workspaces.get(key)
        start, preview = self._start(ws, "clicks fix the detections on that frame.")
        edited = start.with_edits(clicks.merged(start.edits, edit))
        ws.preview, ws.start = self._rebuild(ws, edited), edited
        ws.said = clicks.outcome(edit, said, preview.without(start.removed), ws.preview.without(start.removed)) \
            if said else ""
        return self._shown(ws, ws.said)

    def click(self, key: str, x: float, y: float, intent: Edit) -> Preview:
        """A click on the preview at video pixel (x, y), meant as `intent` (see clicks.py)."""
        ws = self.workspaces.get(key)
        start, preview = self._start(ws, "clicks fix the detections on that frame.")
        click = clicks.read_click(intent, x, y, ws.corner, preview.without(start.removed),
                                  start.phrases[0] if start.phrases else "object")
        ws.corner = click.corner
        if click.edit is None:
            ws.said = click.said
            return self._shown(ws, click.said)
        return self.edit(key, click.edit, click.said)

    def clear_edits(self, key: str) -> Preview:
        """Forget every click since Detect (removals stay)."""
        ws = self.workspaces.get(key)
        start, _ = self._start(ws)
        start = start.with_edits(())
        ws.start_over(start, self._rebuild(ws, start))
        return self._shown(ws)

    def fix_frame(self, key: str, index: int) -> tuple[Preview, str]:
        """The latest run's result on frame `index` (a frame it did) as the preview to correct;
        the next Propagate continues from it and keeps the run's frames behind it. Returns the
        preview (its sentence says what will happen) and the direction to continue in."""
        ws = self.workspaces.get(key)
        video, info = ws.need_video()
        if ws.running:
            raise BadRequestError("The run is still going on; press Stop (its frames are kept), then fix a frame.")
        frames, run_dir = self._run_frames(ws), ws.run_dir
        if frames is None or run_dir is None:
            raise BadRequestError("Nothing has run on this video yet: Detect, then Propagate; then fix a frame of that run.")
        index = int(index or 0)
        if index not in frames:  # said here: continuation's own sentence names the folder, a server path
            raise BadRequestError(f"Frame {index} was not processed by the last run (it covers {frames.covered()}); "
                                  "move the slider to a frame it did.")
        earlier = continuation.load(run_dir, index, None, info, frames)
        phrases = ws.phrases or earlier.prompts
        start = StartPoint(index, phrases, earlier.threshold, continue_from=run_dir)
        ws.start_over(start, self._rebuild(ws, start))
        kept = f"frames {earlier.kept[0]}-{earlier.kept[-1]} of the run are kept" if earlier.kept else "no frames are kept"
        said = (f"Frame {index} of the last run: remove or click to fix its objects, then Propagate "
                f"{earlier.direction} continues from it ({kept}).")
        return self._shown(ws, said), earlier.direction

    # -- runs ---------------------------------------------------------------------------------------
    def propagate(self, key: str, direction: str, max_frames: float | None, stride: float | None = 1,
                  stop_on_close: bool = True) -> Iterator[Progress | Outputs]:
        """Propagate from the detected frame (or continue from a fixed one), every `stride`-th frame:
        `Progress` at least every second, then the run's `Outputs`. Closing this stops the run
        when `stop_on_close` (else it goes on: the page's run survives a reload)."""
        ws = self.workspaces.get(key)
        yield from self._run(ws, self._options(ws, direction, max_frames, stride), stop_on_close)

    def _options(self, ws: Workspace, direction: str, max_frames: float | None, stride: float | None) -> RunOptions:
        """The run the visitor's workspace asks for, checked."""
        _, info = ws.need_video()
        if ws.start is None or not ws.start.phrases:
            raise BadRequestError("Press Detect first, so that you can check what will be tracked.")
        stride = check_stride(stride, info)
        if ws.start.continue_from:  # continuing a run: on its frames (its stride)
            stride = _stride_of(ws.start.continue_from)
        return RunOptions(ws.start, check_direction(direction), int(max_frames) if max_frames else None, stride)

    def estimate(self, key: str, direction: str, max_frames: float | None, stride: float | None = 1) -> str:
        """Roughly how much GPU time the run the visitor set up needs, in words ("" before Detect)."""
        ws = self.workspaces.peek(key)
        if ws is None or ws.info is None or not ws.phrases:
            return ""
        options = self._options(ws, direction, max_frames, stride)
        seconds, calls = self.sizer.estimate(ws.info, options)
        return gpu_time_words(seconds, calls)

    def continue_run(self, key: str, stop_on_close: bool = True) -> Iterator[Progress | Outputs]:
        """Go on with the latest run where it ended before covering what it set out to (stopped,
        refused, cut off): from its last frame, the frames done kept."""
        ws = self.workspaces.get(key)
        _, info = ws.need_video()
        if ws.running:
            raise BadRequestError("The run is still going on.")
        run_dir = ws.run_dir
        leg = runloop.continue_leg(run_dir) if run_dir else None
        if run_dir is None or leg is None:
            raise BadRequestError("There is no unfinished run to continue: Propagate starts a new one.")
        earlier = continuation.load(run_dir, leg.frame, leg.direction, info)
        stride = _stride_of(run_dir)
        phrases = ws.phrases or earlier.prompts
        start = StartPoint(phrases=phrases, threshold=earlier.threshold).continuing(run_dir, leg.frame)
        ws.start_over(start)
        yield from self._run(ws, RunOptions(start, leg.direction, leg.max_frames, stride), stop_on_close)

    def segment_video(self, key: str, path: str, prompts: str, start_frame: int = 0, direction: str = "forward",
                      max_frames: int | None = None, threshold: float | None = None, stride: int | None = 1
                      ) -> Iterator[Progress | Outputs]:
        """The one-shot API: open, detect and propagate in one call."""
        self.open_video(key, path)
        ws = self.workspaces.get(key)
        _, info = ws.need_video()
        phrases = phrases_of(prompts)
        start = StartPoint(check_frame(info, int(start_frame or 0)), phrases, threshold)
        ws.start_over(start)
        options = RunOptions(start, check_direction(direction), int(max_frames) if max_frames else None,
                             check_stride(stride, info))
        yield from self._run(ws, options, stop_on_close=True)

    def _run(self, ws: Workspace, options: RunOptions, stop_on_close: bool) -> Iterator[Progress | Outputs]:
        """Start the run in a thread of its own (`LiveRun`) and follow it. Closed early, the
        follower asks the run to stop when `stop_on_close` (an API client's cancel); a page that
        goes away (a reload) leaves it going on, to be followed again (`follow`)."""
        check_direction(options.direction, options.max_frames)
        if ws.running and not ws.idle.wait(FINISH_WAIT_S if runs.stop_requested(ws.run_dir or "") else 0):
            raise BadRequestError("A run is already going on in this tab. Press Stop or wait for it.")
        ws.live = LiveRun.start(self._legs(ws, options), is_last=lambda item: isinstance(item, Outputs))
        yield from self._watch(ws, ws.live, stop_on_close)

    def _watch(self, ws: Workspace, live: LiveRun, stop_on_close: bool) -> Iterator[Progress | Outputs]:
        try:
            yield from live.follow()
        except GeneratorExit:
            if stop_on_close:
                self.workspaces.stop_run(ws)
            raise

    def follow(self, key: str) -> Iterator[Progress | Outputs]:
        """The visitor's run that is going on (a page back after a reload follows it again): its
        progress, then its outputs; nothing when none is going on. Closing this leaves it going."""
        ws = self.workspaces.peek(key)
        if ws is not None and ws.live is not None and not ws.live.ended:
            yield from self._watch(ws, ws.live, stop_on_close=False)

    def _legs(self, ws: Workspace, options: RunOptions) -> Iterator[Progress | Outputs]:
        """The run as one or more GPU calls (`runloop.RunLoop`), holding the workspace in use."""
        _, info = ws.need_video()
        model = self.model.require()
        with self.workspaces.in_use(ws, run=True):
            kept = []
            start = options.start
            if start.continue_from:
                kept = continuation.load(start.continue_from, start.frame, options.direction, info).kept
            plan = Plan.of(info.num_frames, start.frame, options.direction or "forward", options.max_frames,
                           kept, options.stride)
            before, earlier_shape, ws.review = ws.run_dir, ws.shape, None  # a new run: nothing picked on it yet
            ws.shape = review.Shape(plan.first, plan.last, start.frame, options.direction or "forward",
                                    options.stride, start.frame if start.continue_from else None,
                                    (kept[0], kept[-1]) if kept else None)
            started, shown = time.monotonic(), len(kept)
            seconds, calls = self.sizer.estimate(info, options, len(kept))
            yield Progress(shown, plan.total, text=f"starting on the GPU ({gpu_time_words(seconds, calls)})")
            try:
                for item in self.loop.legs(ws, model, options, plan, kept):
                    if isinstance(item, RunSummary):  # the run has ended, its folder is final
                        break
                    if isinstance(item, Progress):  # the GPU calls are over: the files are being finished
                        yield Progress(shown, plan.total, text="GPU released · writing the overlay and "
                                       f"annotations: {item.written}/{item.total}")
                        continue
                    calls, update = item
                    progress = _progress(update, plan, shown, calls, started)
                    shown = progress.done
                    yield progress
            except BaseException:
                if ws.run_dir == before:  # not one frame of it: the earlier run is the latest, as it was
                    ws.shape = earlier_shape
                raise
            yield runs.outputs(self._need_run(ws))

    def stop(self, key: str) -> None:
        """Ask the visitor's running run to stop after its current frame (returns at once)."""
        ws = self.workspaces.peek(key)
        if ws is not None:
            self.workspaces.stop_run(ws)

    def running(self, key: str) -> bool:
        ws = self.workspaces.peek(key)
        return ws is not None and ws.running

    def last_summary(self, key: str) -> dict | None:
        """The summary of the visitor's latest run as its folder says now (None: no run)."""
        ws = self.workspaces.peek(key)
        if ws is None or not ws.run_dir or read_record(ws.run_dir) is None:
            return None
        return runs.summary_of(ws.run_dir)

    def results(self, key: str, wait_s: float = 300) -> Outputs:
        """The files of the visitor's latest run, once they are final."""
        ws = self.workspaces.get(key)
        if not ws.idle.wait(wait_s):
            raise BadRequestError("The run is still going on; press Stop to end it and keep what is done.")
        return runs.outputs(self._need_run(ws))

    @staticmethod
    def _need_run(ws: Workspace) -> str:
        """The folder of the visitor's latest run, which has a record, else a sentence."""
        if ws.run_dir is None or read_record(ws.run_dir) is None:
            raise BadRequestError("Nothing has run in this tab yet: Detect, then Propagate.")
        return ws.run_dir

    # -- reviewing a run: its timeline, a click on it, the objects table after it ------------------
    def _review(self, ws: Workspace) -> review.Review | None:
        """The latest run's timeline, followed from its folder (the one being written, during a
        run); None before any run."""
        folder = ws.run_dir
        if not folder or not os.path.isdir(folder):
            return None
        current = ws.review
        if current is None or current.folder != folder:
            current = review.Review.of(folder, ws.shape)
            if ws.review is not None:  # the next GPU call's folder of the same run: the picks stay
                current.frame, current.selected = ws.review.frame, ws.review.selected
            ws.review = current
        return current

    def timeline(self, key: str) -> dict:
        """The latest run's objects over time (during a run too): its shape and, per object, its
        frames with a mask as ranges (review.run_facts)."""
        ws = self.workspaces.get(key)
        seen = self._review(ws)
        if seen is None:
            raise BadRequestError("Nothing has run in this tab yet: Detect, then Propagate.")
        return review.run_facts(seen, ws.running, ws.info.num_frames if ws.info else None)

    def timeline_html(self, key: str) -> str:
        """The page's timeline of the latest run ("" before any), with the frame and the object
        the visitor picked."""
        ws = self.workspaces.peek(key)
        if ws is None or (seen := self._review(ws)) is None:
            return ""
        facts = review.run_facts(seen, ws.running, ws.info.num_frames if ws.info else None)
        return review.timeline_html(facts, seen.frame, seen.selected)

    def pick(self, key: str, x: float | None, obj_id: int | None) -> tuple[int, np.ndarray | None]:
        """A click on the timeline: the run's frame there (`x`, 0 to 1 along the bar; None: the
        object's first frame) and, once the run has ended, the run's result on it with object
        `obj_id` highlighted (None while it runs: the live frame stays)."""
        ws = self.workspaces.get(key)
        _, info = ws.need_video()
        seen = self._review(ws)
        if seen is None:
            raise BadRequestError("Nothing has run on this video yet: Detect, then Propagate; then pick a frame of the run.")
        facts = review.run_facts(seen, ws.running, info.num_frames)
        frame = review.frame_at(facts, x, obj_id)
        seen.frame, seen.selected = frame, obj_id
        frames = self._run_frames(ws)
        if frames is None or frame not in frames:
            return frame, None
        return frame, draw(_read_frame(ws, frame), frames.get(frame, info.height, info.width), highlight=obj_id)

    def run_table(self, key: str, index: int | None = None):
        """The objects table of the latest run, once it has ended (None otherwise), with each
        object's score on frame `index` (the slider's: the timeline's cursor follows it; default:
        the frame picked last) and the picked object marked."""
        ws = self.workspaces.peek(key)
        if ws is None or (seen := self._review(ws)) is None:
            return None
        if index is not None:
            seen.frame = int(index or 0)
        frames = self._run_frames(ws)
        if frames is None:  # running
            return None
        facts = review.run_facts(seen, False, ws.info.num_frames if ws.info else None)
        here = _scores_on(frames, seen.frame) if seen.frame is not None else None
        return review.run_table(facts, here, seen.selected)

    # -- workspaces ---------------------------------------------------------------------------------
    def close_workspace(self, key: str) -> None:
        self.workspaces.close(key)

    def sweep(self) -> None:
        self.workspaces.sweep()

    def also_sweep(self, clean) -> None:
        self.workspaces.also_sweep(clean)


def _stride_of(folder: str) -> int:
    """The stride of the run in `folder` (its run.json; 1 for a run written before strides)."""
    record = read_record(folder)
    return max(1, int(getattr(record, "stride", 1) or 1))


def _scores_on(frames: continuation.RunFrames, index: int) -> dict[int, float]:
    """The score of each object with a mask on frame `index` of a run ({} when it did not do it),
    its line read alone, no mask decoded."""
    if index not in frames:
        return {}
    with open(frames.path, "rb") as f:
        f.seek(frames.offsets[index])
        objects = json.loads(f.readline())["objects"]
    return {int(o["id"]): float(o["score"]) for o, area in zip(objects, rle_areas(o["mask"] for o in objects)) if area > 0}


def _file_id(path: str) -> tuple[str, int] | None:
    """A video file as the page hands it back (Gradio copies it, keeping its name)."""
    try:
        return os.path.basename(path), os.path.getsize(path)
    except OSError:
        return None


def _read_frame(ws: Workspace, index: int) -> np.ndarray:
    """Frame `index` of the visitor's video, decoded here (the main process: no GPU)."""
    video, info = ws.need_video()
    with VideoReader(video, info, cache_bytes=0) as reader:
        return reader[index]


def _progress(update: RunUpdate, plan: Plan, shown: int, calls: int, started: float) -> Progress:
    """A GPU step's update as progress over the whole run, never below the `shown` count (a call
    that continues another redoes its first frame, and counts nothing while it warms up).

    The text names the phase ('warming up', 'forward 20/20 · backward 1/19'); the time left only
    once it is stable: SAM3 holds back its first frames and then hands several at once, so the pace
    of the first few frames says little (`eta_stable`)."""
    step = update.progress
    done = min(max(step.done, shown), plan.total)
    eta = (plan.total - done) / step.fps if step.fps > 0 and eta_stable(done - plan.kept, plan.new) else None
    call = f"GPU call {calls}: " if calls > 1 else ""
    if step.finished:
        text = f"{plan.phases(done)} · closing the files"
    elif step.total is None:
        text = f"{call}warming up ({time.monotonic() - started:.0f} s; SAM3 holds back its first frames)"
    else:
        text = f"{call}{plan.phases(done)} · {step.fps:.1f} frames/s" + (f" · about {eta:.0f} s left" if eta else "")
    return Progress(done, plan.total, step.fps, eta, preview=step.preview, text=text)


def gpu_time_words(seconds: int, calls: int) -> str:
    """'needs about 45 s of GPU in 1 call' (and what that takes from a ZeroGPU quota, where the
    platform counts each call's duration times its hardware's factor)."""
    factor = duration_factor()
    words = f"needs about {seconds} s of GPU" + (f" in {calls} calls" if calls > 1 else "")
    if factor != 1:
        words += f"; a call needs {factor:g}x what it asks in quota left"
    return words


def eta_stable(new_done: int, new_total: int) -> bool:
    """Whether the pace after `new_done` of `new_total` new frames is worth a time left: at least
    10 frames and a quarter of the run past the held-back ones."""
    return new_done >= max(10, new_total // 4) and new_done < new_total
