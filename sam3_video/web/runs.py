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
from dataclasses import dataclass, field, fields, replace

from ..progress import Progress
from ..runfolder import ANNOTATIONS_ZIP, OVERLAY, RunRecord, format_files, read_record
from ..timeline import read_timeline
from ..types import Direction, frame_order
from .handoff import Handoff

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
    """What a running GPU step reports, at least every second: the folder's progress (its counts
    over the frames the folder will hold, `finished` at the end), the latest frame drawn only when
    it changed since the last update (in a file: handoff.py says why), and at the end how the call
    ended. `opened()` is the update as the app uses it, the frame in `progress.preview`."""

    progress: Progress = field(default_factory=Progress)
    preview: Handoff | None = None  # the latest frame drawn, when new, left in a file by the step
    stopped_for: str | None = None  # "request" (Stop, a cancel, a closed tab) or "time" (its GPU time is up)
    error: str | None = None  # a sentence: why the run failed
    # what the call cost, for sizing the next ones (runloop.Sizer): new frames run, seconds of model
    # work on them, and the rest of the call's time so far (worker start, weights, video, detection)
    frames_run: int = 0
    model_s: float = 0.0
    start_s: float | None = None

    def opened(self) -> "RunUpdate":
        """This update with its frame drawn read from its file into `progress.preview`."""
        if self.preview is None:
            return self
        return replace(self, progress=replace(self.progress, preview=self.preview.take_or_none()), preview=None)


@dataclass
class RunSummary:
    """A run's summary for people and API clients. `to_json()` is the dict they get (summary.json,
    `Outputs.summary`, /results, the one-shot call): "status" and "frames" always; the keys read
    from run.json ("frames_expected", "frame_range", "objects_per_label", "seconds") when it
    comes from one; every other key only when it is set."""

    status: str  # run.json's ("complete", "stopped", "failed", "running")
    frames: int  # frames in the outputs
    frames_expected: int | None = None  # None: not from a run.json (then nor are the next three)
    frame_range: list[int] | None = None  # [first, last] frame in the outputs
    objects_per_label: dict[str, int] | None = None
    seconds: float | None = None
    error: str | None = None  # a sentence: what went wrong
    notice: str | None = None  # a sentence from the model's side (the object cap bound)
    gpu_calls: int | None = None  # the app's run: how many GPU calls it took
    covers: list[int] | None = None  # the app's run: [first, last] frame it set out to cover
    stride: int | None = None
    stopped_by: str | None = None  # "you", "the GPU time limit", "the GPU quota", ...
    objects: list[dict] | None = None  # with the files: each object's frames as ranges (objects.json)

    @classmethod
    def of_record(cls, record: RunRecord) -> "RunSummary":
        """What run.json says (a run cut short, or one the app lost track of)."""
        return cls(record.status, record.frames_done, record.frames_expected, record.frame_range,
                   record.objects_per_label, record.elapsed_s, record.error or None, record.notice or None)

    @classmethod
    def from_json(cls, doc: dict) -> "RunSummary":
        """The summary a dict of `to_json`'s keys holds (without a status: "failed", 0 frames)."""
        return cls(**{"status": "failed", "frames": 0, **{k: doc[k] for k in _SUMMARY_KEYS if k in doc}})

    def to_json(self) -> dict:
        recorded = self.frames_expected is not None
        return {k: getattr(self, k) for k in _SUMMARY_KEYS
                if k in ("status", "frames") or (recorded and k in _RECORDED) or getattr(self, k) is not None}

    def line(self) -> str:
        """The summary for people, in one line: 'complete: 39 frames (81-119), 10 objects (5 car,
        5 person), 26 s' ('stopped by you: 20 of 39 frames ...'; a failure ends with its sentence)."""
        status = f"stopped by {self.stopped_by}" if self.status == "stopped" and self.stopped_by else self.status
        frames, expected = self.frames, self.frames_expected
        parts = [f"{frames} of {expected} frames" if expected and expected != frames else
                 f"{frames} frame{'s' if frames != 1 else ''}"]
        if self.frame_range:
            parts[0] += " ({}-{})".format(*self.frame_range)
        if self.objects_per_label:
            total = sum(self.objects_per_label.values())
            parts.append(f"{total} object{'s' if total != 1 else ''} (" +
                         ", ".join(f"{n} {label}" for label, n in self.objects_per_label.items()) + ")")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.0f} s")
        return f"{status}: " + ", ".join(parts) + "".join(f". {said}" for said in (self.error, self.notice) if said)

    @classmethod
    def read(cls, folder: str) -> "RunSummary":
        """The summary of the run in `folder`: the app's own (SUMMARY) once the run ended, else
        what run.json says."""
        try:
            with open(os.path.join(folder, SUMMARY), encoding="utf-8") as f:
                return cls.from_json(json.load(f))
        except (OSError, ValueError, TypeError):
            pass
        record = read_record(folder)
        if record is None:
            return cls("failed", 0, error="The run left no record (run.json); run it again.")
        return cls.of_record(record)

    def write(self, folder: str) -> None:
        tmp = os.path.join(folder, SUMMARY + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, ensure_ascii=False)
        os.replace(tmp, os.path.join(folder, SUMMARY))


_SUMMARY_KEYS = tuple(f.name for f in fields(RunSummary))
_RECORDED = ("frames_expected", "frame_range", "objects_per_label", "seconds")


@dataclass
class Outputs:
    """What a finished (or stopped) run offers: files and a summary for people (a
    `RunSummary.to_json()`, as API clients get it)."""

    overlay: str | None
    annotations_zip: str | None
    files: list[str]
    summary: dict


def summary_of(folder: str) -> dict:
    """The summary of the run in `folder` as API clients get it (`RunSummary.read`)."""
    return RunSummary.read(folder).to_json()


def summary_line(summary: RunSummary | dict) -> str:
    """The summary (or its JSON) for people, in one line (`RunSummary.line`)."""
    return (summary if isinstance(summary, RunSummary) else RunSummary.from_json(summary)).line()


def outputs(folder: str) -> Outputs:
    """The files of the finished run in `folder`: the overlay, annotations.zip, each format; the
    summary with each object's frames (`objects`, as in objects.json)."""
    overlay, zip_path = os.path.join(folder, OVERLAY), os.path.join(folder, ANNOTATIONS_ZIP)
    summary = RunSummary.read(folder)
    try:  # per object, its frames with a mask as ranges (sam3_video/timeline.py)
        summary.objects = read_timeline(folder)["objects"]
    except (OSError, ValueError):
        pass
    return Outputs(overlay if os.path.exists(overlay) else None, zip_path if os.path.exists(zip_path) else None,
                   format_files(folder), summary.to_json())


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
