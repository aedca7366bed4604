"""A run's folder is the record of the run: what the page offers after it, what Stop talks to,
and how a run too long for one GPU call is split into calls.

- `request_stop` leaves a file in the folder; the GPU step that writes the folder checks for it
  after every frame, wherever it runs (a thread here, a ZeroGPU worker process), and stops.
- `outputs` reads the files and the run's record (runfolder.py, never an object in memory):
  /results, the end of a run and the page after a reload all see the same thing.
- `Plan` says which frames a run covers and, when a call stopped at the end of its GPU time,
  which call comes next: forward from the last frame done until the forward part is complete,
  then backward from the first frame done, each call continuing the folder of the one before
  (sam3_video/continuation.py), so that the last folder holds the whole run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from ..runfolder import ANNOTATIONS_ZIP, OVERLAY, format_files, read_record
from ..timeline import read_timeline
from ..types import Direction, frame_order

STOP_REQUEST = "stop.request"  # present: the visitor asked the run in this folder to stop
SUMMARY = "summary.json"  # the visitor's summary, written by the app when the run's last call ended


def request_stop(folder: str | None) -> None:
    """Ask the run writing `folder` to stop after its current frame (nothing if there is none)."""
    if folder and os.path.isdir(folder):
        with open(os.path.join(folder, STOP_REQUEST), "w"):
            pass


def stop_requested(folder: str) -> bool:
    return os.path.exists(os.path.join(folder, STOP_REQUEST))


@dataclass
class RunUpdate:
    """What a running GPU step reports, at least every second: the run's counts, the latest frame
    drawn (only when it changed since the last update), and at the end how it ended."""

    done: int = 0  # frames in the folder's outputs so far (an earlier run's kept frames included)
    total: int | None = None  # frames the folder will hold when complete (None: not known yet)
    fps: float = 0.0  # frames per second of the model, kept frames aside
    preview: np.ndarray | None = None
    finished: bool = False
    stopped_for: str | None = None  # "request" (Stop, a cancel, a closed tab) or "time" (its GPU time is up)
    error: str | None = None  # a sentence: why the run failed
    # what the call cost, for sizing the next ones (runloop.Sizer): new frames run, seconds of model
    # work on them, and the rest of the call's time so far (worker start, weights, video, detection)
    frames_run: int = 0
    model_s: float = 0.0
    start_s: float | None = None


@dataclass
class Outputs:
    """What a finished (or stopped) run offers: files and a summary for people."""

    overlay: str | None
    annotations_zip: str | None
    files: list[str]
    summary: dict


def summary_of(folder: str) -> dict:
    """The summary of the run in `folder` for people and API clients: the app's own (SUMMARY)
    once the run ended, else what run.json says (a run cut short, or one the app lost track of)."""
    try:
        with open(os.path.join(folder, SUMMARY), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    record = read_record(folder)
    if record is None:
        return {"status": "failed", "frames": 0, "error": "The run left no record (run.json); run it again."}
    summary = {"status": record.status, "frames": record.frames_done, "frames_expected": record.frames_expected,
               "frame_range": record.frame_range, "objects_per_label": record.objects_per_label,
               "seconds": record.elapsed_s}
    if record.error:
        summary["error"] = record.error
    if record.notice:
        summary["notice"] = record.notice
    return summary


def summary_line(summary: dict) -> str:
    """The summary for people, in one line: 'complete: 39 frames (81-119), 10 objects (5 car, 5
    person), 26 s' ('stopped by you: 20 of 39 frames ...'; a failure ends with its sentence)."""
    status = summary.get("status", "failed")
    if status == "stopped" and summary.get("stopped_by"):
        status = f"stopped by {summary['stopped_by']}"
    frames, expected = summary.get("frames", 0), summary.get("frames_expected")
    parts = [f"{frames} of {expected} frames" if expected and expected != frames else
             f"{frames} frame{'s' if frames != 1 else ''}"]
    if summary.get("frame_range"):
        parts[0] += " ({}-{})".format(*summary["frame_range"])
    per_label = summary.get("objects_per_label") or {}
    if per_label:
        total = sum(per_label.values())
        parts.append(f"{total} object{'s' if total != 1 else ''} (" +
                     ", ".join(f"{n} {label}" for label, n in per_label.items()) + ")")
    if summary.get("seconds") is not None:
        parts.append(f"{summary['seconds']:.0f} s")
    line = f"{status}: " + ", ".join(parts)
    return line + "".join(f". {summary[k]}" for k in ("error", "notice") if summary.get(k))


