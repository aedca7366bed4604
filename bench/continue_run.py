"""Fixing a frame late in a run: continuing from it against running again from the start (CPU).

A run of bikes.mp4 (250 frames, "car, light", the small random SAM3, overlay + every format) is
taken as the earlier run. A user finds a mistake on frame K, removes an object there and wants the
rest redone. Two ways, each in the same process with the model loaded once:

  continue   `RunOptions.of(start_frame=K, removed=..., continue_from=earlier)`: frames 0..K-1
             copied from the earlier run (drawn and exported again), K..249 run by the model
  rerun      the same removal made on frame 0 and the whole clip run again (what a tool that
             cannot continue leaves the user to do)

Both write the same outputs. Reported: wall time of each, and the time per copied frame.

    python bench/continue_run.py [--frame 200]      # writes bench/results/continue-cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import machine, save_report, small_model, wait_quiet  # noqa: E402

PROMPT = "car, light"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default=os.path.join(REPO, "tests", "data"))
    p.add_argument("--frame", type=int, default=200, help="the frame to fix (K)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "continue-cpu.md"))
    p.add_argument("--wait-quiet", type=float, default=600)
    args = p.parse_args()
    from sam3_video.backends import load_backend
    from sam3_video.pipeline import run
    from sam3_video.results import read_results
    from sam3_video.types import RunOptions

    clip = os.path.join(args.media, "bikes.mp4")
    backend = load_backend(small_model(), "transformers", "cpu", "float32")
    k = args.frame
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        first = run(clip, RunOptions.of((PROMPT,)), os.path.join(tmp, "earlier"), backend)
        best["earlier run"] = time.perf_counter() - t0
        n = first.frames_done
        on_k = next(r for r in read_results(os.path.join(tmp, "earlier")) if r.frame_index == k)
        victim = int(on_k.obj_ids[0])
        for r in range(args.repeats):
            wait_quiet(args.wait_quiet)
            runs = {
                "continue": RunOptions.of((PROMPT,), k, removed=(victim,), continue_from=os.path.join(tmp, "earlier")),
                "rerun": RunOptions.of((PROMPT,), 0, removed=(victim,)),
            }
            for name, options in runs.items():
                t0 = time.perf_counter()
                summary = run(clip, options, os.path.join(tmp, f"{name}-{r}"), backend)
                wall = time.perf_counter() - t0
                assert summary.complete and summary.frames_done == n, summary
                best[name] = min(wall, best.get(name, wall))
                print(name, round(wall, 2), file=sys.stderr, flush=True)
        # the copied frames alone: a continuation from the last frame runs the model on one frame
        wait_quiet(args.wait_quiet)
        t0 = time.perf_counter()
        run(clip, RunOptions.of((PROMPT,), n - 1, continue_from=os.path.join(tmp, "earlier")), os.path.join(tmp, "copy"),
            backend)
        copy_s = time.perf_counter() - t0
    lines = [
        f"# Continuing from a fixed frame against running again (CPU), {datetime.date.today().isoformat()}", "",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- clip: bikes.mp4, {n} frames, \"{PROMPT}\", small random SAM3, every output; fix: object #{victim} "
        f"removed on frame {k}",
        f"- command: `python bench/continue_run.py {' '.join(sys.argv[1:])}`; best of {args.repeats}", "",
        "| | wall s | frames run by the model |", "|---|---|---|",
        f"| earlier run (frames 0..{n - 1}) | {best['earlier run']:.1f} | {n} |",
        f"| **continue from frame {k}** | **{best['continue']:.1f}** | {n - k} |",
        f"| rerun from frame 0 | {best['rerun']:.1f} | {n} |", "",
        f"Continue / rerun: **{best['continue'] / best['rerun']:.2f}**. Copying the earlier frames (drawn and "
        f"exported again, no model): {copy_s:.1f} s for {n - 1} frames plus one model frame "
        f"({1000 * copy_s / n:.1f} ms a frame).", "",
    ]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
