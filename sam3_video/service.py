"""The web app's work, apart from its layout: one shared model, one workspace per visitor, and
propagation jobs that keep every processed frame when stopped or cancelled.

`app.py` only wires these methods to Gradio components. Each visitor (a browser tab or an API
client) gets a `Workspace`: a private folder under the service's root, with a random name of
ours (never a name the client chose), and the choices made so far (video, phrases, frame,
removed ids). The model's per-video state lives only inside one call: `detect` and each job
open a fresh `VideoSession`, and detection on the same frame with the same phrases gives the
same ids, so a removal made on the preview applies to the run. A frame of a finished run is
corrected the same way: each call seeds a fresh session from the run's result on that frame
(`continuation.py`). Nothing holds GPU memory between calls, and a call can run in another
process (Hugging Face ZeroGPU).

Propagation runs as a `jobs.Job` (a thread), so stopping never blocks the server.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .backends import Backend, load_backend
from .config import DEFAULTS, LIMITS, AppLimits
from .continuation import EarlierRun, RunFrames
from .continuation import load as load_earlier
from .errors import BadRequestError, Sam3VideoError
from .jobs import PREVIEW_SIDE, Job, Outputs, shrink
from .pipeline import replay
from .render import legend, render
from .session import VideoSession
from .types import Edit, FrameResult, RunOptions, VideoInfo, parse_prompts
from .video import VideoReader, probe

log = logging.getLogger(__name__)


def object_at(result: FrameResult, x: float, y: float) -> int | None:
    """Id of the highest-scoring object whose mask holds pixel (x, y), or None."""
    h, w = result.size
    col, row = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
    hits = [k for k in range(len(result)) if result.masks[k, row, col]]
    return int(result.obj_ids[max(hits, key=lambda k: result.scores[k])]) if hits else None


@dataclass
class Workspace:
    """One visitor's folder and choices."""

    dir: str
    video: str | None = None
    info: VideoInfo | None = None
    phrases: tuple[str, ...] = ()
    frame: int = 0
    threshold: float | None = None
    removed: set[int] = field(default_factory=set)
    edits: list[Edit] = field(default_factory=list)  # clicks and boxes on the detect frame, in order
    corner: tuple[float, float] | None = None  # first corner of a box being drawn with two clicks
    preview: FrameResult | None = None
    earlier: EarlierRun | None = None  # set by fix_frame: the run the next one continues
    job: Job | None = None
    job_frames: RunFrames | None = None  # the finished job's frames, for the slider
    touched: float = field(default_factory=time.monotonic)

    def need_video(self) -> tuple[str, VideoInfo]:
        if self.video is None or self.info is None:
            raise BadRequestError("Upload a video (or pick an example) first.")
        return self.video, self.info


