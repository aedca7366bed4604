"""The types that flow through the package: video facts, run options and per-frame results.

Data flows one way: video -> backend session -> `FrameResult` stream -> sinks. Nothing after the
backend knows which backend produced a `FrameResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
import math
import os
from typing import Iterable, Literal, Sequence, TypeGuard

import numpy as np

from .errors import BadRequestError

Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[str, ...] = ("forward", "backward", "both")


def is_direction(value: object) -> TypeGuard[Direction]:
    """Whether `value` (a page's field, a record's) is one of DIRECTIONS; narrows it to Direction."""
    return value in DIRECTIONS


@dataclass(frozen=True)
class VideoInfo:
    """What `video.probe` learns about a file, in display orientation (rotation applied)."""

    path: str
    width: int
    height: int
    num_frames: int  # frames that decode, counted from the container's packets
    fps: float  # average: num_frames / duration, correct for variable frame rate too
    duration: float  # seconds, first to last frame plus one frame
    rotation: int = 0  # degrees counter-clockwise applied to decoded frames (0, 90, 180, 270)
    codec: str = ""
    has_audio: bool = False
    variable_frame_rate: bool = False
    timestamps: tuple[float, ...] = field(default=(), repr=False)  # seconds, one per frame
    # a sampled view (see `sampled`): frame i of this info is frame offset + i * step of the file
    step: int = 1
    offset: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), the shape of every mask of this video."""
        return (self.height, self.width)

    def sampled(self, step: int, offset: int = 0) -> "VideoInfo":
        """The video as every `step`-th frame from frame `offset` (0 <= offset < step): frames
        offset, offset + step, ... of the file become frames 0, 1, ... of the returned info, at
        fps / step. `video.VideoReader` decodes such an info's frames going forward through the
        file, skipping the others."""
        if self.step != 1:
            raise ValueError("sample a video's own info, not a sampled one")
        if not (step >= 1 and 0 <= offset < max(step, 1)):
            raise ValueError(f"a step of at least 1 and an offset in 0..step-1, got {step} and {offset}")
        if step == 1:
            return self
        kept = range(offset, self.num_frames, step)
        return replace(self, num_frames=len(kept), fps=self.fps / step, step=step, offset=offset,
                       timestamps=tuple(self.timestamps[i] for i in kept) if self.timestamps else ())

    def file_index(self, index: int) -> int:
        """The file's own index of this info's frame `index` (the same unless sampled)."""
        return self.offset + index * self.step


