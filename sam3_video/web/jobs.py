"""A propagation job: `pipeline.run` in a thread of its own, stoppable, with live progress.

The thread that starts a job stays free: it reads `progress` and `preview` while the job runs
(the web app's GPU step relays them every half second), and `stop()` never blocks it. A stopped
job finishes the frame in progress, releases the frames SAM3 still holds, and closes every
output, valid for exactly the frames done; `done` is set once the files are final.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import threading
import time
from typing import Callable, Sequence

import numpy as np

from ..backends import Backend
from ..errors import Sam3VideoError
from ..pipeline import run
from ..progress import Progress
from ..render import render, shrink
from ..runfolder import RunRecord
from ..session import VideoSession
from ..types import RunOptions, VideoInfo

log = logging.getLogger(__name__)
PREVIEW_EVERY_S = 0.4  # a running job draws its latest frame at most this often


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


class Job:
    """One propagation in a thread: `progress` and `preview` while it runs, `summary` (or `error`)
    once `done` is set.

    `should_stop`, when given, is asked after every frame (and before propagation begins): True
    ends the run there, as `stop()` does. `outputs`: what the run writes (pipeline.run's).
    """

    def __init__(self, backend: Backend, video: str, info: VideoInfo, options: RunOptions, out_dir: str,
                 should_stop: Callable[[], bool] | None = None, outputs: Sequence[str] = ("all",)):
        self.out_dir = out_dir
        self.video = video
        self.info = info
        self.options = options
        self.outputs = tuple(outputs)
        self.progress: Progress | None = None
        self.preview: np.ndarray | None = None  # the latest processed frame, drawn and shrunk
        self.summary: RunRecord | None = None  # the run's record once it ended
        self.error: str | None = None
        self.done = threading.Event()
        self.updated = threading.Event()  # set at each new frame (and at the end); the reader clears it
        self._should_stop = should_stop
        self._stop = threading.Event()
        self._session: VideoSession | None = None
        self._drawn_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(backend,), name="sam3-job", daemon=True)
        self._thread.start()

    def _run(self, backend: Backend) -> None:
        try:
            self.summary = run(self.video, self.options, self.out_dir, backend=backend, outputs=self.outputs,
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
            self.updated.set()

    def _attach(self, session: VideoSession) -> None:
        self._session = session
        if self._asked_to_stop():
            session.stop()

    def _asked_to_stop(self) -> bool:
        if not self._stop.is_set() and self._should_stop is not None and self._should_stop():
            self._stop.set()
        return self._stop.is_set()

    def _on_progress(self, p: Progress) -> None:
        self.progress = p
        if self._asked_to_stop() and self._session is not None:
            self._session.stop()
        now = time.perf_counter()
        if p.result is not None and self._session is not None and (now - self._drawn_at >= PREVIEW_EVERY_S
                                                                    or p.done == p.total):
            self._drawn_at = now  # drawn here, in the job's thread: the decoder is not thread-safe
            try:
                self.preview = shrink(render(self._session.frame(p.result.frame_index), p.result))
            except Exception:  # a preview is not worth failing the run for
                log.warning("could not draw the preview of frame %d", p.result.frame_index, exc_info=True)
        self.updated.set()

    def stop(self) -> None:
        """Finish after the current frame (returns at once; `done` is set when files are final)."""
        self._stop.set()
        session = self._session
        if session is not None:
            session.stop()