class Service:
    """The app's state: the model (loaded once, shared) and the visitors' workspaces."""

    def __init__(self, model: str | None = None, backend: str | None = None, device: str | None = None,
                 dtype: str | None = None, limits: AppLimits = LIMITS, root: str | None = None):
        self.model = model or DEFAULTS.model
        self._backend_args = (self.model, backend or DEFAULTS.backend, device or DEFAULTS.device,
                              dtype or DEFAULTS.dtype)
        self.limits = limits
        self.root = root or tempfile.mkdtemp(prefix="sam3-video-app-")
        os.makedirs(self.root, exist_ok=True)
        self._workspaces: dict[str, Workspace] = {}
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._backend_error: str | None = None
        self._sweeper: threading.Thread | None = None
        self._also_sweep: list[Callable[[], object]] = []

    # -- the model ---------------------------------------------------------------------------
    def use_model(self, model: str) -> None:
        """Point the service at another model (before the first call loads one)."""
        with self._lock:
            self.model, self._backend, self._backend_error = model, None, None
            self._backend_args = (model, *self._backend_args[1:])

    def gpu_seconds(self, key: str | None, direction: str, max_frames: int | None) -> int:
        """GPU time to reserve for a run (ZeroGPU): the frames to do at a conservative 4 frames/s."""
        ws = self._workspaces.get(key) if key else None
        n = ws.info.num_frames if ws is not None and ws.info is not None else self.limits.max_video_frames
        if max_frames:
            n = min(n, int(max_frames) * (2 if direction == "both" else 1))
        return int(min(30 + n / 4, 1800))

    def backend(self) -> Backend:
        """The shared model, loaded on first use; a missing model is remembered as one sentence."""
        with self._lock:
            if self._backend is None and self._backend_error is None:
                try:
                    self._backend = load_backend(*self._backend_args)
                except Sam3VideoError as err:
                    self._backend_error = str(err)
            if self._backend_error is not None:
                raise BadRequestError(self._backend_error)
            return self._backend

    def model_status(self) -> str | None:
        """None when the model is ready, else the sentence that says why not and what to do."""
        try:
            self.backend()
            return None
        except Sam3VideoError as err:
            return str(err)

    # -- workspaces ----------------------------------------------------------------------------
    def workspace(self, key: str) -> Workspace:
        """The visitor's workspace (created on first use); `key` is only a dictionary key."""
        self.sweep()
        with self._lock:
            if self._sweeper is None:  # API clients never close a tab: expire workspaces on a clock too
                self._sweeper = threading.Thread(target=self._sweep_forever, name="sam3-sweeper", daemon=True)
                self._sweeper.start()
            ws = self._workspaces.get(key)
            if ws is None:
                ws = self._workspaces[key] = Workspace(tempfile.mkdtemp(prefix="visitor-", dir=self.root))
                log.info("new workspace %s", os.path.basename(ws.dir))
            ws.touched = time.monotonic()
            return ws

    def close_workspace(self, key: str) -> None:
        """Stop the visitor's job and delete their files (tab closed or expired)."""
        with self._lock:
            ws = self._workspaces.pop(key, None)
        if ws is None:
            return
        log.info("closing workspace %s", os.path.basename(ws.dir))
        if ws.job is not None:
            ws.job.stop()
            ws.job.done.wait(60)
        shutil.rmtree(ws.dir, ignore_errors=True)

    def sweep(self) -> None:
        """Close the workspaces nobody touched for `session_ttl_s` (jobs still running are kept)."""
        limit = time.monotonic() - self.limits.session_ttl_s
        with self._lock:
            idle = [k for k, ws in self._workspaces.items()
                    if ws.touched < limit and (ws.job is None or ws.job.done.is_set())]
        for key in idle:
            self.close_workspace(key)

    def also_sweep(self, clean: Callable[[], object]) -> None:
        """Call `clean` on the sweeper's clock too (the app cleans Gradio's cache with it)."""
        self._also_sweep.append(clean)

    def _sweep_forever(self) -> None:
        while True:
            time.sleep(self.limits.sweep_every_s)
            for clean in (self.sweep, *self._also_sweep):
                try:
                    clean()
                except Exception:  # what cannot be deleted now is tried again next time
                    log.warning("sweeping expired files failed", exc_info=True)

    def workspace_count(self) -> int:
        with self._lock:
            return len(self._workspaces)

    # -- a visitor's steps -----------------------------------------------------------------------
    def open_video(self, key: str, path: str) -> tuple[VideoInfo, np.ndarray]:
        """Check the video against the limits; return its facts and its first frame."""
        if not path:
            raise BadRequestError("Upload a video (or pick an example) first.")
        if not os.path.isfile(path):
            raise BadRequestError(f"The uploaded video is no longer on the server (uploads are kept for "
                                  f"{self.limits.session_ttl_s / 60:.0f} minutes). Upload it again.")
        info = self.check_video(path)
        ws = self.workspace(key)
        if ws.job is not None and not ws.job.done.is_set():
            raise BadRequestError("A run is still going on. Press Stop (or wait for it) before opening another video.")
        ws.video, ws.info, ws.preview, ws.removed, ws.frame = self._keep(ws, path), info, None, set(), 0
        ws.earlier, ws.job_frames = None, None
        return info, self.frame_image(key, 0)

    @staticmethod
    def _keep(ws: Workspace, path: str) -> str:
        """The visitor's own link to (or copy of) the upload: Gradio deletes its cached uploads on
        a clock of its own, and the workspace's folder lives exactly as long as the visitor."""
        folder = os.path.join(ws.dir, "video")  # the file keeps its name: the exports quote it
        kept = os.path.join(folder, os.path.basename(path))
        if os.path.abspath(path) == kept:
            return kept
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        try:
            os.link(path, kept)
        except OSError:  # another file system (or no hard links): copy
            shutil.copyfile(path, kept)
        return kept

    def check_video(self, path: str) -> VideoInfo:
        size_mb = os.path.getsize(path) / 2**20
        if size_mb > self.limits.max_upload_mb:
            raise BadRequestError(f"This file is {size_mb:.0f} MB; this server takes videos up to "
                                  f"{self.limits.max_upload_mb} MB. Trim or compress it first.")
        info = probe(path)
        if info.duration > self.limits.max_video_seconds or info.num_frames > self.limits.max_video_frames:
            raise BadRequestError(
                f"This video is {info.duration:.0f} s long ({info.num_frames} frames); this server takes up to "
                f"{self.limits.max_video_seconds:.0f} s and {self.limits.max_video_frames} frames. Trim it, or run "
                "the CLI on your own machine for long videos."
            )
        return info

    def frame_image(self, key: str, index: int) -> np.ndarray:
        """Frame `index` for the slider, drawn with the detections when it is the detected (or
        corrected) frame, else with the last finished run's result on it, if it has one."""
        ws = self.workspace(key)
        video, info = ws.need_video()
        index = int(np.clip(int(index or 0), 0, info.num_frames - 1))
        with VideoReader(video, info, cache_bytes=0) as reader:
            image = reader[index]
        if ws.preview is not None and ws.frame == index:
            image = render(image, ws.preview.without(ws.removed))
        else:
            frames = self._job_frames(ws)
            if frames is not None and index in frames:
                image = render(image, frames.get(index, info.height, info.width))
        return shrink(image)

    @staticmethod
    def _job_frames(ws: Workspace) -> RunFrames | None:
        """The frames of the visitor's last job once it has finished (read once per job)."""
        job = ws.job
        if job is None or not job.done.is_set() or job.video != ws.video:
            return None
        if ws.job_frames is None or os.path.dirname(ws.job_frames.path) != job.out_dir:
            try:
                ws.job_frames = RunFrames(job.out_dir)
            except (OSError, BadRequestError):
                return None
        return ws.job_frames

    def detect(self, key: str, index: int, prompts: str, threshold: float | None) -> tuple[np.ndarray, list]:
        """Detect the phrases on frame `index`; return the drawn frame and the legend rows."""
        ws = self.workspace(key)
        video, info = ws.need_video()
        phrases = parse_prompts(prompts or "")
        with VideoSession(video, self.backend(), info) as session:
            preview = session.detect(int(index or 0), phrases, threshold)
            image = session.frame(preview.frame_index)
        ws.phrases, ws.frame, ws.threshold, ws.preview, ws.removed = phrases, preview.frame_index, threshold, preview, set()
        ws.edits, ws.corner, ws.earlier = [], None, None
        return shrink(render(image, preview)), legend(preview)

    def remove(self, key: str, ids: Sequence[int]) -> tuple[np.ndarray, list]:
        """Drop objects from the preview (and from the run that follows)."""
        ws = self.workspace(key)
        if ws.preview is None:
            raise BadRequestError("Press Detect first: there are no objects to remove yet.")
        known = set(ws.preview.obj_ids.tolist())
        unknown = sorted(set(int(i) for i in ids) - known)
        if unknown:
            raise BadRequestError(f"There is no object #{unknown[0]} on this frame. Pick ids from the table.")
        ws.removed |= set(int(i) for i in ids)
        kept = ws.preview.without(ws.removed)
        return self.frame_image(key, ws.frame), legend(kept)

    # -- fixing the preview with clicks ------------------------------------------------------------
    def edit(self, key: str, edit: Edit) -> tuple[np.ndarray, list]:
        """Apply one click-made correction to the preview (real model output) and keep it for the run.

        The model's state lives only inside a call, so the detection, removals and every edit so
        far are replayed on a fresh session; the same calls give the same ids and masks."""
        ws = self.workspace(key)
        ws.need_video()
        if ws.preview is None:
            raise BadRequestError("Press Detect first: clicks fix the detections on that frame.")
        edits = list(ws.edits)
        if edit.kind == "refine":  # one entry per object, holding every click on it so far
            old = next((e for e in edits if e.kind == "refine" and e.obj_id == edit.obj_id), None)
            if old is not None:
                edits.remove(old)
                edit = Edit("refine", edit.obj_id, old.points + edit.points, old.labels + edit.labels)
        edits.append(edit)
        return self._rebuild(ws, edits)

    def _rebuild(self, ws: Workspace, edits: list[Edit]) -> tuple[np.ndarray, list]:
        """Replay detection, removals and `edits` on a fresh session; keep and draw the result."""
        video, info = ws.need_video()
        with VideoSession(video, self.backend(), info) as session:
            preview = replay(session, ws.frame, ws.phrases, ws.threshold, ws.removed, edits, ws.earlier)
            image = session.frame(ws.frame)
        ws.edits, ws.preview = edits, preview
        return shrink(render(image, preview)), legend(preview)

    def click(self, key: str, x: float, y: float, mode: str, obj_id: int | None, label: str) -> tuple[np.ndarray, list, str]:
        """A click on the preview at video pixel (x, y); `mode` says what it means. Returns the
        drawn frame, the legend rows and a sentence about what happened."""
        ws = self.workspace(key)
        if ws.preview is None:
            raise BadRequestError("Press Detect first: clicks fix the detections on that frame.")
        if mode in ("positive point", "negative point"):
            target = obj_id or object_at(ws.preview.without(ws.removed), x, y)
            if not target:
                raise BadRequestError("Click inside an object, or type its id in 'Object to fix', to add a point to it.")
            image, rows = self.edit(key, Edit("refine", int(target), ((x, y),), (1 if mode == "positive point" else 0,)))
            return image, rows, f"{mode} on object #{int(target)} at ({x:.0f}, {y:.0f})"
        if ws.corner is None:  # a box takes two clicks
            ws.corner = (x, y)
            return self.frame_image(key, ws.frame), legend(ws.preview.without(ws.removed)), \
                f"first corner at ({x:.0f}, {y:.0f}); click the opposite corner"
        (x0, y0), ws.corner = ws.corner, None
        box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
        if mode == "more like this (box)":
            image, rows = self.edit(key, Edit("exemplar", box=box))
            return image, rows, "searched for more objects like the one in the box"
        name = (label or "").strip() or (ws.phrases[0] if ws.phrases else "object")
        image, rows = self.edit(key, Edit("add_object", box=box, label=name))
        return image, rows, f"added a new '{name}' object"

    def to_video_pixels(self, key: str, x: float, y: float) -> tuple[float, float]:
        """A click on the (possibly shrunk) preview -> video pixels."""
        _, info = self.workspace(key).need_video()
        scale = max(1.0, max(info.width, info.height) / PREVIEW_SIDE)
        return float(x) * scale, float(y) * scale

    def clear_edits(self, key: str) -> tuple[np.ndarray, list]:
        """Forget every click since Detect (removals stay)."""
        ws = self.workspace(key)
        if ws.preview is None:
            raise BadRequestError("Press Detect first.")
        ws.edits, ws.corner = [], None
        return self._rebuild(ws, [])

    def fix_frame(self, key: str, index: int) -> tuple[np.ndarray, list, str, str]:
        """Take the last run's result on frame `index` (a frame it processed) as the preview to
        correct with removals and clicks; the next Propagate continues from it and keeps the run's
        frames behind it. Returns the drawn frame, the legend rows, the direction to continue in
        (the way the run went through that frame) and a sentence saying what will happen."""
        ws = self.workspace(key)
        video, info = ws.need_video()
        job = ws.job
        if job is None or job.video != video:
            raise BadRequestError("Nothing has run on this video yet: Detect, then Propagate; then fix a frame of that run.")
        if not job.done.is_set():
            raise BadRequestError("The run is still going on; press Stop (its frames are kept), then fix a frame.")
        index = int(index or 0)
        earlier = load_earlier(job.out_dir, index, None, info, self._job_frames(ws))  # the slider's read
        ws.phrases = ws.phrases or earlier.prompts
        ws.frame, ws.threshold, ws.removed, ws.corner = index, earlier.threshold, set(), None
        ws.earlier = earlier
        image, rows = self._rebuild(ws, [])
        kept = f"frames {earlier.kept[0]}-{earlier.kept[-1]} of the run are kept" if earlier.kept else "no frames are kept"
        said = (f"Frame {index} of the last run: remove or click to fix its objects, then Propagate "
                f"{earlier.direction} continues from it ({kept}).")
        return image, rows, earlier.direction, said

    def start(self, key: str, direction: str, max_frames: int | None) -> Job:
        """Propagate from the detected frame (detect first), or continue from a fixed frame."""
        ws = self.workspace(key)
        video, info = ws.need_video()
        if not ws.phrases:
            raise BadRequestError("Press Detect first, so that you can check what will be tracked.")
        if ws.job is not None and not ws.job.done.is_set():
            raise BadRequestError("A run is already going on in this tab. Press Stop or wait for it.")
        options = RunOptions(ws.phrases, ws.frame, direction, int(max_frames) if max_frames else None, ws.threshold,
                             tuple(sorted(ws.removed)), tuple(ws.edits), ws.earlier.folder if ws.earlier else None)
        backend = self.backend()
        # keep the latest run (a /results call may be reading it) and the one being continued, no more
        keep = {os.path.basename(f) for f in (ws.job.out_dir if ws.job else None, ws.earlier and ws.earlier.folder) if f}
        for name in os.listdir(ws.dir):
            if name.startswith("run-") and name not in keep:
                shutil.rmtree(os.path.join(ws.dir, name), ignore_errors=True)
        out_dir = tempfile.mkdtemp(prefix="run-", dir=ws.dir)
        ws.job = Job(backend, video, info, options, out_dir)
        return ws.job

    def stop(self, key: str) -> None:
        job = self.workspace(key).job
        if job is not None:
            job.stop()

    def last_outputs(self, key: str, wait_s: float = 300) -> Outputs:
        """The outputs of the visitor's latest job, once its files are final."""
        job = self.workspace(key).job
        if job is None:
            raise BadRequestError("Nothing has run in this tab yet: Detect, then Propagate.")
        if not job.done.wait(wait_s):
            raise BadRequestError("The run is still going on; press Stop to end it and keep what is done.")
        return job.outputs()

    def segment_video(self, key: str, path: str, prompts: str, start_frame: int = 0, direction: str = "forward",
                      max_frames: int | None = None, threshold: float | None = None) -> Job:
        """The one-shot API: open, detect and propagate in one call; returns the running job."""
        self.open_video(key, path)
        ws = self.workspace(key)
        ws.phrases, ws.frame, ws.threshold = parse_prompts(prompts or ""), int(start_frame or 0), threshold
        if not ws.phrases:
            raise BadRequestError("The prompt is empty. Type one or more phrases separated by commas, e.g. 'car, person'.")
        return self.start(key, direction, max_frames)
