"""The seam between the package and a SAM3 implementation.

A `Backend` is a loaded model (shared, loaded once per process); `open()` gives a
`BackendSession` for one video. Sessions speak only `FrameResult`, so nothing downstream knows
which implementation ran. Both implementations import their heavy libraries lazily.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from ..types import FrameResult, VideoInfo


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in video pixels
Point = tuple[float, float]  # x, y in video pixels

EDITS = ("refine", "add_object", "exemplar", "continue")  # "continue": `resume` from an earlier result


@runtime_checkable
class BackendSession(Protocol):
    """One video's tracking state inside a backend.

    Edits (the names in `edits`) change the detect frame between `detect` and `propagate`;
    propagation then carries them. Ids are ours (from 1), coordinates are video pixels.
    """

    info: VideoInfo
    edits: frozenset[str]  # which of EDITS this backend supports
    reader: object | None  # a video.VideoReader of the session's video to share (frames it just decoded), or None

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

    def refine(self, frame_index: int, obj_id: int, points: Sequence[Point], labels: Sequence[int]) -> FrameResult:
        """Recompute one object's mask from clicks and return the frame's whole result.

        `points` (N, 2) are every click so far for that object on that frame, `labels` (N,) 1 for
        "part of it" and 0 for "not part of it". Only that object's mask changes.
        """

    def add_object(
        self,
        frame_index: int,
        label: str,
        box: Box | None = None,
        points: Sequence[Point] | None = None,
        labels: Sequence[int] | None = None,
    ) -> tuple[int, FrameResult]:
        """Track a new object from a box and/or clicks; return its id (new, never reused) and the
        frame's result."""

    def exemplar(self, frame_index: int, box: Box, positive: bool = True) -> FrameResult:
        """Search the frame again with a box as an example of what the phrases mean ("more like
        this") or, negative, do not; new finds become new objects. Returns the frame's result."""

    def resume(self, frame_index: int, phrases: Sequence[str], threshold: float | None, seed: FrameResult,
               first_seen: Mapping[int, int], last_id: int) -> FrameResult:
        """Start over from known objects on `frame_index` (`seed`, an earlier run's result there)
        instead of a detection: each keeps its id; new objects get ids above `last_id`;
        `first_seen` says where each seed object first appeared. Edits and propagation follow as
        after `detect`. Only where "continue" is in `edits`."""

    def close(self) -> None:
        """Free the session's memory (and GPU memory)."""


@runtime_checkable
class Backend(Protocol):
    """A loaded model; a class of backends.REGISTRY, constructed as (model_id, device, dtype)."""

    name: str  # its name in backends.REGISTRY
    model_id: str
    device: str
    default_thresholds: tuple[float, float]  # the model's own detection cuts (see effective_thresholds)
    postprocessing: str  # what runs the mask NMS and hole filling (said in each run's record)
    lock: object  # a threading.RLock: one model, many sessions; calls go one at a time

    def open(self, path: str, info: VideoInfo) -> BackendSession:
        """A session on one video."""

    def set_threshold(self, threshold: float | None) -> None:
        """Set the detection cuts for the next calls (None: the model's own)."""


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
