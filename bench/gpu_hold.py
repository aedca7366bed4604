"""GPU hold benchmark: how long a run's GPU calls hold the GPU, every output against MOT boxes only.

The app under spaces' own ZeroGPU code on this CPU (tests/zerogpu: the device API stand-in records
each call from allowed to released), the small random SAM3, the first example: 60 frames of
bikes.mp4 forward from frame 0, "car, light". One app writing every output, one writing MOT only
(`SAM3_APP_OUTPUTS=mot`), one run each, in turn, --repeats times. Reported: the seconds the run's
calls held the GPU (the detection's call aside) and the seconds until the run's answer came.

    python bench/gpu_hold.py                       # writes bench/results/gpu-hold-cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import machine, save_report, small_model, wait_quiet  # noqa: E402


def one(outputs: str, model: str, frames: int, threads: int | None = None) -> tuple[float, float]:
    """(GPU seconds held by the run's calls, seconds until the run's answer) for one run."""
    from gradio_client import Client, handle_file

    from tests.conftest import ZeroApp

    base = tempfile.mkdtemp(prefix="gpu-hold-")
    os.makedirs(os.path.join(base, "tmp"))
    app = ZeroApp(base, {"SAM3_MODEL": model, "SAM3_DEVICE": "cpu", "TMPDIR": os.path.join(base, "tmp"),
                         "ZG_HARDWARE": "blackwell", "SAM3_APP_OUTPUTS": outputs,
                         **({"OMP_NUM_THREADS": str(threads)} if threads else {})}, idle=False)
    try:
        client = Client(app.url, verbose=False)
        client.predict(handle_file(os.path.join(REPO, "assets", "bikes.mp4")), api_name="/open_video")
        client.predict(0, "car, light", "", api_name="/detect")
        started = time.perf_counter()
        summary = client.submit("forward", frames, api_name="/propagate").result(timeout=900)[-1]
        answered = time.perf_counter() - started
        assert summary["status"] == "complete" and summary["frames"] == frames, summary
        releases = [c for c in app.api.calls if c["path"] == "/release"]
        return sum(c["used"] for c in releases[1:]), answered
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads in the app (OMP_NUM_THREADS): 1 leaves the other core to the writers, "
                             "as a GPU leaves the host's cores")
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "gpu-hold-cpu.md"))
    args = parser.parse_args()
    os.chdir(REPO)  # tests/zerogpu/start_app.py runs app.py from here
    model = small_model()
    wait_quiet(60)
    rows = {"mot": [], "all": []}
    for _ in range(args.repeats):
        for outputs in rows:
            rows[outputs].append(one(outputs, model, args.frames, args.threads))
            print(outputs, rows[outputs][-1], flush=True)
    lines = [
        "# GPU held by a run's calls: every output against MOT boxes only (ZeroGPU emulation, CPU)",
        "",
        f"{datetime.date.today()}, {machine()}, Python {platform.python_version()}; "
        f"`{shlex.join(['python', 'bench/gpu_hold.py', *sys.argv[1:]])}`.",
        f"The small random SAM3 on bikes.mp4, {args.frames} frames forward, \"car, light\"; the app under spaces' "
        "zero-mode code (tests/zerogpu), each call's time from allowed to released as the device API recorded it; "
        f"torch's threads: {args.threads or 'its default'}.",
        "",
        "| outputs | GPU held, s (each run) | answer after, s (each run) |",
        "|---|---|---|",
    ]
    for outputs, got in rows.items():
        lines.append(f"| {outputs} | {', '.join(f'{h:.1f}' for h, _ in got)} | {', '.join(f'{a:.1f}' for _, a in got)} |")
    best = {k: min(h for h, _ in v) for k, v in rows.items()}
    lines += ["", f"Best of each: every output holds the GPU {best['all'] / best['mot']:.2f}x as long as MOT only."]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
