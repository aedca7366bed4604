"""Time to first preview on a 10x longer video (issue 7, bench 2, CPU).

What a visitor waits for before seeing anything useful, on bikes.mp4 (250 frames) and on the same
clip looped 10 times (2500 frames, `-stream_loop -c copy`), each in a fresh process with the
small SAM3 already loaded (as in the app, where the model is loaded once):

  open     `Service.open_video`: probe (every packet's timestamp), limits, the first frame drawn
  detect   `Service.detect` on frame 0: the detections drawn
  first    the first propagated frame's preview from the job (forward, from frame 0)

Ratio = 10x ÷ 1x per step; the issue's target is ≤ 1.2 (peak RSS of whole runs is in
bench/engine.py's results: 1.12).

    python bench/first_preview.py         # about a minute here; writes bench/results/first-preview-cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import child_result, emit, machine, make_long, small_model  # noqa: E402


def child(model: str, clip: str) -> None:
    from sam3_video.progress import Progress
    from sam3_video.web.service import Service

    with tempfile.TemporaryDirectory() as root:
        service = Service(model=model, device="cpu", root=root)  # loads the model now, as the app does
        t0 = time.perf_counter()
        service.open_video("v", clip)
        t_open = time.perf_counter()
        service.detect("v", 0, "car, light", None)
        t_detect = time.perf_counter()
        updates = service.propagate("v", "forward", None)
        next(u for u in updates if isinstance(u, Progress) and u.preview is not None)  # the first frame drawn
        t_first = time.perf_counter()
        service.stop("v")
        for _ in updates:  # to the end: the files are closed
            pass
    emit({"open_s": t_open - t0, "detect_s": t_detect - t_open, "first_s": t_first - t_detect, "total_s": t_first - t0})


def run(model: str, clip: str) -> dict:
    return child_result([sys.executable, os.path.abspath(__file__), "--child", clip, "--model", model])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=os.path.join(REPO, "tests", "data", "bikes.mp4"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "first-preview-cpu.md"))
    p.add_argument("--model", default=None)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    model = args.model or small_model()
    if args.child:
        child(model, args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"1x (250 frames)": args.clip, "10x (2500 frames)": make_long(args.clip, tmp)}
        rows = {name: [] for name in clips}
        for _ in range(args.repeats):
            for name, clip in clips.items():
                rows[name].append(run(model, clip))
    best = {name: {k: min(r[k] for r in runs) for k in runs[0]} for name, runs in rows.items()}
    one, ten = best.values()
    lines = [f"# Time to first preview (CPU), {datetime.date.today().isoformat()}", "",
             f"- machine: {machine()}", f"- small random SAM3 ({os.path.basename(model)}), loaded before timing; "
             f"best of {args.repeats} fresh processes each; command: `python bench/first_preview.py`", "",
             "| video | open s | detect s | first propagated preview s | total s |", "|---|---|---|---|---|"]
    for name, b in best.items():
        lines.append(f"| {name} | {b['open_s']:.2f} | {b['detect_s']:.2f} | {b['first_s']:.2f} | {b['total_s']:.2f} |")
    lines.append(f"| **10x ÷ 1x** | {ten['open_s'] / one['open_s']:.2f} | {ten['detect_s'] / one['detect_s']:.2f} | "
                 f"{ten['first_s'] / one['first_s']:.2f} | {ten['total_s'] / one['total_s']:.2f} |")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
