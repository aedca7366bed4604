"""video -> session -> FrameResult stream -> sinks, with progress. One pipeline for every door.

`run()` detects on the start frame, propagates, hands each frame's result to every sink as soon
as SAM3 releases it, and keeps `run.json` (the manifest) true at every moment: it says which
frames are done and whether the run finished, stopped or failed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence

from . import __version__
from .backends import Backend, load_backend
from .errors import Sam3VideoError
from .results import ResultsWriter
from .session import VideoSession
from .types import Direction, FrameResult, RunOptions, parse_prompts


class Sink(Protocol):
    """Receives results as they arrive (results file, overlay video, exporters, ...)."""

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


@dataclass
class Progress:
    done: int
    total: int
    elapsed_s: float
    fps: float
    eta_s: float | None
    result: FrameResult | None = None


@dataclass
class RunSummary:
    out_dir: str
    frames_done: int
    frames_expected: int
    status: str  # "complete", "stopped" or "failed"
    elapsed_s: float
    objects_per_label: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.status == "complete"


def run(
    video: str | os.PathLike,
    options: RunOptions,
    out_dir: str | os.PathLike,
    backend: Backend | None = None,
    sinks: Sequence[Sink] = (),
    on_progress: Callable[[Progress], None] | None = None,
    on_session: Callable[[VideoSession], None] | None = None,
) -> RunSummary:
    """Segment one video into `out_dir` (results.jsonl, run.json, plus whatever `sinks` write).

    Errors a user can fix (bad video, missing model, bad options) raise `Sam3VideoError` before
    anything is written; a failure during propagation is recorded in run.json and re-raised
    after the frames done so far are saved.
    """
    out_dir = os.fspath(out_dir)
    backend = backend or load_backend()
    started = time.perf_counter()
    with VideoSession(video, backend) as session:
        if on_session:
            on_session(session)
        prompts = parse_prompts(options.prompts)
        session.detect(options.start_frame, prompts, options.threshold)
        order = session.frames(options.direction, options.start_frame, options.max_frames)
        os.makedirs(out_dir, exist_ok=True)
        writer = ResultsWriter(out_dir)
        all_sinks: list[Sink] = [writer, *sinks]
        manifest = _Manifest(out_dir, session, options, prompts, backend, len(order))
        manifest.save(frames_done=0, status="running")
        ids_per_label: dict[str, set[int]] = {}
        status, error, done = "complete", None, 0
        try:
            for result in session.propagate(options.direction, options.start_frame, options.max_frames):
                for sink in all_sinks:
                    sink.write(result)
                for obj_id, label in zip(result.obj_ids.tolist(), result.labels):
                    ids_per_label.setdefault(label, set()).add(obj_id)
                done += 1
                if on_progress:
                    elapsed = time.perf_counter() - started
                    fps = done / elapsed if elapsed > 0 else 0.0
                    eta = (len(order) - done) / fps if fps > 0 else None
                    on_progress(Progress(done, len(order), elapsed, fps, eta, result))
            if session.stopped and done < len(order):
                status = "stopped"
        except BaseException as err:  # saved frames stay valid; the manifest says what happened
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            error = str(err) if isinstance(err, Sam3VideoError) else f"{type(err).__name__}: {err}"
            raise
        finally:
            for sink in all_sinks:
                sink.close()
            counts = {label: len(ids) for label, ids in sorted(ids_per_label.items())}
            elapsed = time.perf_counter() - started
            manifest.save(frames_done=done, status=status, error=error, objects_per_label=counts, elapsed_s=elapsed)
    return RunSummary(out_dir, done, len(order), status, elapsed, counts, error)


class _Manifest:
    name = "run.json"

    def __init__(self, out_dir, session: VideoSession, options: RunOptions, prompts, backend: Backend, expected: int):
        self.path = os.path.join(out_dir, self.name)
        info = asdict(session.info)
        info.pop("timestamps")
        self.base = {
            "software": f"sam3-video {__version__}",
            "video": info,
            "prompts": list(prompts),
            "start_frame": options.start_frame,
            "direction": options.direction,
            "max_frames": options.max_frames,
            "threshold": options.threshold,
            "model": backend.model_id,
            "backend": backend.name,
            "device": str(backend.device),
            "frames_expected": expected,
            "results": ResultsWriter.name,
        }

    def save(self, **state) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**self.base, **state}, f, indent=2)
        os.replace(tmp, self.path)
