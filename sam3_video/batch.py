"""Many videos through the same pipeline on Ray: one machine by default, a cluster when asked.

    python -m sam3_video batch INPUT --prompt "person, car" --out OUT_DIR [--address ray://...]

INPUT is a folder (videos found recursively), a glob, or a manifest (.csv or .jsonl) whose rows
name a `video` (relative to the manifest's folder) and may set `prompt`, `start_frame`,
`direction`, `max_frames`, `threshold`, and `stride` or `target_fps`, for that video. Each video
gets its own folder under OUT_DIR with the same files as the single-video CLI.

Work is spread over Ray actors, each holding one GPU (or CPUs when there is no GPU) and loading
the model once; videos go to whichever actor is free (`cluster.py`: code shipped to the nodes,
nodes checked, workers placed, a video whose worker or node is lost redone elsewhere). A rerun
skips videos whose outputs are complete (checked: manifest status, frame counts, every file
present and readable) and redoes the others; a video that fails is reported with its reason and
never stops the batch.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import asdict

from . import runfolder
from .batchjob import VideoJob, VideoReport
from .errors import BadRequestError, Sam3VideoError
from .export import check_outputs
from .types import parse_prompts

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv")
SUMMARY = "batch_summary.json"


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
    for k, row in enumerate(rows, 1):
        phrases = parse_prompts(row.get("prompt") or prompt or "")
        if not phrases:
            raise BadRequestError(f"No prompt for '{row['video']}': pass --prompt or give the manifest a 'prompt' column.")
        rel = os.path.splitext(os.path.relpath(os.path.abspath(row["video"]), base))[0]
        name = rel.replace(os.sep, "__")
        if name in seen:  # clip.mp4 and clip.mov
            name += "__" + os.path.splitext(row["video"])[1].lstrip(".")
        unique, n = name, 1
        while unique in seen:  # the same video twice in a manifest (two ranges, two prompts)
            n += 1
            unique = f"{name}__{n}"
        name = unique
        seen.add(name)
        jobs.append(VideoJob(
            video=os.path.abspath(row["video"]), out_dir=os.path.join(out_root, name), prompts=phrases,
            start_frame=int(row.get("start_frame") or defaults.get("start_frame") or 0),
            direction=str(row.get("direction") or defaults.get("direction") or "forward"),
            max_frames=_maybe(int, row.get("max_frames"), defaults.get("max_frames")),
            threshold=_maybe(float, row.get("threshold"), defaults.get("threshold")),
            **_sampling(row, defaults, k),
        ))
    return jobs


def _sampling(row: dict, defaults: dict, k: int) -> dict:
    """A row's `stride` or `target_fps` (either replaces both defaults), else the defaults."""
    if _maybe(str, row.get("stride"), None) is None and _maybe(str, row.get("target_fps"), None) is None:
        row = defaults
    stride, target = _maybe(float, row.get("stride"), 1), _maybe(float, row.get("target_fps"), None)
    if stride != 1 and target is not None:
        raise BadRequestError(f"Row {k} sets both a stride and a target frame rate; give one of them.")
    return {"stride": int(stride) if float(stride).is_integer() else stride, "target_fps": target}


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
    try:
        asked = job.options()
    except Sam3VideoError:  # a video that cannot be probed is not done; its run says why
        return False
    start = asked.start
    return runfolder.is_complete(job.out_dir, {"prompts": list(start.phrases), "start_frame": start.frame,
                                               "direction": asked.direction, "max_frames": asked.max_frames,
                                               "threshold": start.threshold, "stride": asked.stride},
                                 check_outputs(outputs))


# -- the batch -----------------------------------------------------------------------------------
def run_batch(jobs: list[VideoJob], out_root: str, model: str, backend: str = "auto", device: str = "auto",
              dtype: str = "auto", outputs: list[str] | None = None, address: str | None = None,
              gpus_per_task: float = 1.0, workers: int | None = None, progress=None,
              ship_code: bool = True) -> list[VideoReport]:
    """Segment every job not already complete on Ray; return one report per job, in job order.

    `progress`, if given, is called with a `cluster.ClusterProgress` at the start, as frames are
    done (about twice a second per video) and as each video ends. With `ship_code` (and no Ray
    connection yet) the workers run this package as the driver has it; every node that will hold
    workers is checked first (its code, and that it sees the inputs and `out_root`).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from . import cluster

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
        progress(cluster.ClusterProgress(len(reports), len(jobs), 0))
    if todo:
        cluster.connect(address, ship_code)
        nodes = cluster.alive_nodes()
        use_gpus = any(n.gpus for n in nodes) and (device == "auto" or device.startswith("cuda"))
        if not use_gpus:
            device = "cpu" if device == "auto" else device
        slots = cluster.plan_workers(nodes, len(todo), use_gpus, gpus_per_task, workers)
        if not slots:
            raise BadRequestError("The Ray cluster has no node with a CPU for the workers. Start one "
                                  "(ray start --address ... --num-cpus N) or point --address at another cluster.")
        hosts = {s.node for s in slots if s.node} or {n.id for n in nodes if (n.gpus if use_gpus else n.cpus)}
        inputs = [jobs[k].video for k in todo] + ([os.path.abspath(model)] if os.path.exists(model) else [])
        cluster.check_nodes([n for n in nodes if n.id in hosts], inputs, os.path.abspath(out_root))
        actor = ray.remote(max_restarts=0)(cluster.Segmenter)
        cores = cluster.writer_cores([n for n in nodes if n.id in hosts], slots)

        def spawn(slot: cluster.Slot):
            strategy = NodeAffinitySchedulingStrategy(slot.node, soft=True) if slot.node else "DEFAULT"
            return actor.options(num_cpus=slot.cpus, num_gpus=slot.gpus, scheduling_strategy=strategy).remote(
                model, backend, device, dtype, cores)

        cluster.Scheduler(jobs, outputs, spawn, progress).run(todo, slots, reports)
    ordered = [reports[k] for k in range(len(jobs))]
    with open(os.path.join(out_root, SUMMARY), "w", encoding="utf-8") as f:
        json.dump([asdict(r) for r in ordered], f, indent=2, ensure_ascii=False)
    return ordered


def summary_table(reports: list[VideoReport]) -> str:
    """A plain-text table: one row per video (its node when the batch used several), then the totals."""
    nodes = {r.node for r in reports if r.node}
    head = ("video", "status", "frames", "objects", "seconds") + (("node",) if len(nodes) > 1 else ())
    rows = [head + ("reason",)]
    for r in reports:
        objects = ", ".join(f"{label}: {n}" for label, n in r.objects_per_label.items())
        notes = "; ".join(([r.error] if r.error else []) + [f"retried: {why}" for why in r.retries])
        rows.append((os.path.basename(r.video), r.status, str(r.frames), objects, f"{r.seconds:.1f}")
                    + ((r.node[:8],) if len(nodes) > 1 else ()) + (notes,))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + ("  " + row[-1] if row[-1] else "")
             for row in rows]
    counts = {s: sum(r.status == s for r in reports) for s in ("complete", "skipped", "failed", "stopped")}
    retried = sum(bool(r.retries) for r in reports)
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f" of {len(reports)} videos"
                 + (f" ({retried} redone after a lost worker)" if retried else ""))
    return "\n".join(lines)