def write_summary(folder: str, summary: dict) -> None:
    tmp = os.path.join(folder, SUMMARY + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    os.replace(tmp, os.path.join(folder, SUMMARY))


def outputs(folder: str) -> Outputs:
    """The files of the finished run in `folder`: the overlay, annotations.zip, each format; the
    summary with each object's frames (`objects`, as in objects.json)."""
    overlay, zip_path = os.path.join(folder, OVERLAY), os.path.join(folder, ANNOTATIONS_ZIP)
    summary = summary_of(folder)
    try:  # per object, its frames with a mask as ranges (sam3_video/timeline.py)
        summary["objects"] = read_timeline(folder)["objects"]
    except (OSError, ValueError):
        pass
    return Outputs(overlay if os.path.exists(overlay) else None, zip_path if os.path.exists(zip_path) else None,
                   format_files(folder), summary)


@dataclass(frozen=True)
class Leg:
    """One GPU call's part of a run: continue from `frame` in `direction`, `max_frames` frames."""

    frame: int
    direction: Direction
    max_frames: int


@dataclass(frozen=True)
class Plan:
    """The frames a run covers, `first` to `last` every `stride`-th frame, whatever its direction
    and however many GPU calls it takes; `total` of them (an earlier run's kept frames included).
    `kept` of them come from an earlier run (they are written first), then the new ones in
    `parts`: (direction, frames) in the order they are done, forward before backward."""

    first: int
    last: int
    kept: int = 0
    parts: tuple[tuple[str, int], ...] = ()
    stride: int = 1

    @property
    def total(self) -> int:
        return (self.last - self.first) // self.stride + 1

    @classmethod
    def of(cls, num_frames: int, start: int, direction: Direction, max_frames: int | None,
           kept: list[int] | tuple[int, ...] = (), stride: int = 1) -> "Plan":
        new = frame_order(num_frames, start, direction, max_frames, stride)
        frames = new + list(kept)
        forward = sum(1 for f in new if f >= start) if direction == "both" else len(new)
        parts = ((direction if direction != "both" else "forward", forward), ("backward", len(new) - forward))
        return cls(min(frames), max(frames), len(kept), tuple(p for p in parts if p[1] > 0), stride)

    @property
    def new(self) -> int:
        """Frames the model does (the kept ones aside)."""
        return sum(n for _, n in self.parts)

    def phases(self, done: int) -> str:
        """Where a run that has written `done` frames stands, by phase: 'forward 20/20 · backward
        1/19' (a continued run starts with 'kept 5 · ')."""
        new = max(0, done - self.kept)
        said = [f"kept {self.kept}"] if self.kept else []
        for name, n in self.parts:
            said.append(f"{name} {min(new, n)}/{n}")
            new = max(0, new - n)
        return " · ".join(said)

    def next_leg(self, done: tuple[int, int] | list[int] | None, stride: int | None = None) -> Leg | None:
        """The call after one that stopped at the end of its time, given the frames its folder
        holds (`done`: first and last, every `stride`-th frame without a gap), or None when the
        run is complete."""
        if not done:
            return None
        step = self.stride if stride is None else max(1, int(stride))
        lo, hi = int(done[0]), int(done[1])
        if hi + step <= self.last:
            return Leg(hi, "forward", (self.last - hi) // step + 1)
        if lo - step >= self.first:
            return Leg(lo, "backward", (lo - self.first) // step + 1)
        return None
