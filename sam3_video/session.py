"""One video, one set of phrases: detect on a frame, then propagate through the video.

`VideoSession` is what every door uses (CLI, app, batch). It validates what the user asked for,
turns a direction into frame indices, and runs "both" as forward then backward through one
generator, so every frame in range is yielded exactly once.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Iterator, Sequence

import numpy as np

from .backends import Backend, BackendSession, load_backend
from .errors import BadRequestError
from .types import DIRECTIONS, Direction, FrameResult, VideoInfo, frame_order, parse_prompts
from .video import VideoReader, probe


class VideoSession:
    """Detect and track text-described objects in one video.

    >>> with VideoSession("clip.mp4", backend) as s:
    ...     preview = s.detect(40, "car, person")
    ...     for result in s.propagate("both"):
    ...         ...
    """

    def __init__(self, video: str | os.PathLike, backend: Backend | None = None, info: VideoInfo | None = None):
        self.info = info or probe(video)
        self.backend = backend or load_backend()
        self._session: BackendSession = self.backend.open(os.fspath(video), self.info)
        self._stop = threading.Event()
        self.phrases: tuple[str, ...] = ()
        self.detect_frame: int | None = None
        self.threshold: float | None = None
        self._reader: VideoReader | None = None  # only when the backend keeps no reader to share

    # -- validation --------------------------------------------------------------------------
    def _check_frame(self, frame_index: int) -> int:
        n = self.info.num_frames
        if not isinstance(frame_index, int) or not 0 <= frame_index < n:
            raise BadRequestError(f"Frame {frame_index} is outside this video, which has frames 0 to {n - 1}.")
        return frame_index

    @staticmethod
    def _check_threshold(threshold: float | None) -> float | None:
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise BadRequestError(f"The threshold {threshold} is not a score; use a number from 0 to 1.")
        return None if threshold is None else float(threshold)

    # -- operations ----------------------------------------------------------------------------
    def detect(self, frame_index: int, prompts: str | Sequence[str], threshold: float | None = None) -> FrameResult:
        """Find every instance of the phrases on one frame (starts the session over)."""
        phrases = parse_prompts(prompts)
        if not phrases:
            raise BadRequestError("The prompt is empty. Type one or more phrases separated by commas, e.g. 'car, person'.")
        too_long = [p for p in phrases if len(p) > 200]
        if too_long:
            raise BadRequestError("A phrase is longer than 200 characters. Use a few words per phrase.")
        self.phrases = phrases
        self.threshold = self._check_threshold(threshold)
        self.detect_frame = self._check_frame(frame_index)
        return self._session.detect(self.detect_frame, phrases, self.threshold)

    def remove_object(self, obj_id: int) -> None:
        """Drop an object (a false positive, say) from this and every later result."""
        self._session.remove_object(int(obj_id))

    def frames(self, direction: Direction = "forward", start_frame: int | None = None, max_frames: int | None = None) -> list[int]:
        """The frame indices `propagate` will yield, in order."""
        if direction not in DIRECTIONS:
            raise BadRequestError(f"Unknown direction '{direction}'. Use forward, backward or both.")
        if max_frames is not None and int(max_frames) < 1:
            raise BadRequestError("The frame limit must be at least 1 (or empty for the whole video).")
        start = self.detect_frame if start_frame is None else self._check_frame(start_frame)
        if start is None:
            raise BadRequestError("Run detect on a frame before propagating.")
        return frame_order(self.info.num_frames, start, direction, max_frames)

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
        self._stop.clear()
        start = order[0]
        forward = [i for i in order if i >= start] if direction != "backward" else []
        backward = order if direction == "backward" else [i for i in order if i < start]
        for indices, reverse in ((forward, False), (backward, True)):
            if indices and not self._stop.is_set():
                yield from self._session.propagate(indices, reverse, self._stop.is_set)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as RGB uint8 (H, W, 3), read-only: from the backend's own decoder when it
        has one (the frames it just used are still cached), else from a reader of our own."""
        reader = getattr(self._session, "reader", None)
        if reader is None:
            if self._reader is None:
                self._reader = VideoReader(self.info.path, self.info)
            reader = self._reader
        return reader[self._check_frame(index)]

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
) -> Iterator[FrameResult]:
    """Detect on `start_frame` and propagate: the whole engine in one generator."""
    with VideoSession(video, backend) as session:
        if on_session:
            on_session(session)
        session.detect(start_frame, prompts, threshold)
        yield from session.propagate(direction, start_frame, max_frames)
