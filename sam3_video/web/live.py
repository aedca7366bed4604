"""A run going on in a thread of its own, watched by whoever follows it: the page that started it,
the same tab after a reload (workspaces.py `reclaim`), an API client.

The thread drives the run's updates to the end whatever its followers do, so that a page that
goes away (a reload, a closed tab) leaves a run that is still going on and can be followed again;
a follower that must stop the run when it goes (an API client's cancel) says so itself. A
follower gets the latest progress, never a backlog: one that falls behind (or joins late) skips
to the newest update, which carries the newest frame drawn.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import replace
from typing import Any, Iterator


class LiveRun:
    """The updates of one run (progress items with a `preview` field, then a final item), kept
    for its followers; start it with `LiveRun.start`."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._latest: Any = None  # the newest progress item
        self._count = 0  # progress items so far
        self._frame: Any = None  # the newest frame drawn (progress items carry one only when it changes)
        self._frames = 0  # frames drawn so far
        self._last: Any = None  # the final item, or the exception the run ended with
        self._ended = False
        self.thread: threading.Thread | None = None

    @classmethod
    def start(cls, updates: Iterator, is_last=lambda item: False, name: str = "sam3-run") -> "LiveRun":
        """Drive `updates` in a new thread; `is_last(item)` says which item ends the run (kept
        apart). The thread runs in a copy of the caller's context: on ZeroGPU, `spaces` reads the
        visitor's request from it (to whom the GPU time counts)."""
        live = cls()
        context = contextvars.copy_context()
        live.thread = threading.Thread(target=context.run, args=(live._drive, updates, is_last), name=name,
                                       daemon=True)
        live.thread.start()
        return live

    def _drive(self, updates: Iterator, is_last) -> None:
        last: Any = None
        try:
            for item in updates:
                with self._changed:
                    if is_last(item):
                        last = item
                        continue
                    self._latest, self._count = item, self._count + 1
                    if getattr(item, "preview", None) is not None:
                        self._frame, self._frames = item.preview, self._frames + 1
                    self._changed.notify_all()
        except BaseException as err:  # handed to every follower (a sentence for the visitor, or a bug)
            last = err
        with self._changed:
            self._last, self._ended = last, True
            self._changed.notify_all()

    @property
    def ended(self) -> bool:
        with self._changed:
            return self._ended

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the run ended (True), or `timeout` seconds (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: self._ended, timeout)

    def follow(self) -> Iterator[Any]:
        """The newest progress each time there is a newer one (with the newest frame when one was
        drawn since the follower's last item), then the final item; raises what the run raised."""
        seen, frames_seen = 0, 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._count > seen or self._ended)
                item, count, frame, frames = self._latest, self._count, self._frame, self._frames
                ended, last = self._ended, self._last
            if count > seen:
                seen = count
                if frames > frames_seen:
                    item, frames_seen = replace(item, preview=frame), frames
                yield item
                continue
            if ended:
                if isinstance(last, BaseException):
                    raise last
                if last is not None:
                    yield last
                return
