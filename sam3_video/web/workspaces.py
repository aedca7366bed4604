"""Visitors' workspaces: per browser tab (or API client), a private folder and the choices made so
far, kept in the main process. A ZeroGPU worker never sees a workspace: it gets plain values
and writes only into the run folder it is given.

A workspace's folder has a random name of ours (never a name the client chose) under the root.
It is deleted when its tab closes or after `session_ttl_s` without activity (a sweeper thread
runs every `sweep_every_s`: API clients never close a tab), but never while a call uses it:
closing a busy workspace asks its run to stop, and the folder goes when the call ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..config import AppLimits
from ..errors import BadRequestError
from ..continuation import RunFrames
from ..types import Edit, FrameResult, VideoInfo
from .runs import request_stop

log = logging.getLogger(__name__)
RUN_PREFIX = "run-"


@dataclass
class Workspace:
    """One visitor's folder and choices."""

    dir: str
    video: str | None = None  # the visitor's own link to the upload (uploads.keep_upload)
    info: VideoInfo | None = None
    phrases: tuple[str, ...] = ()
    frame: int = 0  # the detected (or fixed) frame, where propagation starts
    threshold: float | None = None
    removed: set[int] = field(default_factory=set)
    edits: list[Edit] = field(default_factory=list)  # clicks and boxes on that frame, in order
    corner: tuple[float, float] | None = None  # first corner of a box being drawn with two clicks
    said: str = ""  # what the last click made (clicks.outcome); "" after Detect, Undo all clicks, a new video
    preview: FrameResult | None = None  # the model's result on that frame, removals not applied
    earlier: str | None = None  # set by Fix this frame: the folder of the run the next one continues
    run_dir: str | None = None  # the latest run's folder (runs.py: the record of what ran)
    touched: float = field(default_factory=time.monotonic)
    run_frames: RunFrames | None = field(default=None, repr=False)  # run_dir's results, read once for the slider
    busy: int = 0  # calls using the folder now
    running: bool = False  # one of them is a run
    closing: bool = False  # closed while busy: deleted when the last call ends
    idle: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def name(self) -> str:
        return os.path.basename(self.dir)

    def need_video(self) -> tuple[str, VideoInfo]:
        if self.video is None or self.info is None:
            raise BadRequestError("Upload a video (or pick an example) first.")
        return self.video, self.info

    def need_preview(self, what: str = "") -> FrameResult:
        if self.preview is None:
            raise BadRequestError("Press Detect first" + (f": {what}" if what else "."))
        return self.preview


class Workspaces:
    """The visitors' workspaces under `root`, by key (Gradio's session hash: only a dict key)."""

    def __init__(self, root: str | None, limits: AppLimits):
        self.root = root or tempfile.mkdtemp(prefix="sam3-video-app-")
        os.makedirs(self.root, exist_ok=True)
        self.limits = limits
        self.lock = threading.Lock()  # the dict, and each workspace's busy/closing/run_dir
        self._spaces: dict[str, Workspace] = {}
        self._sweeper: threading.Thread | None = None
        self._also_sweep: list[Callable[[], object]] = []

    def get(self, key: str) -> Workspace:
        """The visitor's workspace, created on first use; marks it as used now."""
        self.sweep()
        with self.lock:
            if self._sweeper is None:
                self._sweeper = threading.Thread(target=self._sweep_forever, name="sam3-sweeper", daemon=True)
                self._sweeper.start()
            ws = self._spaces.get(key)
            if ws is None:
                ws = self._spaces[key] = Workspace(tempfile.mkdtemp(prefix="visitor-", dir=self.root))
                log.info("new workspace %s", ws.name)
            ws.touched = time.monotonic()
            return ws

    def peek(self, key: str) -> Workspace | None:
        """The visitor's workspace if there is one (creates nothing)."""
        with self.lock:
            return self._spaces.get(key)

    @contextmanager
    def in_use(self, ws: Workspace, run: bool = False) -> Iterator[Workspace]:
        """While this lasts the workspace's folder is neither swept nor deleted (`run`: a run is
        going on in it)."""
        with self.lock:
            if ws.closing and not ws.busy:  # deleted already (tab closed, expired)
                raise BadRequestError("This page's session has ended and its files are gone. Reload the page.")
            if run and ws.running:
                raise BadRequestError("A run is already going on in this tab. Press Stop or wait for it.")
            ws.busy += 1
            ws.running = ws.running or run
            ws.idle.clear()
        try:
            yield ws
        finally:
            with self.lock:
                ws.busy -= 1
                ws.running = ws.running and not run
                ws.touched = time.monotonic()
                last = ws.busy == 0
                delete = last and ws.closing
                if last:
                    ws.idle.set()
            if delete:
                self._delete(ws)

    def set_run(self, ws: Workspace, folder: str | None) -> None:
        with self.lock:
            ws.run_dir = folder

    def stop_run(self, ws: Workspace) -> bool:
        """Ask the workspace's running run to stop; False when nothing runs."""
        with self.lock:
            if not ws.running:
                return False
            request_stop(ws.run_dir)
            return True

    def new_run_dir(self, ws: Workspace, keep: set[str | None]) -> str:
        """A new run folder in the workspace; the other run folders go, except those in `keep`."""
        self.prune_runs(ws, keep)
        return tempfile.mkdtemp(prefix=RUN_PREFIX, dir=ws.dir)

    @staticmethod
    def prune_runs(ws: Workspace, keep: set[str | None]) -> None:
        names = {os.path.basename(f) for f in keep if f}
        for name in os.listdir(ws.dir):
            if name.startswith(RUN_PREFIX) and name not in names:
                shutil.rmtree(os.path.join(ws.dir, name), ignore_errors=True)

    def close(self, key: str) -> None:
        """The tab closed (or the workspace expired): delete its files, after its calls end."""
        with self.lock:
            ws = self._spaces.pop(key, None)
            if ws is None:
                return
            ws.closing = True
            busy = ws.busy > 0
            if ws.running:
                request_stop(ws.run_dir)
        if busy:
            log.info("workspace %s closed during a call: stopping its run, deleting it after", ws.name)
        else:
            self._delete(ws)

    @staticmethod
    def _delete(ws: Workspace) -> None:
        log.info("deleting workspace %s", ws.name)
        shutil.rmtree(ws.dir, ignore_errors=True)

    def sweep(self) -> None:
        """Close the workspaces nobody touched for `session_ttl_s` (busy ones are kept)."""
        limit = time.monotonic() - self.limits.session_ttl_s
        with self.lock:
            idle = [k for k, ws in self._spaces.items() if ws.touched < limit and not ws.busy]
        for key in idle:
            self.close(key)

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

    def count(self) -> int:
        with self.lock:
            return len(self._spaces)
