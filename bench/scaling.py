"""Frames per second and peak memory against video length and object count, with a plot (issue 7).

CPU, the small random SAM3, forward runs writing the overlay and results.jsonl, each run in a
process of its own (peak RSS is per run):

  length   bikes.mp4 looped 1, 2 and 4 times (250, 500, 1000 frames; `-stream_loop -c copy`)
  objects  the first 100 frames of bikes with the model's object cap at 1, 4 and 16 and the
           detection threshold at 0 (random weights find as many objects as the cap allows)

Writes bench/results/scaling-cpu.md and docs/scaling-cpu.png. Needs matplotlib
(`pip install -r bench/requirements.txt`). About 6 minutes on 2 cores.

    python bench/scaling.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import child_result, emit, machine, make_long, small_model  # noqa: E402

LOOPS = (1, 2, 4)
CAPS = (1, 4, 16)


def child(model: str, clip: str, cap: int | None, max_frames: int | None) -> None:
    from sam3_video.backends import load_backend
    from sam3_video.pipeline import run
    from sam3_video.results import read_results
    from sam3_video.types import RunOptions

    backend = load_backend(model, "transformers", "cpu", "float32")
    threshold = None
    if cap is not None:
        backend.model.max_num_objects, threshold = cap, 0.0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = run(clip, RunOptions.of(("car, light",), 0, "forward", max_frames, threshold), out, backend=backend,
                      outputs=["overlay"])
        wall = time.perf_counter() - t0
        objects = [len(r) for r in read_results(out)]
    emit({"frames": summary.frames_done, "fps": summary.frames_done / wall, "objects": sum(objects) / max(1, len(objects)),
          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_child(model: str, clip: str, cap: int | None = None, max_frames: int | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", clip, "--model", model]
    cmd += ["--cap", str(cap)] if cap else []
    return child_result(cmd + (["--max-frames", str(max_frames)] if max_frames else []))


def plot(by_length: list[dict], by_objects: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, rows, key, label in ((axes[0], by_length, "frames", "video length (frames)"),
                                 (axes[1], by_objects, "cap", "objects tracked (the object cap; threshold 0)")):
        xs = [r[key] for r in rows]
        ax.plot(xs, [r["fps"] for r in rows], "o-", color="tab:blue")
        ax.set_xlabel(label)
        ax.set_ylabel("frames per second", color="tab:blue")
        ax.set_ylim(bottom=0)
        twin = ax.twinx()
        twin.plot(xs, [r["peak_rss_mib"] for r in rows], "s--", color="tab:red")
        twin.set_ylabel("peak RSS (MiB)", color="tab:red")
        twin.set_ylim(bottom=0)
    fig.suptitle("sam3-video on a 2-core CPU, small random SAM3, bikes.mp4, overlay + results")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=os.path.join(REPO, "tests", "data", "bikes.mp4"))
    p.add_argument("--model", default=None)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "scaling-cpu.md"))
    p.add_argument("--png", default=os.path.join(REPO, "docs", "scaling-cpu.png"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--cap", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    model = args.model or small_model()
    if args.child:
        child(model, args.child, args.cap, args.max_frames)
        return
    with tempfile.TemporaryDirectory() as tmp:
        clips = {n: args.clip if n == 1 else make_long(args.clip, tmp, n) for n in LOOPS}
        by_length = [run_child(model, clips[n]) for n in LOOPS]
    by_objects = [dict(run_child(model, args.clip, cap, 100), cap=cap) for cap in CAPS]
    lines = [f"# Scaling (CPU), {datetime.date.today().isoformat()}", "", f"- machine: {machine()}",
             f"- small random SAM3 ({os.path.basename(model)}), forward, overlay + results.jsonl, one process per run; "
             "command: `python bench/scaling.py`", "",
             "| run | frames | objects with a mask per frame | frames/s | peak RSS MiB |", "|---|---|---|---|---|"]
    for n, r in zip(LOOPS, by_length):
        lines.append(f"| bikes x{n} | {r['frames']} | {r['objects']:.1f} | {r['fps']:.2f} | {r['peak_rss_mib']:.0f} |")
    for r in by_objects:
        lines.append(f"| object cap {r['cap']}, threshold 0 | {r['frames']} | {r['objects']:.1f} | {r['fps']:.2f} | "
                     f"{r['peak_rss_mib']:.0f} |")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    plot(by_length, by_objects, args.png)
    print(text)


if __name__ == "__main__":
    main()
