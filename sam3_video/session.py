"""One video, one set of phrases: detect on a frame, then propagate through the video.

`VideoSession` is what every door uses (CLI, app, batch). It validates what the user asked for,
turns a direction into frame indices, and runs "both" as forward then backward through one
generator, so every frame in range is yielded exactly once.

With a stride N, the session does every Nth frame of the video, those of frame `anchor`
(anchor % N, anchor % N + N, ...). SAM3 must see consecutive frames (its tracker remembers the
last few frames by index, its warm-up counts frames), so its backend session is opened on the
sampled video (`VideoInfo.sampled`), where those frames are 0, 1, 2, ...; this class is the one
place that translates: every public method takes and returns the video's own frame indices.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .backends import Backend, BackendSession, load_backend
from .continuation import EarlierRun
from .errors import BackendUnavailableError, BadRequestError
from .types import (  # noqa: F401  (check_stride, check_threshold, stride_for_fps: this module's kind, in types)
    MAX_PHRASE_CHARS,
    Direction,
    Edit,
    FrameResult,
    VideoInfo,
    check_stride,
    check_threshold,
    frame_order,
    grid_position,
    is_direction,
    parse_prompts,
    phrases_of,
    stride_for_fps,
)
from .video import VideoReader, probe


def check_frame(info: VideoInfo, frame_index: int) -> int:
    """`frame_index` if it is a frame of the video, else a sentence that gives the range."""
    n = info.num_frames
    if not isinstance(frame_index, int) or not 0 <= frame_index < n:
        raise BadRequestError(f"Frame {frame_index} is outside this video, which has frames 0 to {n - 1}.")
    return frame_index


def check_direction(direction: str | None, max_frames: int | None = None) -> Direction:
    """A direction of DIRECTIONS (returned as one) and a frame limit of at least 1 (or None), else a sentence."""
    if not is_direction(direction):
        raise BadRequestError(f"Unknown direction '{direction}'. Use forward, backward or both.")
    if max_frames is not None and int(max_frames) < 1:
        raise BadRequestError("The frame limit must be at least 1 (or empty for the whole video).")
    return direction


class VideoSession:
    """Detect and track text-described objects in one video.

    >>> with VideoSession("clip.mp4", backend) as s:
    ...     preview = s.detect(40, "car, person")
    ...     for result in s.propagate("both"):
    ...         ...

    `stride` N > 1: only frames anchor % N + k * N are done (detect, edit and propagate on those;
    any other frame is a sentence); results carry the video's own frame indices.
    """

    def __init__(self, video: str | os.PathLike, backend: Backend | None = None, info: VideoInfo | None = None,
                 stride: int = 1, anchor: int = 0):
        self.info = info or probe(video)  # the whole video, always
        self.stride = check_stride(stride, self.info)
        self.anchor = int(anchor)
        self.model_info = self.info.sampled(self.stride, self.anchor % self.stride)  # what the backend sees
        self.backend = backend or load_backend()
        self._session: BackendSession = self.backend.open(os.fspath(video), self.model_info)
        self._stop = threading.Event()
        self.phrases: tuple[str, ...] = ()
        self.detect_frame: int | None = None
        self.threshold: float | None = None
        self._propagated = False  # edits go between detect and propagate
        self._reader: VideoReader | None = None  # only when the backend keeps no reader to share

    # -- validation --------------------------------------------------------------------------
    def _check_frame(self, frame_index: int) -> int:
        return check_frame(self.info, frame_index)

    def _model_index(self, frame_index: int) -> int:
        """The backend's index of video frame `frame_index` (a sentence for a frame the stride skips)."""
        if self.stride == 1:
            return frame_index
        return grid_position(frame_index, self.stride, self.anchor, self.info.num_frames)

    def _video_result(self, result: FrameResult) -> FrameResult:
        """A backend result with the video's own frame index."""
        if self.stride == 1:
            return result
        return replace(result, frame_index=self.model_info.file_index(result.frame_index))

    def on_grid(self, frame_index: int) -> bool:
        """Whether frame `frame_index` is one this session does (every frame without a stride)."""
        return 0 <= frame_index < self.info.num_frames and (frame_index - self.anchor) % self.stride == 0

    def _check_edit(self, frame_index: int) -> int:
        if self.detect_frame is None:
            raise BadRequestError("Run detect on a frame before editing its objects.")
        if frame_index != self.detect_frame:
            raise BadRequestError(f"Edit the frame you detected on (frame {self.detect_frame}); "
                                  f"to edit frame {frame_index}, detect on it first.")
        if self._propagated:
            raise BadRequestError(f"Edits go between detect and propagate; run detect on frame {frame_index} "
                                  "again, then edit.")
        return frame_index

    def _check_xy(self, x, y, what: str) -> tuple[float, float]:
        w, h = self.info.width, self.info.height
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            raise BadRequestError(f"The {what} ({x}, {y}) is not a pair of numbers.") from None
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
            raise BadRequestError(f"The {what} ({x:g}, {y:g}) is outside the frame, which is {w} x {h} pixels.")
        return x, y

    def _check_points(self, points, labels, required: bool) -> tuple[list[tuple[float, float]], list[int]]:
        points = [] if points is None else list(points)
        labels = [] if labels is None else list(labels)
        if required and not points:
            raise BadRequestError("Give at least one click (a point and whether it is part of the object).")
        if len(points) != len(labels):
            raise BadRequestError(f"There are {len(points)} clicks but {len(labels)} labels; give one label per click.")
        checked = []
        for p in points:
            if len(p) != 2:
                raise BadRequestError(f"The click {p} is not an (x, y) pair.")
            checked.append(self._check_xy(p[0], p[1], "click"))
        if any(label not in (0, 1) for label in labels):
            raise BadRequestError("A click label must be 1 (part of the object) or 0 (not part of it).")
        return checked, [int(label) for label in labels]

    def _check_box(self, box) -> tuple[float, float, float, float]:
        if box is None or len(box) != 4:
            raise BadRequestError(f"The box {box} is not four numbers x0, y0, x1, y1.")
        x0, y0 = self._check_xy(box[0], box[1], "box corner")
        x1, y1 = self._check_xy(box[2], box[3], "box corner")
        if x1 <= x0 or y1 <= y0:
            raise BadRequestError(f"The box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty; give its top-left corner "
                                  "first and the bottom-right one second.")
        return x0, y0, x1, y1

    # -- operations ----------------------------------------------------------------------------
    def _start_over(self, frame_index: int, prompts: str | Sequence[str], threshold: float | None) -> tuple[str, ...]:
        """Check and keep what `detect` and `resume` start from; return the phrases."""
        phrases = phrases_of(prompts)
        threshold = check_threshold(threshold)
        self._model_index(self._check_frame(frame_index))  # a frame the stride does
        self.phrases, self.threshold, self.detect_frame = phrases, threshold, frame_index
        self._propagated = False
        return phrases

    def detect(self, frame_index: int, prompts: str | Sequence[str], threshold: float | None = None) -> FrameResult:
        """Find every instance of the phrases on one frame (starts the session over)."""
        phrases = self._start_over(frame_index, prompts, threshold)
        result = self._session.detect(self._model_index(frame_index), phrases, self.threshold)
        return self._video_result(result)

    def resume(self, earlier: EarlierRun, prompts: str | Sequence[str] | None = None,
               threshold: float | None = None) -> FrameResult:
        """Start from an earlier run's result on `earlier.frame` instead of a detection (see
        `continuation.load`): its objects keep their ids and are tracked from their masks there; the
        phrases (default: the earlier run's) find new objects after it. Edits, removals and
        propagation follow as after `detect`."""
        if "continue" not in self.edits:
            raise BackendUnavailableError(
                f"The {self.backend.name} backend cannot continue a run from a corrected frame; use the "
                "transformers backend for that, or start a new run.")
        phrases = self._start_over(earlier.frame, earlier.prompts if prompts is None else prompts, threshold)
        at = self._model_index(earlier.frame)
        seed = replace(earlier.seed, frame_index=at) if self.stride > 1 else earlier.seed
        first_seen = {obj_id: self._model_index(f) for obj_id, f in earlier.first_seen.items()}
        result = self._session.resume(at, phrases, self.threshold, seed, first_seen, earlier.last_id)
        return self._video_result(result)

    def remove_object(self, obj_id: int) -> None:
        """Drop an object (a false positive, say) from this and every later result."""
        self._session.remove_object(int(obj_id))

    @property
    def edits(self) -> frozenset[str]:
        """The edits this backend supports: some of "refine", "add_object", "exemplar"."""
        return frozenset(getattr(self._session, "edits", frozenset()))

    def refine(self, frame_index: int, obj_id: int, points: Sequence[tuple[float, float]],
               labels: Sequence[int]) -> FrameResult:
        """Correct one object on the detect frame with clicks, in video pixels: `points` (N, 2) are
        every click so far for it, `labels` (N,) 1 (part of it) or 0 (not part of it). Returns the
        frame's result; only that object's mask changes, and propagation carries the correction."""
        frame_index = self._check_edit(frame_index)
        points, labels = self._check_points(points, labels, required=True)
        try:
            obj_id = int(obj_id)
        except (TypeError, ValueError):
            raise BadRequestError(f"The object id {obj_id!r} is not a number; use an id shown on the frame.") from None
        return self._video_result(self._session.refine(self._model_index(frame_index), obj_id, points, labels))

    def add_object(self, frame_index: int, label: str, box: Sequence[float] | None = None,
                   points: Sequence[tuple[float, float]] | None = None,
                   labels: Sequence[int] | None = None) -> tuple[int, FrameResult]:
        """Track something the phrases missed, from a box (x0, y0, x1, y1 px) and/or clicks.

        Returns the new object's id (never one the detector used) and the frame's result.
        """
        frame_index = self._check_edit(frame_index)
        label = " ".join(str(label or "").split())
        if not label or len(label) > MAX_PHRASE_CHARS:
            raise BadRequestError(f"Give the new object a label of one to {MAX_PHRASE_CHARS} characters, e.g. 'car'.")
        points, labels = self._check_points(points, labels, required=False)
        if box is None and not points:
            raise BadRequestError("Draw a box or click on the new object to add it.")
        box = None if box is None else self._check_box(box)
        obj_id, result = self._session.add_object(self._model_index(frame_index), label, box, points or None,
                                                  labels or None)
        return obj_id, self._video_result(result)

    def exemplar(self, frame_index: int, box: Sequence[float], positive: bool = True) -> FrameResult:
        """Search the detect frame again with a box as an example of the phrases ("more like this";
        `positive=False`: "not like this"). What it finds that no object covers becomes new objects;
        a negative example also drops detected objects it rules out. Returns the frame's result."""
        frame_index = self._check_edit(frame_index)
        return self._video_result(self._session.exemplar(self._model_index(frame_index), self._check_box(box),
                                                         bool(positive)))

    def replay(self, frame: int, phrases: str | Sequence[str], threshold: float | None, removed: Iterable[int],
               edits: Sequence[Edit], earlier: EarlierRun | None = None) -> FrameResult:
        """The preview the user built, rebuilt on this session: detect on `frame` (or start from the
        `earlier` run's result there), drop the `removed` ids, apply the `edits` in order. Detection
        and seeding are deterministic, so the ids are the ones the user saw."""
        result = self.resume(earlier, phrases, threshold) if earlier is not None else self.detect(frame, phrases, threshold)
        removed = sorted(removed)
        for obj_id in removed:
            self.remove_object(obj_id)
        result = result.without(removed)
        for edit in edits:
            if edit.kind == "refine":
                if edit.obj_id is None:
                    raise BadRequestError("A click fix must name the object it corrects (obj_id).")
                result = self.refine(frame, edit.obj_id, edit.points, edit.labels)
            elif edit.kind == "add_object":
                _, result = self.add_object(frame, edit.label, box=edit.box, points=edit.points or None,
                                            labels=edit.labels or None)
            elif edit.kind == "exemplar":
                if edit.box is None:
                    raise BadRequestError("An example needs a box (x0, y0, x1, y1).")
                result = self.exemplar(frame, edit.box, edit.positive)
            else:
                raise BadRequestError(f"Unknown edit '{edit.kind}'. Use refine, add_object or exemplar.")
        return result

    @property
    def notice(self) -> str | None:
        """A sentence for the user from the backend, or None (the object cap bound: objects found
        after it were left out)."""
        notice = getattr(self._session, "notice", None)
        return notice if isinstance(notice, str) else None

    def frames(self, direction: Direction = "forward", start_frame: int | None = None, max_frames: int | None = None) -> list[int]:
        """The frame indices `propagate` will yield, in order (every `stride`-th frame from the start)."""
        check_direction(direction, max_frames)
        start = self.detect_frame if start_frame is None else self._check_frame(start_frame)
        if start is None:
            raise BadRequestError("Run detect on a frame before propagating.")
        self._model_index(start)
        return frame_order(self.info.num_frames, start, direction, max_frames, self.stride)

    def propagate(
        self, direction: Direction = "forward", start_frame: int | None = None, max_frames: int | None = None
    ) -> Iterator[FrameResult]:
        """Yield one result per frame in range as soon as SAM3 releases it.

        Forward first, then backward for "both". `stop()` ends it early; frames processed by
        then are still yielded. The detect frame is yielded once, final.
        """
        if start_frame is not None and start_frame != self.detect_frame and self.phrases:
            self.detect(start_frame, self.phrases, self.threshold)  # propagation starts from a detection
        order = self.frames(direction, start_frame, max_frames)
        self._propagated = True
        self._stop.clear()
        start = order[0]
        forward = [i for i in order if i >= start] if direction != "backward" else []
        backward = order if direction == "backward" else [i for i in order if i < start]
        for indices, reverse in ((forward, False), (backward, True)):
            if indices and not self._stop.is_set():
                model_indices = [(i - self.model_info.offset) // self.stride for i in indices]  # on the grid
                for result in self._session.propagate(model_indices, reverse, self._stop.is_set):
                    yield self._video_result(result)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as RGB uint8 (H, W, 3), read-only: from the backend's own decoder when it
        has one and does that frame (the frames it just used are still cached), else from a
        reader of our own (any frame of the video, the ones a stride skips too)."""
        index = self._check_frame(index)
        reader = getattr(self._session, "reader", None)
        if reader is not None and self.on_grid(index):
            return reader[(index - self.model_info.offset) // self.stride]
        if self._reader is None:
            self._reader = VideoReader(self.info.path, self.info)
        return self._reader[index]

    def stop(self) -> None:
        """Ask a running `propagate` to finish after the current frame (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._session.close()

    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def segment(
    video: str | os.PathLike,
    prompts: str | Sequence[str],
    backend: Backend | None = None,
    start_frame: int = 0,
    direction: Direction = "forward",
    max_frames: int | None = None,
    threshold: float | None = None,
    on_session: Callable[[VideoSession], None] | None = None,
    stride: int = 1,
) -> Iterator[FrameResult]:
    """Detect on `start_frame` and propagate (every `stride`-th frame from it): the whole engine in
    one generator."""
    with VideoSession(video, backend, stride=stride, anchor=start_frame) as session:
        if on_session:
            on_session(session)
        session.detect(start_frame, prompts, threshold)
        yield from session.propagate(direction, start_frame, max_frames)
