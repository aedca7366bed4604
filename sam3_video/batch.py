"""Many videos through the same pipeline on Ray: one machine by default, a cluster when asked.

    python -m sam3_video batch INPUT --prompt "person, car" --out OUT_DIR [--address ray://...]

INPUT is a folder (videos found recursively), a glob, or a manifest (.csv or .jsonl) whose rows
name a `video` (relative to the manifest's folder) and may set `prompt`, `start_frame`,
`direction`, `max_frames`, `threshold` for that video. Each video gets its own folder under
OUT_DIR with the same files as the single-video CLI.

Work is spread over Ray actors, each holding one GPU (or CPUs when there is no GPU) and loading
the model once; videos go to whichever actor is free. A rerun skips videos whose outputs are
complete (checked: manifest status, frame counts, every file present and readable) and redoes
the others; a video that fails is reported with its reason and never stops the batch.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field

from . import runfolder
from .errors import BadRequestError, Sam3VideoError
from .types import RunOptions, parse_prompts

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
SUMMARY = "batch_summary.json"


@dataclass
class VideoJob:
    """One video of the batch: where it is, what to find, where its outputs go."""

    video: str
    out_dir: str
    prompts: tuple[str, ...]
    start_frame: int = 0
    direction: str = "forward"
    max_frames: int | None = None
    threshold: float | None = None

    def options(self) -> RunOptions:
        return RunOptions(self.prompts, self.start_frame, self.direction, self.max_frames,  # type: ignore[arg-type]
                          self.threshold)


@dataclass
class VideoReport:
    video: str
    out_dir: str
    status: str  # "complete", "skipped" (already complete), "failed", "stopped"
    frames: int = 0
    objects_per_label: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    worker: str = ""  # host:pid of the Ray actor that held the model for this video

    @classmethod
    def of(cls, video: str, record: runfolder.RunRecord) -> "VideoReport":
        return cls(video, record.out_dir, record.status, record.frames_done, record.objects_per_label, record.elapsed_s,
                   record.error)


# -- finding the videos --------------------------------------------------------------------------
def collect_jobs(source: str, prompt: str | None, out_root: str, **defaults) -> list[VideoJob]:
    """Turn INPUT (folder, glob or manifest) into jobs with unique output folders."""
    rows: list[dict]
    if os.path.isfile(source) and source.lower().endswith((".csv", ".jsonl")):
        rows = _manifest_rows(source)
    elif os.path.isdir(source):
        rows = [{"video": p} for p in sorted(glob.glob(os.path.join(source, "**", "*"), recursive=True))
                if p.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(p)]
    else:
        rows = [{"video": p} for p in sorted(glob.glob(source, recursive=True)) if os.path.isfile(p)]
    if not rows:
        raise BadRequestError(f"No videos found in '{source}'. Give a folder, a glob such as 'clips/*.mp4', "
                              "or a .csv/.jsonl manifest with a 'video' column.")
    base = os.path.commonpath([os.path.dirname(os.path.abspath(r["video"])) for r in rows])
    jobs, seen = [], set()
    for row in rows:
        phrases = parse_prompts(row.get("prompt") or prompt or "")
        if not phrases:
            raise BadRequestError(f"No prompt for '{row['video']}': pass --prompt or give the manifest a 'prompt' column.")
        rel = os.path.splitext(os.path.relpath(os.path.abspath(row["video"]), base))[0]
        name = rel.replace(os.sep, "__")
        if name in seen:  # clip.mp4 and clip.mov
            name += "__" + os.path.splitext(row["video"])[1].lstrip(".")
        seen.add(name)
        jobs.append(VideoJob(
            video=os.path.abspath(row["video"]), out_dir=os.path.join(out_root, name), prompts=phrases,
            start_frame=int(row.get("start_frame") or defaults.get("start_frame") or 0),
            direction=str(row.get("direction") or defaults.get("direction") or "forward"),
            max_frames=_maybe(int, row.get("max_frames"), defaults.get("max_frames")),
            threshold=_maybe(float, row.get("threshold"), defaults.get("threshold")),
        ))
    return jobs


def _maybe(kind, value, default):
    if value is None or str(value).strip() == "":
        return default
    return kind(value)


def _manifest_rows(path: str) -> list[dict]:
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8", newline="") as f:
        if path.lower().endswith(".csv"):
            rows = list(csv.DictReader(f))
        else:
            rows = [json.loads(line) for line in f if line.strip()]
    for k, row in enumerate(rows, 1):
        if not row.get("video"):
            raise BadRequestError(f"Row {k} of '{os.path.basename(path)}' has no 'video'. Each row needs one.")
        row["video"] = os.path.join(folder, row["video"])  # absolute paths stay as they are
    return rows


# -- is a video done? ----------------------------------------------------------------------------
def is_complete(job: VideoJob, outputs: list[str]) -> bool:
    """Whether `job.out_dir` holds a finished run of exactly this job (checked, not assumed)."""
    from .pipeline import check_outputs

    asked = job.options()
    return runfolder.is_complete(job.out_dir, {"prompts": list(asked.prompts), "start_frame": asked.start_frame,
                                               "direction": asked.direction, "max_frames": asked.max_frames,
                                               "threshold": asked.threshold}, check_outputs(outputs))


# -- the work, on a Ray actor --------------------------------------------------------------------
class Segmenter:
    """Holds one loaded model; segments the videos Ray hands it, one at a time."""

    def __init__(self, model: str, backend: str, device: str, dtype: str):
        from .backends import load_backend

        self.backend, self.load_error = None, None
        try:
            self.backend = load_backend(model, backend, device, dtype)
        except Sam3VideoError as err:  # reported with every video instead of killing the actor
            self.load_error = str(err)

    def segment(self, key: int, job: VideoJob, outputs: list[str]) -> tuple[int, VideoReport]:
        import socket

        report = self._segment(job, outputs)
        report.worker = f"{socket.gethostname()}:{os.getpid()}"
        return key, report

    def _segment(self, job: VideoJob, outputs: list[str]) -> VideoReport:
        from .pipeline import run

        if self.load_error:
            return VideoReport(job.video, job.out_dir, "failed", error=self.load_error)
        started = time.perf_counter()
        shutil.rmtree(job.out_dir, ignore_errors=True)  # a partial run is redone from scratch
        try:
            summary = run(job.video, job.options(), job.out_dir, backend=self.backend, outputs=outputs)
        except Sam3VideoError as err:
            return VideoReport(job.video, job.out_dir, "failed", seconds=time.perf_counter() - started, error=str(err))
        except Exception as err:  # one bad video never stops the batch
            return VideoReport(job.video, job.out_dir, "failed", seconds=time.perf_counter() - started,
                               error=f"{type(err).__name__}: {err}")
        return VideoReport.of(job.video, summary)


def run_batch(jobs: list[VideoJob], out_root: str, model: str, backend: str = "auto", device: str = "auto",
              dtype: str = "auto", outputs: list[str] | None = None, address: str | None = None,
              gpus_per_task: float = 1.0, workers: int | None = None, progress=None) -> list[VideoReport]:
    """Segment every job not already complete on Ray; return one report per job, in job order."""
    import ray

    from .pipeline import check_outputs

    outputs = check_outputs(outputs or ["all"])  # a bad name fails here, before any work
    os.makedirs(out_root, exist_ok=True)
    reports: dict[int, VideoReport] = {}
    todo = []
    for k, job in enumerate(jobs):
        if is_complete(job, outputs):
            reports[k] = VideoReport(job.video, job.out_dir, "skipped")
        else:
            todo.append(k)
    if progress:
        progress(len(reports), len(jobs))
    if todo:
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus > 0 and (device == "auto" or device.startswith("cuda")):
            per_actor = dict(num_gpus=gpus_per_task, num_cpus=1)
            count = min(workers or max(1, int(gpus // gpus_per_task)), len(todo))
        else:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            count = min(workers or max(1, cpus // 2), len(todo))  # torch uses several threads
            # each worker its share of the cores, two at most (Ray gives an actor as many torch threads
            # as CPUs: with one each, half the cores idled and results differed in the last bits)
            per_actor = dict(num_cpus=max(1, min(2, cpus // count)))
            device = "cpu" if device == "auto" else device
        actor = ray.remote(**per_actor)(Segmenter)
        pool = ray.util.ActorPool([actor.remote(model, backend, device, dtype) for _ in range(count)])
        for k, report in pool.map_unordered(lambda a, k: a.segment.remote(k, jobs[k], outputs), todo):
            reports[k] = report
            if progress:
                progress(len(reports), len(jobs), report)
    ordered = [reports[k] for k in range(len(jobs))]
    with open(os.path.join(out_root, SUMMARY), "w", encoding="utf-8") as f:
        json.dump([asdict(r) for r in ordered], f, indent=2, ensure_ascii=False)
    return ordered


def summary_table(reports: list[VideoReport]) -> str:
    """A plain-text table: one row per video, then the totals."""
    rows = [("video", "status", "frames", "objects", "seconds", "reason")]
    for r in reports:
        objects = ", ".join(f"{label}: {n}" for label, n in r.objects_per_label.items())
        rows.append((os.path.basename(r.video), r.status, str(r.frames), objects, f"{r.seconds:.1f}", r.error or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + ("  " + row[5] if row[5] else "")
             for row in rows]
    counts = {s: sum(r.status == s for r in reports) for s in ("complete", "skipped", "failed", "stopped")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(reports)} videos")
    return "\n".join(lines)
