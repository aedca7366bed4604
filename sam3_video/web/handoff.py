"""What a GPU step hands the app through a file instead of its answer: a frame drawn, a frame's masks.

On ZeroGPU a step runs in a worker process and spaces sends each of its answers to the app through
a multiprocessing pipe. A message of up to PIPE_BUF bytes (4 KB on Linux) goes in one write,
which a kill cannot cut; a longer one goes in several. The platform SIGKILLs a worker that runs past
its duration: killed in the middle of a long answer (a 1280-pixel frame drawn is 2.7 MB, a frame's
masks more), the pipe is left holding part of a message, and spaces' reader waits for the rest: a
run's generator for 20 minutes, a plain call for ever. The visitor's run hangs instead of ending
"stopped by the end of the GPU call" with its frames kept.

So a step's answers stay small (a few hundred bytes: counts and sentences), and what is big is left
in a file of the workspace (`Handoff.leave`: written whole, then renamed into place, so a reader
never sees part of it), which the app reads (`Handoff.take`). The worker is a fork of the app on
the same machine, as the run folders it writes already rely on.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The longest message spaces' pipe carries in one write (POSIX guarantees PIPE_BUF is atomic).
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


@dataclass(frozen=True)
class Handoff:
    """A value a GPU step left in the file `path`, for the app to take."""

    path: str

    @classmethod
    def leave(cls, value: Any, path: str) -> "Handoff":
        """Write `value` to `path` (whole, then renamed into place) and say where it is."""
        part = f"{path}.part"
        with open(part, "wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(part, path)
        return cls(path)

    def take(self, remove: bool = False) -> Any:
        """The value left (the step's own, in the app's workspace), deleting its file when `remove`.
        A file the step replaced since holds a newer value of the same kind (a later frame drawn)."""
        with open(self.path, "rb") as f:
            value = pickle.load(f)
        if remove:
            os.remove(self.path)
        return value

    def take_or_none(self) -> Any:
        """`take()`, or None, with a warning in the log, when the file cannot be read (what it
        holds is only worth showing, never worth failing a run for)."""
        try:
            return self.take()
        except (OSError, EOFError, pickle.UnpicklingError) as err:
            log.warning("could not read %s: %s", self.path, err)
            return None