@dataclass
class FrameResult:
    """Every tracked object on one frame, as parallel arrays.

    Attributes:
        frame_index: 0-based index of the frame in display order.
        obj_ids: (n,) int64, from 1, stable for the whole video (0 means background in mask formats).
        labels: n phrases, the prompt that found each object.
        scores: (n,) float32 in [0, 1].
        boxes_xyxy: (n, 4) float32, pixels of the source frame: x0, y0, x1, y1.
        masks: (n, H, W) bool at the source resolution.
    """

    frame_index: int
    obj_ids: np.ndarray
    labels: list[str]
    scores: np.ndarray
    boxes_xyxy: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        self.obj_ids = np.asarray(self.obj_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.boxes_xyxy = np.asarray(self.boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        self.masks = np.asarray(self.masks, dtype=bool)
        self.labels = [str(label) for label in self.labels]
        n = len(self.obj_ids)
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be (n, H, W), got shape {self.masks.shape}")
        for name, length in (
            ("labels", len(self.labels)),
            ("scores", len(self.scores)),
            ("boxes_xyxy", len(self.boxes_xyxy)),
            ("masks", len(self.masks)),
        ):
            if length != n:
                raise ValueError(f"{name} has {length} entries for {n} object ids")
        if len(set(self.obj_ids.tolist())) != n:
            raise ValueError(f"object ids repeat on frame {self.frame_index}: {self.obj_ids.tolist()}")

    def __len__(self) -> int:
        return len(self.obj_ids)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the masks."""
        return (int(self.masks.shape[1]), int(self.masks.shape[2]))

    @classmethod
    def empty(cls, frame_index: int, height: int, width: int) -> "FrameResult":
        return cls(
            frame_index=frame_index,
            obj_ids=np.zeros(0, np.int64),
            labels=[],
            scores=np.zeros(0, np.float32),
            boxes_xyxy=np.zeros((0, 4), np.float32),
            masks=np.zeros((0, height, width), bool),
        )

    def select(self, keep: np.ndarray | Sequence[bool]) -> "FrameResult":
        """A new result with only the objects where `keep` is True."""
        keep = np.asarray(keep, dtype=bool)
        return FrameResult(
            frame_index=self.frame_index,
            obj_ids=self.obj_ids[keep],
            labels=[label for label, k in zip(self.labels, keep) if k],
            scores=self.scores[keep],
            boxes_xyxy=self.boxes_xyxy[keep],
            masks=self.masks[keep],
        )

    def without(self, obj_ids: set[int] | Sequence[int]) -> "FrameResult":
        """A new result without the given object ids."""
        drop = set(int(i) for i in obj_ids)
        if not drop:
            return self
        return self.select([int(i) not in drop for i in self.obj_ids])

    @staticmethod
    def merge(results: Sequence["FrameResult"]) -> "FrameResult":
        """Concatenate results of the same frame (ids must not collide), sorted by id."""
        first = results[0]
        masks = np.concatenate([r.masks for r in results]) if results else first.masks
        ids = np.concatenate([r.obj_ids for r in results])
        order = np.argsort(ids, kind="stable")
        labels = [label for r in results for label in r.labels]
        return FrameResult(
            frame_index=first.frame_index,
            obj_ids=ids[order],
            labels=[labels[i] for i in order],
            scores=np.concatenate([r.scores for r in results])[order],
            boxes_xyxy=np.concatenate([r.boxes_xyxy for r in results])[order],
            masks=masks[order],
        )


@dataclass(frozen=True)
class Edit:
    """A correction made on the detect frame (or on the frame a continued run starts from),
    replayed after detection (or seeding from the earlier run) and removals, in order.

    kind "refine": every click so far on object `obj_id` (`points` in video pixels, `labels` 1
    positive / 0 negative); "add_object": a new object labelled `label` from `box` (x0, y0, x1,
    y1 pixels) or from clicks; "exemplar": `box` as a visual example for the detector ("more like
    this"), `positive` False for "not like this".
    """

    kind: Literal["refine", "add_object", "exemplar"]
    obj_id: int | None = None
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    label: str = ""
    positive: bool = True


@dataclass(frozen=True)
class StartPoint:
    """What a run starts from, as the visitor (or the caller) built it, parsed and checked once
    here: the frame (`frame`, from 0), the phrases (`phrases_of`), the detection score needed
    (`threshold`, 0 to 1; None: the model's own), the objects dropped after detection (`removed`,
    sorted ids), the corrections replayed after them (`edits`, in order) and the output folder of
    an earlier run it continues from (`continue_from`: its result on `frame` is the starting point
    instead of a new detection; then the phrases may be left empty: the earlier run's).

    The workspace of the web app, its GPU requests, `RunOptions` and `RunRecord` carry one of
    these; bad input is a `BadRequestError` with a sentence, when it is made."""

    frame: int = 0
    phrases: tuple[str, ...] = ()
    threshold: float | None = None
    removed: tuple[int, ...] = ()
    edits: tuple[Edit, ...] = ()
    continue_from: str | None = None

    def __post_init__(self) -> None:
        frame = self.frame
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
            raise BadRequestError(f"Frame {frame} is outside this video: give a frame number from 0.")
        continue_from = os.fspath(self.continue_from) if self.continue_from else None
        phrases = parse_prompts(self.phrases or "") if continue_from else phrases_of(self.phrases)
        try:
            removed = tuple(sorted({int(i) for i in self.removed}))
        except (TypeError, ValueError):
            raise BadRequestError(f"The objects to remove must be object ids, whole numbers from the objects table; "
                                  f"got {self.removed!r}.") from None
        edits = tuple(self.edits) if isinstance(self.edits, (tuple, list)) else (self.edits,)
        for edit in edits:
            if not isinstance(edit, Edit):
                raise BadRequestError(f"The correction {edit!r} is not a click or a box (an Edit); give Edit values.")
        for name, value in (("frame", int(frame)), ("phrases", phrases), ("threshold", check_threshold(self.threshold)),
                            ("removed", removed), ("edits", edits), ("continue_from", continue_from)):
            object.__setattr__(self, name, value)

    def removing(self, ids: Iterable[int]) -> "StartPoint":
        """The same start with objects `ids` dropped too."""
        return replace(self, removed=(*self.removed, *ids))

    def with_edits(self, edits: Iterable[Edit]) -> "StartPoint":
        """The same start with `edits` as its corrections (in place of its own)."""
        return replace(self, edits=tuple(edits))

    def continuing(self, folder: str, frame: int) -> "StartPoint":
        """The same phrases and threshold from `frame` of the run in `folder`, as that run left it:
        nothing removed, no corrections."""
        return StartPoint(frame, self.phrases, self.threshold, continue_from=folder)


@dataclass(frozen=True)
class RunOptions:
    """What to find and which frames to cover: where the run starts and from what (`start`), the
    way it goes and how far.

    `max_frames` counts frames per direction, the start frame included: forward from 10 with
    max_frames=5 covers 10..14; both from 10 covers 6..14. `RunOptions.of` takes the same as
    plain values.
    """

    start: StartPoint
    direction: Direction | None = "forward"  # None: forward, or the way a continued run went through start.frame
    max_frames: int | None = None  # None: to the end (and to frame 0 going backward)
    # every `stride`-th frame from `start.frame` (1: every frame): a long video in less GPU time;
    # results keep the video's own frame indices, the overlay plays at fps / stride
    stride: int = 1

    @classmethod
    def of(cls, prompts: str | Sequence[str] = (), start_frame: int = 0, direction: Direction | None = "forward",
           max_frames: int | None = None, threshold: float | None = None, removed: Iterable[int] = (),
           edits: Iterable[Edit] = (), continue_from: str | os.PathLike | None = None, stride: int = 1
           ) -> "RunOptions":
        """The options from plain values: the phrases to find (`prompts`) on `start_frame` (or,
        with `continue_from`, the earlier run's result there, then its phrases unless given),
        `threshold`, objects `removed` right after detection (false positives) and `edits`
        (clicks and boxes) applied after them; see `StartPoint` and sam3_video/continuation.py."""
        phrases = (prompts,) if isinstance(prompts, str) else tuple(prompts)
        start = StartPoint(start_frame, phrases, threshold, tuple(removed), tuple(edits),
                           os.fspath(continue_from) if continue_from else None)
        return cls(start, direction, max_frames, stride)


#: SAM3 reads a phrase of a few words (its text encoder keeps 32 tokens); each phrase costs a pass.
MAX_PHRASE_CHARS = 100
MAX_PHRASES = 20


def phrases_of(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """The phrases a run starts from (`parse_prompts`), at least one, else the one sentence that
    says so: every door (the page, the API, the CLI, the Python session) parses them here."""
    phrases = parse_prompts(text or "")
    if not phrases:
        raise BadRequestError("The prompt is empty. Type one or more phrases separated by commas, e.g. 'car, person'.")
    return phrases


def check_threshold(threshold: float | None) -> float | None:
    """None (the model's own) or a score from 0 to 1, else a sentence."""
    try:
        value = None if threshold is None else float(threshold)
    except (TypeError, ValueError):
        raise BadRequestError(f"The threshold '{threshold}' is not a number; use a score from 0 to 1.") from None
    if value is not None and not 0.0 <= value <= 1.0:
        raise BadRequestError(f"The threshold {threshold} is not a score; use a number from 0 to 1.")
    return value


def parse_prompts(text: str | Sequence[str]) -> tuple[str, ...]:
    """'car, person' -> ('car', 'person'): stripped, control characters, empty parts and repeats
    dropped, order kept. Any script is fine; markup is just text.

    Raises:
        BadRequestError: a phrase longer than MAX_PHRASE_CHARS, or more than MAX_PHRASES phrases.
    """
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    seen: dict[str, None] = {}
    for part in parts:
        phrase = " ".join("".join(c if c.isprintable() else " " for c in part).split())
        if len(phrase) > MAX_PHRASE_CHARS:
            raise BadRequestError(
                f"The phrase '{phrase[:40]}...' is {len(phrase)} characters long; SAM3 reads a few words. Keep each "
                f"phrase under {MAX_PHRASE_CHARS} characters (for example 'red car') and separate phrases with commas.")
        if phrase and phrase.lower() not in (p.lower() for p in seen):
            seen[phrase] = None
    if len(seen) > MAX_PHRASES:
        raise BadRequestError(f"There are {len(seen)} phrases; give at most {MAX_PHRASES} at once (each one is a "
                              "separate search), or run again for the rest.")
    return tuple(seen)


def frame_order(num_frames: int, start: int, direction: Direction, max_frames: int | None,
                stride: int = 1) -> list[int]:
    """Frame indices in processing order: the start frame first, then away from it, every
    `stride`-th frame (1: every frame). `max_frames` counts the frames done per direction.

    forward: start, start+1, ...; backward: start, start-1, ...; both: forward then start-1, ....
    """
    stride = max(1, int(stride))
    limit = num_frames if max_frames is None else max(1, int(max_frames))
    forward = list(range(start, num_frames, stride))[:limit]
    backward = list(range(start - stride, -1, -stride))[: limit - 1]
    if direction == "forward":
        return forward
    if direction == "backward":
        return [start] + backward
    return forward + backward


def check_stride(stride, info: VideoInfo) -> int:
    """`stride` as an int if it is a whole number from 1 to info.num_frames - 1 (1 for a one-frame
    video; None or "" for 1, a field left empty), else a sentence: what was wrong and what to give
    instead."""
    if stride is None or stride == "":
        return 1
    try:
        value = float(stride)
    except (TypeError, ValueError):
        raise BadRequestError(f"The stride '{stride}' is not a number; give a whole number of frames, e.g. 5 to "
                              "do every 5th frame (1 does every frame).") from None
    if isinstance(stride, bool) or not math.isfinite(value) or not value.is_integer():
        raise BadRequestError(f"The stride {stride} is not a whole number of frames; give e.g. 5 to do every "
                              "5th frame (1 does every frame).")
    n, value = info.num_frames, int(value)
    if value < 1:
        raise BadRequestError(f"A stride of {value} does not move through the video; give a whole number of at "
                              "least 1 (1 does every frame, 2 every other frame, and so on).")
    if value > 1 and value >= n:
        raise BadRequestError(f"A stride of {value} is longer than this video allows: it has {n} frames, so only "
                              f"one frame would be done; use a stride from 1 to {max(1, n - 1)}.")
    return value


def stride_for_fps(info: VideoInfo, target_fps) -> int:
    """The stride that brings the video's frame rate nearest to `target_fps` frames a second:
    round(fps / target_fps), at least 1 (a target at or above the video's rate does every
    frame); a target that is not a positive number, or too low for the video, gets a sentence."""
    try:
        target = float(target_fps)
    except (TypeError, ValueError):
        target = float("nan")
    if not (math.isfinite(target) and target > 0):
        raise BadRequestError(f"The target frame rate '{target_fps}' is not a positive number of frames a second; "
                              f"give e.g. 5 (this video has {info.fps:.3g}).")
    stride = max(1, round(info.fps / target))
    if stride > 1 and stride >= info.num_frames:
        raise BadRequestError(
            f"A target of {target:g} frames a second leaves less than two frames of this {info.duration:.3g}-second "
            f"video; ask for at least {info.fps / max(1, info.num_frames - 1):.3g} frames a second.")
    return stride


def grid_position(frame_index: int, stride: int, anchor: int, num_frames: int) -> int:
    """k where `frame_index` = anchor % stride + k * stride, the frames a run with this stride
    from frame `anchor` does; for any other frame a sentence naming the frames it could be."""
    offset = anchor % stride
    k, off = divmod(frame_index - offset, stride)
    if off:
        near = [f for f in (frame_index - off, frame_index - off + stride) if 0 <= f < num_frames]
        listed = ", ".join(str(offset + i * stride) for i in range(3) if offset + i * stride < num_frames)
        raise BadRequestError(f"With a stride of {stride} from frame {anchor}, frames {listed}, ... are done; frame "
                              f"{frame_index} is not one of them. Choose frame {' or '.join(map(str, near))}.")
    return k


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 5 -> '5th', 12 -> '12th', 22 -> '22nd' (as in "every 5th frame")."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
