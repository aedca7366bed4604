"""The seam between the package and a SAM3 implementation.

A `Backend` is a loaded model (shared, loaded once per process); `open()` gives a
`BackendSession` for one video. Sessions speak only `FrameResult`, so nothing downstream knows
which implementation ran. Both implementations import their heavy libraries lazily.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

from ..types import FrameResult, VideoInfo


class BackendSession(Protocol):
    """One video's tracking state inside a backend."""

    info: VideoInfo

    def detect(self, frame_index: int, phrases: Sequence[str], threshold: float | None = None) -> FrameResult:
        """Start over with these phrases and return the detections on `frame_index`.

        The returned result is a preview: propagation yields that frame again, final (SAM3 may
        still drop objects from it during its warm-up).
        """

    def propagate(
        self,
        frame_indices: Sequence[int],
        reverse: bool,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[FrameResult]:
        """Yield one result per index of `frame_indices` (consecutive, in processing order).

        The first index may be the frame `detect` ran on; it is then not run again. When
        `should_stop()` turns true, no new frame is started, every frame already processed is
        still yielded, and the iterator ends.
        """

    def remove_object(self, obj_id: int) -> None:
        """Forget one object: it is absent from every result yielded afterwards."""

    def close(self) -> None:
        """Free the session's memory (and GPU memory)."""


class Backend(Protocol):
    name: str  # "transformers" or "sam3"
    model_id: str
    device: str

    def open(self, path: str, info: VideoInfo) -> BackendSession: ...


def effective_thresholds(defaults: tuple[float, float], threshold: float | None) -> dict[str, float]:
    """SAM3's two detection cuts for a user threshold (None: the model's own `defaults`).

    `threshold` is the score a detection needs to start a new object; the looser cut that lets
    a detection confirm an existing object is lowered to it when it is below.
    """
    det, new = defaults
    if threshold is not None:
        det, new = min(det, threshold), threshold
    return {"score_threshold_detection": float(det), "new_det_thresh": float(new)}


def apply_threshold(model, defaults: tuple[float, float], threshold: float | None) -> None:
    """Set SAM3's two detection cuts for one call (both implementations name them alike)."""
    cuts = effective_thresholds(defaults, threshold)
    model.score_threshold_detection = cuts["score_threshold_detection"]
    model.new_det_thresh = cuts["new_det_thresh"]
