"""Each object of a run over time: the frames where it has a mask, as ranges, from the results the
run already writes (never from decoding masks again).

`objects.json` in the run folder (written by `TimelineWriter`, a sink of the pipeline):

    {"stride": 2, "frames_done": 60, "frame_range": [0, 118],
     "objects": [{"id": 3, "label": "car", "colour": "#ff3333", "first": 0, "last": 96,
                  "frames": 41, "ranges": [[0, 40], [58, 96]], "gaps": [[42, 56]], "gap_frames": 8,
                  "best_score": 0.91, "best_frame": 12}]}

An object *has a mask* on a frame when its mask there has at least one pixel (the area of its
run-length encoding: a few integer sums, no mask is decoded). Frames are the run's: with a stride
N they are N apart, and a range [a, b] is every N-th frame from a to b, each done and each with a
mask. `gaps` are the stretches inside an object's span (first to last) where it has none: the
tracker lost it there, or its id gave way to another. `best_score` is its highest score on a frame
with a mask. Objects are listed by id; one that never had a mask has `first`, `last` and
`best_score` null and no ranges.

`Timeline` is fed one frame at a time (a results.jsonl record or a frame being written) and keeps
each range by its two ends, so adding a frame costs the same on frame 10 and on frame 18,000, in
any order (a run going both ways writes forward, then backward). `FolderTimeline` follows a
folder's results.jsonl while a run writes it, reading only the lines added since it last looked;
`read_timeline` is the facts of a folder at any moment.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Iterable

from .render import color_for, hex_color
from .results import rle_areas
from .runfolder import RECORD, RESULTS, read_record

OBJECTS = "objects.json"


@dataclass
class _Track:
    """One object: its ranges kept by their ends (start -> end and end -> start)."""

    id: int
    label: str
    starts: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)
    frames: int = 0
    best_score: float | None = None
    best_frame: int | None = None

    def add(self, index: int, stride: int) -> None:
        a = b = index
        if index - stride in self.ends:
            a = self.ends.pop(index - stride)
        if index + stride in self.starts:
            b = self.starts.pop(index + stride)
        self.starts[a], self.ends[b] = b, a
        self.frames += 1

    def facts(self, stride: int) -> dict:
        ranges = [[a, b] for a, b in sorted(self.starts.items())]
        gaps = [[prev[1] + stride, nxt[0] - stride] for prev, nxt in zip(ranges, ranges[1:])]
        return {"id": self.id, "label": self.label, "colour": hex_color(color_for(self.id)),
                "first": ranges[0][0] if ranges else None, "last": ranges[-1][1] if ranges else None,
                "frames": self.frames, "ranges": ranges, "gaps": gaps,
                "gap_frames": sum((b - a) // stride + 1 for a, b in gaps),
                "best_score": None if self.best_score is None else round(self.best_score, 4),
                "best_frame": self.best_frame}


class Timeline:
    """The per-object facts of a run, fed one frame at a time (`add`, `add_record`)."""

    def __init__(self, stride: int = 1):
        self.stride = max(1, int(stride or 1))
        self.tracks: dict[int, _Track] = {}
        self.done: set[int] = set()  # frames fed

    def add(self, index: int, objects: Iterable[tuple[int, str, float, int]]) -> None:
        """Frame `index` with its objects as (id, label, score, mask area). A frame fed twice
        counts once (the first time)."""
        index = int(index)
        if index in self.done:
            return
        self.done.add(index)
        for obj_id, label, score, area in objects:
            track = self.tracks.get(int(obj_id))
            if track is None:
                track = self.tracks[int(obj_id)] = _Track(int(obj_id), str(label))
            if area <= 0:
                continue
            track.add(index, self.stride)
            if track.best_score is None or float(score) > track.best_score:
                track.best_score, track.best_frame = float(score), index

    def add_record(self, record: dict) -> None:
        """A results.jsonl line, parsed (results.py)."""
        objects = record["objects"]
        areas = rle_areas(o["mask"] for o in objects)
        self.add(record["frame_index"], ((o["id"], o["label"], o["score"], a) for o, a in zip(objects, areas)))

    def to_json(self) -> dict:
        return {"stride": self.stride, "frames_done": len(self.done),
                "frame_range": [min(self.done), max(self.done)] if self.done else None,
                "objects": [self.tracks[i].facts(self.stride) for i in sorted(self.tracks)]}


class TimelineWriter:
    """A sink of a run's files (writing.FileWriter): `objects.json` from the frames as they are
    written, the file written when the run closes its outputs."""

    name = OBJECTS

    def __init__(self, out_dir: str | os.PathLike, stride: int = 1):
        self.path = os.path.join(os.fspath(out_dir), self.name)
        self.timeline = Timeline(stride)

    def write(self, frame) -> None:
        """`frame`: a results.EncodedFrame (a RecordFrame: its masks are not decoded)."""
        self.timeline.add(frame.frame_index, zip(frame.obj_ids.tolist(), frame.labels, frame.scores.tolist(),
                                                 frame.areas))

    def close(self) -> None:
        write_timeline(os.path.dirname(self.path), self.timeline.to_json())


def write_timeline(folder: str, facts: dict) -> None:
    """`folder`/objects.json, replaced atomically."""
    path = os.path.join(folder, OBJECTS)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(facts, f, ensure_ascii=False, separators=(",", ":"))
    os.replace(path + ".tmp", path)


class FolderTimeline:
    """The timeline of the run writing (or done writing) `folder`, brought up to date by `update`,
    which reads only the whole lines results.jsonl gained since the last call (thread-safe)."""

    def __init__(self, folder: str | os.PathLike, stride: int | None = None):
        self.folder = os.fspath(folder)
        if stride is None:
            record = read_record(self.folder)
            stride = record.stride if record is not None else 1
        self.timeline = Timeline(stride)
        self._offset = 0
        self._lock = threading.Lock()

    def update(self) -> dict:
        """The facts of every frame in results.jsonl now (a line still being written waits)."""
        with self._lock:
            try:
                with open(os.path.join(self.folder, RESULTS), "rb") as f:
                    f.seek(self._offset)
                    for line in f:
                        if not line.endswith(b"\n"):
                            break
                        self._offset += len(line)
                        if line.strip():
                            try:
                                self.timeline.add_record(json.loads(line))
                            except (ValueError, KeyError, TypeError):
                                continue  # a damaged line shows as a frame not done
            except FileNotFoundError:
                pass
            return self.timeline.to_json()


def read_timeline(folder: str | os.PathLike) -> dict:
    """The per-object facts of the run in `folder`: its objects.json once the run has ended,
    else (running, cut off, or written before objects.json existed) computed from results.jsonl."""
    folder = os.fspath(folder)
    record = read_record(folder)
    if record is not None and record.status != "running":
        try:
            with open(os.path.join(folder, OBJECTS), encoding="utf-8") as f:
                facts = json.load(f)
            if facts.get("frames_done") == record.frames_done:
                return facts
        except (OSError, ValueError, AttributeError):
            pass
    if not os.path.isfile(os.path.join(folder, RESULTS)) and not os.path.isfile(os.path.join(folder, RECORD)):
        raise FileNotFoundError(f"'{folder}' holds no run (no {RESULTS})")
    return FolderTimeline(folder).update()
