"""Continue an earlier run from one of its frames, after correcting that frame.

A run that was stopped, or that went wrong from some frame on, is not started over: the user
picks a frame the earlier run processed, corrects its objects there (removals, clicks, boxes) and
propagation continues from it. The new run's outputs hold the earlier run's frames behind that
frame, unchanged, then the new frames from it on: one run, as if it had gone that way at once.

The earlier run's model state is not kept anywhere (the app opens a fresh model session per call,
possibly in another process). The new session starts from the earlier result on the frame: each
object, under its id, becomes the tracker's mask input there, which is how SAM3 itself starts
tracking a new detection. Frames from there on are real model output; the tracker's memory starts
at that frame.

A run made with a stride (every Nth frame) is continued with the same stride on the same frames:
the frame to continue from is one it did, and its kept frames are its frames behind that one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from .errors import BadRequestError
from .results import frame_from_json
from .runfolder import RECORD, RESULTS, RunRecord, read_record
from .types import Direction, FrameResult, VideoInfo, grid_position, is_direction


class RunFrames:
    """Frame-by-frame access to a run's results.jsonl: byte offsets and ids in memory, masks read
    when asked. A last line cut short (a run killed while writing) is left out."""

    def __init__(self, folder: str | os.PathLike):
        self.path = os.path.join(os.fspath(folder), RESULTS)
        self.offsets: dict[int, int] = {}
        self.ids_on: dict[int, list[int]] = {}
        self.last: int | None = None  # the frame written last
        with open(self.path, "rb") as f:
            while True:
                offset = f.tell()
                line = f.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    index = int(record["frame_index"])
                    self.ids_on[index] = [int(o["id"]) for o in record["objects"]]
                except (ValueError, KeyError, TypeError):
                    if not line.endswith(b"\n"):
                        break
                    raise BadRequestError(f"The results in '{os.path.dirname(self.path)}' are damaged near byte "
                                          f"{offset}; start a new run instead.") from None
                self.offsets[index], self.last = offset, index
        self.last_id = max((i for ids in self.ids_on.values() for i in ids), default=0)

    def __contains__(self, index) -> bool:
        return index in self.offsets

    def get(self, index: int, height: int, width: int) -> FrameResult:
        return next(self.read([index], height, width))

    def read(self, indices, height: int, width: int) -> Iterator[FrameResult]:
        """The results of `indices`, in that order, from one open file, one at a time."""
        with open(self.path, "rb") as f:
            for index in indices:
                f.seek(self.offsets[index])
                yield frame_from_json(json.loads(f.readline()), height, width)

    def lines(self, indices) -> Iterator[bytes]:
        """The results lines of `indices` as the file holds them, in that order."""
        with open(self.path, "rb") as f:
            for index in indices:
                f.seek(self.offsets[index])
                yield f.readline()

    def covered(self) -> str:
        return f"frames {min(self.offsets)} to {max(self.offsets)}" if self.offsets else "no frames"


@dataclass
class EarlierRun:
    """What a continuation takes from an earlier run's output folder."""

    folder: str
    frame: int  # the frame the new run starts from
    seed: FrameResult  # the earlier run's result on it
    kept: list[int]  # earlier frames the new run keeps (behind `frame`), ascending
    first_seen: dict[int, int]  # seed id -> the frame it first appeared on, seen from the new run
    last_id: int  # the highest object id the earlier run used (new objects get higher ones)
    prompts: tuple[str, ...]
    threshold: float | None
    frames: RunFrames = field(repr=False)
    direction: Direction = "forward"  # the way the new run goes from `frame`
    stride: int = 1  # the earlier run's (every frame: 1), which the new run keeps


def load(folder: str | os.PathLike, frame: int, direction: Direction | None, info: VideoInfo,
         frames: RunFrames | None = None) -> EarlierRun:
    """Read what continuing the run in `folder` from `frame` in `direction` needs (None: the way
    the earlier run went through `frame`, see `heading`). `frames`: the folder's results, when the
    caller has read them already.

    Kept: the earlier frames next to `frame` on the side the new run does not go (forward: the
    ones before it, backward: the ones after it; none for "both"), as far as they reach without a gap
    (with the earlier run's stride N: frame - N, frame - 2N, ... going forward).
    """
    folder = os.fspath(folder)
    if not (os.path.isfile(os.path.join(folder, RECORD)) and os.path.isfile(os.path.join(folder, RESULTS))):
        raise BadRequestError(f"'{folder}' is not the output folder of a run (it needs {RECORD} and "
                              f"{RESULTS}); give the folder an earlier run wrote.")
    record = read_record(folder)
    unreadable = BadRequestError(f"The {RECORD} in '{folder}' cannot be read; continue a run whose folder is "
                                 "complete, or start a new run.")
    if record is None:
        raise unreadable
    try:
        size = (int(record.video["width"]), int(record.video["height"]), int(record.video["num_frames"]))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise unreadable from None
    if size != (info.width, info.height, info.num_frames):
        raise BadRequestError(
            f"The run in '{folder}' was made on another video ({size[0]}x{size[1]}, {size[2]} frames; this one "
            f"is {info.width}x{info.height}, {info.num_frames} frames). Continue it on the same video.")
    try:
        stride = max(1, int(getattr(record, "stride", 1) or 1))
    except (TypeError, ValueError):
        stride = 1
    if stride > 1:  # a frame the earlier run's stride skips gets the sentence that says which it did
        grid_position(frame, stride, record.start.frame, info.num_frames)
    frames = RunFrames(folder) if frames is None else frames
    if frame not in frames:
        raise BadRequestError(f"Frame {frame} was not processed by the run in '{folder}' (it covers "
                              f"{frames.covered()}); continue from a frame it processed.")
    direction = direction or heading(record, frame)
    step = {"forward": -stride, "backward": stride}.get(direction)
    kept: list[int] = []
    if step is not None:
        index = frame + step
        while index in frames:
            kept.append(index)
            index += step
    kept.sort()
    seed = frames.get(frame, info.height, info.width)
    first_seen = {}
    for obj_id in seed.obj_ids.tolist():
        seen = [i for i in (*kept, frame) if obj_id in frames.ids_on[i]]
        first_seen[obj_id] = max(seen) if direction == "backward" else min(seen)
    return EarlierRun(folder, frame, seed, kept, first_seen, frames.last_id, record.start.phrases,
                      record.start.threshold, frames, direction, stride)


def heading(record: RunRecord, frame: int) -> Direction:
    """The way a run went through `frame`: a "both" run goes forward from its start frame and
    backward below it."""
    if is_direction(record.direction) and record.direction != "both":
        return record.direction
    return "forward" if frame >= record.start.frame else "backward"


def last_frame(folder: str | os.PathLike) -> int | None:
    """The frame the run in `folder` processed last (where a stopped run would go on), or None."""
    try:
        return RunFrames(folder).last
    except (OSError, BadRequestError):
        return None
