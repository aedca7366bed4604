"""What a GPU call costs and how it can end, on Hugging Face ZeroGPU and elsewhere.

On ZeroGPU a call asks for a duration; `spaces` multiplies it by the hardware's factor (1.5 on
today's RTX Pro 6000) and the platform refuses, before the call starts, one that asks for more than
the visitor has left. A call can also fail in the queue (no GPU in time) or be killed at its
duration; the worker's death reaches the app as "GPU task aborted". `refusal` tells these apart
from the platform's words (spaces 0.51.3, spaces/zero/client.py and wrappers.py), so that the run
can keep what is done, try a shorter call, and say what happened in the visitor's words.

`Pace` learns what a frame and a call's start cost from the calls so far (the app's main process
keeps it: every visitor's calls run on the same kind of GPU), so that each call asks for about what
its work needs.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from ..config import ON_ZERO_GPU

#: spaces' own words, by what happened
_QUOTA = re.compile(r"\((\d+(?:\.\d+)?)s requested vs\. (\d+(?:\.\d+)?)s left\)")
_QUOTA_WORDS = ("quota", "GPU limit", "runs limit")
_QUEUE_WORDS = ("No GPU was available",)
_ABORTED_WORDS = ("GPU task aborted",)
_ILLEGAL_WORDS = ("larger than the maximum allowed",)
_MD_LINK = re.compile(r"\[([^\]]+)\]\((https://[^)\s]+)\)")
_RAW_LINK = re.compile(r"(?<![\"'=>])(https://huggingface\.co/[^\s<)]+)")


@dataclass(frozen=True)
class Refusal:
    """Why the platform did not run (or finish) a GPU call."""

    kind: str  # "quota" (not enough left), "illegal" (asked more than any call may), "queue" (no GPU in time),
    #            "aborted" (the worker died: killed at its duration, or crashed)
    message: str  # the platform's words, as a visitor may read them (links made clickable)
    left_s: float | None = None  # quota seconds left, when the platform said

    @property
    def before_start(self) -> bool:
        """The call never started: nothing it would have written exists."""
        return self.kind in ("quota", "illegal", "queue")


def refusal(err: BaseException) -> Refusal | None:
    """The platform's refusal behind `err` (a gr.Error from spaces), or None for anything else."""
    text = str(getattr(err, "message", "") or err)
    if any(w in text for w in _ABORTED_WORDS):
        return Refusal("aborted", readable(text))
    if any(w in text for w in _ILLEGAL_WORDS):
        return Refusal("illegal", readable(text))
    if any(w in text for w in _QUEUE_WORDS):
        return Refusal("queue", readable(text))
    if any(w in text for w in _QUOTA_WORDS):
        found = _QUOTA.search(text)
        return Refusal("quota", readable(text), float(found.group(2)) if found else None)
    return None


def readable(text: str) -> str:
    """spaces' words with working links: its markdown links ('[Create a free account](https://...)'),
    which a toast shows as raw brackets, and its bare URLs become <a> elements (HTML is what
    Gradio's toast renders); an <a> it wrote itself is kept."""
    text = _MD_LINK.sub(lambda m: f'<a href="{m.group(2)}" target="_blank">{m.group(1)}</a>', str(text))
    return _RAW_LINK.sub(lambda m: f'<a href="{m.group(1)}" target="_blank">{m.group(1)}</a>', text)


def duration_factor() -> float:
    """What the platform multiplies a call's duration by before it compares it with the quota:
    spaces' figure for the GPU it runs on (1.5 on an RTX Pro 6000, 1.0 on an H200); 1 off ZeroGPU."""
    if not ON_ZERO_GPU:
        return 1.0
    try:
        from spaces.zero import config

        return float(config.get_config()["duration_factor"])
    except Exception:  # an older or newer spaces: assume today's hardware
        return 1.5


class Pace:
    """What a frame and a call's start-up cost on this server's GPU, learned from the calls so far
    (None until a call has shown it): the slowest of the last few calls, so that a call asks for
    enough even when its frames are slower (more objects, a larger video)."""

    KEEP = 5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame_s: list[float] = []
        self._start_s: list[float] = []

    def saw(self, frames: int, model_s: float, start_s: float | None) -> None:
        """A call did `frames` frames in `model_s` seconds of model work, after `start_s` seconds
        of start-up (worker, weights, video, first detection; None: not measured)."""
        with self._lock:
            if frames >= 3 and model_s > 0:
                self._frame_s = (self._frame_s + [model_s / frames])[-self.KEEP:]
            if start_s is not None and start_s > 0:
                self._start_s = (self._start_s + [start_s])[-self.KEEP:]

    @property
    def frame_s(self) -> float | None:
        with self._lock:
            return max(self._frame_s) if self._frame_s else None

    @property
    def start_s(self) -> float | None:
        with self._lock:
            return max(self._start_s) if self._start_s else None
