"""A propagation job: `pipeline.run` in a thread of its own, stoppable, with live progress.

Stopping a job (the app's Stop button, or a client cancelling its request) never blocks the
caller: the thread finishes the frame in progress, releases the frames SAM3 still holds, and
closes every output, valid for exactly the frames done. `outputs()` then lists the files.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from .backends import Backend
from .errors import Sam3VideoError
from .export import FOLDER, ZIP, zip_folder
from .overlay import OverlayWriter
from .pipeline import Progress, RunSummary, run
from .render import render
from .session import VideoSession
from .types import RunOptions, VideoInfo

log = logging.getLogger(__name__)
PREVIEW_SIDE = 1280  # previews are scaled to at most this many pixels on their long side
PREVIEW_EVERY_S = 0.4  # a running job draws its latest frame at most this often


def shrink(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """A copy no larger than `side` pixels on its long side (a preview need not be 4K)."""
    import cv2

    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def release_freed_memory() -> None:
    """Give the memory a finished run freed back to the system. glibc keeps freed heap in its
    per-thread arenas, and every job is a new thread: without this a server's resident memory
    creeps up job after job although nothing is kept (measured: docs/reliability.md)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


@dataclass
class Outputs:
    """What a finished (or stopped) job offers: files and a summary for people."""

    overlay: str | None
    annotations_zip: str | None
    files: list[str]
    summary: dict


class Job:
    """One propagation in a thread: `progress` and `preview` while it runs, `outputs()` after."""

    def __init__(self, backend: Backend, video: str, info: VideoInfo, options: RunOptions, out_dir: str):
        self.out_dir = out_dir
        self.video = video
        self.options = options
        self.progress: Progress | None = None
        self.preview: np.ndarray | None = None
        self.summary: RunSummary | None = None
        self.error: str | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._session: VideoSession | None = None
        self._drawn_at = 0.0
        self._outputs: Outputs | None = None
        self._outputs_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(backend, video), name="sam3-job", daemon=True)
        self._thread.start()

    def _run(self, backend: Backend, video: str) -> None:
        try:
            self.summary = run(video, self.options, self.out_dir, backend=backend,
                               on_progress=self._on_progress, on_session=self._attach)
        except Sam3VideoError as err:
            self.error = str(err)
        except Exception as err:  # the frames done so far are saved; say so instead of a traceback
            log.exception("propagation failed")
            self.error = f"The run failed ({type(err).__name__}: {err}). The frames done before it are kept."
        finally:
            self._session = None  # the finished session's state (and its frames) can go now
            release_freed_memory()
            self.done.set()

    def _attach(self, session: VideoSession) -> None:
        self._session = session

    def _on_progress(self, p: Progress) -> None:
        self.progress = p
        if self._stop.is_set() and self._session is not None:
            self._session.stop()  # a stop that came before propagation began
        now = time.perf_counter()
        if p.result is not None and (now - self._drawn_at >= PREVIEW_EVERY_S or p.done == p.total):
            self._drawn_at = now  # drawn here, in the job's thread: the decoder is not thread-safe
            try:
                self.preview = shrink(render(self._session.frame(p.result.frame_index), p.result))
            except Exception:  # a preview is not worth failing the run for
                log.warning("could not draw the preview of frame %d", p.result.frame_index, exc_info=True)

    def stop(self) -> None:
        """Finish after the current frame (returns at once; `done` is set when files are final)."""
        self._stop.set()
        session = self._session
        if session is not None:
            session.stop()

    def outputs(self) -> Outputs:
        """Files of a finished job (call after `done`). Made once: the run's own request and a
        /results request may ask at the same moment."""
        if not self.done.is_set():
            return self._collect()
        with self._outputs_lock:
            if self._outputs is None:
                self._outputs = self._collect()
            return self._outputs

    def _collect(self) -> Outputs:
        overlay = os.path.join(self.out_dir, OverlayWriter.name)
        folder, zip_path = os.path.join(self.out_dir, FOLDER), os.path.join(self.out_dir, ZIP)
        files = []
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                path = os.path.join(folder, name)
                if os.path.isdir(path):  # a folder format (labelme, davis) downloads as one zip
                    zip_folder(path, os.path.join(self.out_dir, f"{name}.zip"))
                    path = os.path.join(self.out_dir, f"{name}.zip")
                if not name.startswith("."):
                    files.append(path)
        s = self.summary
        summary = {"status": "failed" if self.error else (s.status if s else "failed")}
        if s is not None:
            summary.update(frames=s.frames_done, frames_expected=s.frames_expected,
                           objects_per_label=s.objects_per_label, seconds=round(s.elapsed_s, 1))
        elif os.path.exists(os.path.join(self.out_dir, "run.json")):  # failed midway: the manifest knows
            with open(os.path.join(self.out_dir, "run.json"), encoding="utf-8") as f:
                run_json = json.load(f)
            summary.update({k: run_json.get(k) for k in ("frames_done", "frames_expected", "objects_per_label")})
            summary["frames"] = summary.pop("frames_done")
        if self.error:
            summary["error"] = self.error
        return Outputs(overlay if os.path.exists(overlay) else None,
                       zip_path if os.path.exists(zip_path) else None, files, summary)
