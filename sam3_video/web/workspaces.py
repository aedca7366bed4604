"""Visitors' workspaces: per browser tab (or API client), a private folder and the choices made so
far, kept in the main process. A ZeroGPU worker never sees a workspace: it gets plain values
and writes only into the run folder it is given.

A workspace's folder has a random name of ours (never a name the client chose) under the root.
It is deleted after `session_ttl_s` without activity (a sweeper thread runs every
`sweep_every_s`: API clients never close a tab) and when its tab goes away, but never while a
call uses it: closing a busy workspace asks its run to stop, and the folder goes when the call
ends. A tab that goes away may be reloading: its workspace (its run still going on) waits
`reload_grace_s` for the same tab to come back with the workspace's `token` (`reclaim`), kept by
the page in the tab's sessionStorage, before it is closed.
"""

from __future__ import annotations

import logging
import os
import secrets
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
from ..types import FrameResult, StartPoint, VideoInfo
from .live import LiveRun
from .review import Review, Shape
from .runs import request_stop

log = logging.getLogger(__name__)
RUN_PREFIX = "run-"


@dataclass
class Workspace:
    """One visitor's folder and choices."""

    dir: str
    video: str | None = None  # the visitor's own link to the upload (uploads.keep_upload)
    info: VideoInfo | None = None
    # what the next run starts from: the detected (or fixed) frame, the phrases, the threshold, the
    # removals and the clicks and boxes on that frame in order, and (set by Fix this frame) the
    # folder of the run it continues; None before Detect
    start: StartPoint | None = None
    corner: tuple[float, float] | None = None  # first corner of a box being drawn with two clicks
    said: str = ""  # what the last click made (clicks.outcome); "" after Detect, Undo all clicks, a new video
    preview: FrameResult | None = None  # the model's result on that frame, removals not applied
    run_dir: str | None = None  # the latest run's folder (runs.py: the record of what ran)
    touched: float = field(default_factory=time.monotonic)
    run_frames: RunFrames | None = field(default=None, repr=False)  # run_dir's results, read once for the slider
    busy: int = 0  # calls using the folder now
    running: bool = False  # one of them is a run
    closing: bool = False  # closed while busy: deleted when the last call ends
    idle: threading.Event = field(default_factory=threading.Event, repr=False)
    live: LiveRun | None = field(default=None, repr=False)  # the latest run, followed (live.py)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)  # the tab's proof, to reclaim
    reopen: tuple[str, int] | None = None  # the video given back to the page after a reload (name, size)
    left: float | None = None  # when its tab went away (None: its tab is there), see Workspaces.leave
    shape: Shape | None = field(default=None, repr=False)  # what the latest run set out to do
    review: Review | None = field(default=None, repr=False)  # the latest run's timeline, followed

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def name(self) -> str:
        return os.path.basename(self.dir)

    @property
    def phrases(self) -> tuple[str, ...]:
        """The phrases the next run finds (none before Detect)."""
        return self.start.phrases if self.start is not None else ()

    @property
    def continue_from(self) -> str | None:
        """The folder of the run the next run continues (set by Fix this frame), or None."""
        return self.start.continue_from if self.start is not None else None

    def start_over(self, start: StartPoint | None = None, preview: FrameResult | None = None) -> None:
        """The visitor's choices begin again from `start` (None: nothing detected yet) with its
        `preview`: no box half drawn, nothing said."""
        self.start, self.preview, self.corner, self.said = start, preview, None, ""

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
        self.lock = threading.Lock()  # the dict, and each workspace's busy/closing/run_dir/left
        self._left = threading.Condition(self.lock)  # a workspace's tab went away
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

    def leave(self, key: str) -> None:
        """The tab went away (closed, or reloading): its workspace waits `reload_grace_s` for the
        same tab to come back (`reclaim`), its run going on, then it is closed (`close`)."""
        grace = self.limits.reload_grace_s
        with self.lock:
            ws = self._spaces.get(key)
            if ws is not None and grace > 0:
                ws.left = when = time.monotonic()
                self._left.notify_all()
        if ws is None:
            return
        if grace <= 0:
            self.close(key)
            return
        timer = threading.Timer(grace, self._not_back, args=(key, ws, when))
        timer.daemon = True
        timer.start()

    def _not_back(self, key: str, ws: Workspace, left: float) -> None:
        with self.lock:
            gone = self._spaces.get(key) is ws and ws.left == left  # not reclaimed (nor left again) since
        if gone:
            log.info("workspace %s: its tab did not come back", ws.name)
            self.close(key)

    def reclaim(self, key: str, token: str, wait_s: float = 5.0) -> Workspace | None:
        """The workspace whose tab presents `token`, now under `key` (the tab's new session after
        a reload), or None: no such workspace (expired, or never), or its old tab is still there
        after `wait_s` (a duplicated tab carries the same token: it gets a workspace of its own).
        The old session's going away is seen a moment after the new one's first call, hence the
        wait."""
        if not token:
            return None
        deadline = time.monotonic() + wait_s
        with self.lock:
            while True:
                old = next((k for k, ws in self._spaces.items()
                            if k != key and secrets.compare_digest(ws.token, token)), None)
                if old is None:
                    return None
                ws = self._spaces[old]
                if ws.left is not None and not ws.closing:
                    break
                left = deadline - time.monotonic()
                if left <= 0 or not self._left.wait(left):
                    return None
            del self._spaces[old]
            spare = self._spaces.get(key)  # the new tab's own, made before (empty: only a page load)
            self._spaces[key] = ws
            ws.left, ws.touched = None, time.monotonic()
            if spare is not None:
                spare.closing = True
            delete = spare is not None and not spare.busy
        if delete and spare is not None:
            self._delete(spare)
        log.info("workspace %s: its tab is back", ws.name)
        return ws

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
