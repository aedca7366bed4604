"""Time per frame against frame index on a long clip: does a run get slower as it goes?

    python bench/frame_time.py [--clip tests/data/bikes.mp4] [--loops 10] [--frames 2500] \\
        [--out bench/results/frame-time-cpu.md] [--plot docs/frame-time-cpu.png]

Runs the engine alone (results.jsonl, no overlay or formats) forward through the clip looped
`--loops` times, twice, each in a process of its own with the small random SAM3: once as
transformers keeps its tracking metadata (every frame's scores, every unmatched frame of every
object) and once with `TransformersSession.trim_metadata` on (what the tracker can still read,
sam3_video/backends/transformers.py). Times each model step (`TransformersSession._step`), reports
the median early (frames 250-500) and late (the last 250) and their ratio, compares the two runs'
results frame by frame, and plots both curves. Threshold 0, so that the object cap binds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import child_result, emit, machine, make_long, small_model  # noqa: E402


def child(model: str, clip: str, frames: int, trim: bool, out: str) -> None:
    from sam3_video.backends import load_backend
    from sam3_video.backends import transformers as tb
    from sam3_video.pipeline import run
    from sam3_video.types import RunOptions

    tb.TransformersSession.trim_metadata = trim
    backend = load_backend(model, "transformers", "cpu", "float32")
    times: dict[int, float] = {}
    step = tb.TransformersSession._step

    def timed(self, frame_index, reverse):
        t0 = time.perf_counter()
        step(self, frame_index, reverse)
        times[frame_index] = time.perf_counter() - t0

    tb.TransformersSession._step = timed
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoModel

    planning_times: dict[int, float] = {}
    planning = Sam3VideoModel.run_tracker_update_planning_phase

    def timed_planning(self, inference_session, frame_idx, *args, **kwargs):
        t0 = time.perf_counter()
        out = planning(self, inference_session, frame_idx, *args, **kwargs)
        planning_times[frame_idx] = time.perf_counter() - t0
        return out

    Sam3VideoModel.run_tracker_update_planning_phase = timed_planning
    t0 = time.perf_counter()
    record = run(clip, RunOptions.of(("car", "light"), 0, "forward", frames, 0.0), out, backend=backend, outputs=[])
    emit({"wall_s": time.perf_counter() - t0, "frames": record.frames_done, "times": [times[i] for i in sorted(times)],
          "planning": [planning_times[i] for i in sorted(planning_times)]})


def agreement(a: str, b: str) -> dict:
    """Frames on which the two runs have the same ids and the same masks, and the first that differs."""
    from sam3_video.results import read_results

    same, first_diff, n = 0, None, 0
    for x, y in zip(read_results(a), read_results(b)):
        n += 1
        equal = x.obj_ids.tolist() == y.obj_ids.tolist() and (x.masks == y.masks).all()
        same += bool(equal)
        if not equal and first_diff is None:
            first_diff = x.frame_index
    return {"frames": n, "identical": same, "first_difference": first_diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=os.path.join(REPO, "tests", "data", "bikes.mp4"))
    p.add_argument("--loops", type=int, default=10)
    p.add_argument("--frames", type=int, default=2500)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "frame-time-cpu.md"))
    p.add_argument("--plot", default=os.path.join(REPO, "docs", "frame-time-cpu.png"))
    p.add_argument("--model", default=None)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    model = args.model or small_model()
    if args.child:
        clip, frames, trim, out = args.child
        child(model, clip, int(frames), trim == "1", out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_long(args.clip, tmp, args.loops)
        runs = {}
        for trim in (False, True):
            folder = os.path.join(tmp, f"trim{int(trim)}")
            runs[trim] = child_result([sys.executable, os.path.abspath(__file__), "--model", model, "--child", clip,
                                       str(args.frames), str(int(trim)), folder])
            runs[trim]["folder"] = folder
        agree = agreement(runs[False]["folder"], runs[True]["folder"])
    rows = []
    for trim, r in runs.items():
        t, q = r["times"], r["planning"]
        early, late = statistics.median(t[250:500]) * 1000, statistics.median(t[-250:]) * 1000
        q_early, q_late = statistics.median(q[250:500]) * 1000, statistics.median(q[-250:]) * 1000
        rows.append((trim, early, late, late / early, q_early, q_late, r["wall_s"]))
    lines = [f"# Time per frame against frame index (CPU), {datetime.date.today().isoformat()}", "",
             f"Machine: {machine()}. Small random SAM3, {os.path.basename(args.clip)} looped {args.loops} times, "
             f"forward, {args.frames} frames, phrases 'car, light', threshold 0, engine only. `bench/frame_time.py`.", "",
             "Median milliseconds of the model's step, and of its planning phase (where transformers deep-copies its "
             "tracking metadata), early (frames 250-500) and late (the last 250):", "",
             "| tracking metadata | step, early | step, late | late / early | planning, early | planning, late | wall s |",
             "|---|---|---|---|---|---|---|"]
    for trim, early, late, ratio, q_early, q_late, wall in rows:
        lines.append(f"| {'trimmed (sam3-video)' if trim else 'kept whole (transformers as is)'} | {early:.1f} | "
                     f"{late:.1f} | {ratio:.2f} | {q_early:.2f} | {q_late:.2f} | {wall:.0f} |")
    lines += ["", f"Results of the two runs: {agree['identical']} of {agree['frames']} frames identical (ids and masks)"
              + (f"; first difference at frame {agree['first_difference']}" if agree["first_difference"] is not None else "")
              + ".", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({str(k): {"step": v["times"], "planning": v["planning"]} for k, v in runs.items()}, f)
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -r bench/requirements.txt): no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    k = 25  # running medians, so that the curves are readable
    for trim, r in runs.items():
        name = "trimmed (sam3-video)" if trim else "kept whole (transformers as is)"
        for ax, key in zip(axes, ("times", "planning")):
            t = r[key]
            ax.plot(range(len(t)), [statistics.median(t[max(0, i - k):i + k + 1]) * 1000 for i in range(len(t))],
                    label=name)
    axes[0].set_title("model step")
    axes[1].set_title("its planning phase (metadata deep copies)")
    for ax in axes:
        ax.set_xlabel("frame index")
        ax.set_ylabel("ms (running median of 51)")
        ax.legend()
    fig.suptitle(f"Time per frame, {os.path.basename(args.clip)} x{args.loops}, small SAM3, {machine().split(',')[0]}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
