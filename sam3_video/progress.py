"""How far a run is: one record from the pipeline up to the page.

`pipeline.run` hands a `Progress` to its `on_progress` after every frame (with the frame's
result) and while its writers finish (`written`); the web app's propagation job keeps the latest
one (web/jobs.py), its GPU step sends it on without the result (web/gpu.py, inside a `RunUpdate`
that also says how the call ended, the latest frame drawn left in a file beside it, which the app
puts back in `preview`), and the service hands the page the same type again, counted over the
whole run and with its line of text (web/service.py).
The CLI's bar reads it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .types import FrameResult


@dataclass
class Progress:
    """A running run: `done` of `total` frames (an earlier run's kept frames included; `total`
    None while not known yet), the model's pace and the time left, then, once the model is done,
    the frames the writers have finished (`written`) and whether it has `finished`."""

    done: int = 0
    total: int | None = None
    fps: float = 0.0  # frames a second of the model, kept frames aside
    eta_s: float | None = None  # seconds left, when the pace says
    elapsed_s: float = 0.0
    written: int | None = None  # once the model is done: frames the writers have finished (None before)
    finished: bool = False  # the run (or its GPU call) has ended: its files are being closed
    result: FrameResult | None = field(default=None, repr=False)  # the frame just done (where the model runs)
    preview: np.ndarray | None = field(default=None, repr=False)  # the latest frame drawn (None: no new one)
    text: str = ""  # the run's state in words, for the page

    def sent(self, preview: np.ndarray | None) -> "Progress":
        """This progress as it leaves the process that runs the model: without the frame's result
        (its masks stay there), with `preview`, the latest frame drawn when it is new."""
        return replace(self, result=None, preview=preview)
