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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from .errors import BadRequestError
from .results import ResultsWriter, frame_from_json
from .types import Direction, FrameResult, VideoInfo

MANIFEST = "run.json"


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
    _offsets: dict[int, int] = field(default_factory=dict, repr=False)  # frame -> byte offset in results.jsonl

    @property
    def results_path(self) -> str:
        return os.path.join(self.folder, ResultsWriter.name)

    def kept_results(self, height: int, width: int) -> Iterator[FrameResult]:
        """The kept frames' results, ascending, read one at a time (memory stays flat)."""
        with open(self.results_path, "rb") as f:
            for index in self.kept:
                f.seek(self._offsets[index])
                yield frame_from_json(json.loads(f.readline()), height, width)


def load(folder: str | os.PathLike, frame: int, direction: Direction, info: VideoInfo) -> EarlierRun:
    """Read what continuing the run in `folder` from `frame` in `direction` needs.

    Kept: the earlier frames next to `frame` on the side the new run does not go (forward: the
    ones before it, backward: the ones after it; none for "both"), as far as they reach without a gap.
    """
    folder = os.fspath(folder)
    manifest_path = os.path.join(folder, MANIFEST)
    results_path = os.path.join(folder, ResultsWriter.name)
    if not (os.path.isfile(manifest_path) and os.path.isfile(results_path)):
        raise BadRequestError(f"'{folder}' is not the output folder of a run (it needs {MANIFEST} and "
                              f"{ResultsWriter.name}); give the folder an earlier run wrote.")
    try:
        with open(manifest_path, encoding="utf-8") as f:
            manifest = json.load(f)
        video = manifest["video"]
        size = (int(video["width"]), int(video["height"]), int(video["num_frames"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise BadRequestError(f"The {MANIFEST} in '{folder}' cannot be read; continue a run whose folder is "
                              "complete, or start a new run.") from None
    if size != (info.width, info.height, info.num_frames):
        raise BadRequestError(
            f"The run in '{folder}' was made on another video ({size[0]}x{size[1]}, {size[2]} frames; this one "
            f"is {info.width}x{info.height}, {info.num_frames} frames). Continue it on the same video.")

    offsets: dict[int, int] = {}
    ids_on: dict[int, list[int]] = {}
    seed_record = None
    last_id = 0
    with open(results_path, "rb") as f:
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
                ids = [int(o["id"]) for o in record["objects"]]
            except (ValueError, KeyError, TypeError):
                if not line.endswith(b"\n"):  # a run killed mid-line: its last frame is incomplete
                    break
                raise BadRequestError(f"The results in '{folder}' are damaged near byte {offset}; start a new "
                                      "run instead.") from None
            offsets[index], ids_on[index] = offset, ids
            last_id = max([last_id, *ids])
            if index == frame:
                seed_record = record
    if seed_record is None:
        covered = f"frames {min(offsets)} to {max(offsets)}" if offsets else "no frames"
        raise BadRequestError(f"Frame {frame} was not processed by the run in '{folder}' (it covers {covered}); "
                              "continue from a frame it processed.")

    step = {"forward": -1, "backward": 1}.get(direction)
    kept: list[int] = []
    if step is not None:
        index = frame + step
        while index in offsets:
            kept.append(index)
            index += step
    kept.sort()
    seed = frame_from_json(seed_record, info.height, info.width)
    first_seen = {}
    for obj_id in seed.obj_ids.tolist():
        seen = [i for i in (*kept, frame) if obj_id in ids_on[i]]
        first_seen[obj_id] = max(seen) if direction == "backward" else min(seen)
    threshold = manifest.get("threshold")
    return EarlierRun(folder, frame, seed, kept, first_seen, last_id, tuple(manifest.get("prompts") or ()),
                      None if threshold is None else float(threshold), offsets)


def last_frame(folder: str | os.PathLike) -> int | None:
    """The frame the run in `folder` processed last (where a stopped run would go on), or None."""
    path = os.path.join(os.fspath(folder), ResultsWriter.name)
    last = None
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n") and line.strip():
                    last = int(json.loads(line)["frame_index"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return last
