"""What a SIGKILL in the middle of an answer does to spaces' pipe from a ZeroGPU worker.

spaces sends a worker's answers to the app through its `SimpleQueue` (a multiprocessing pipe,
fork context); when the worker dies, a thread of the app puts None into the same pipe, and its
reader turns that into "GPU task aborted". Here a forked writer puts answers of one size into
spaces' own queue, as fast as the reader takes them, and is SIGKILLed at a random moment; then
None is put as spaces does. A trial "hangs" when the reader has not got the None `--wait` seconds
later: it is waiting for the rest of a message cut off by the kill (spaces' run generator waits 20
minutes, a plain call for ever). Sizes: a run's update now (450 bytes), one with a 176x144
frame drawn (carphone, 76 KB) and one with a 1280x720 frame (2.7 MB), as they were before
web/handoff.py.

    python bench/pipe_kill.py                      # writes bench/results/pipe-kill-cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import queue
import random
import signal
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import machine, save_report  # noqa: E402


def writer(pipe, size: int) -> None:
    answer = {"progress": bytes(size)}
    while True:
        pipe.put(answer)


def trial(size: int, wait_s: float) -> bool:
    """One writer killed at a random moment; True when the reader never got spaces' None."""
    import multiprocessing

    from spaces.utils import SimpleQueue

    pipe: SimpleQueue = SimpleQueue()
    child = multiprocessing.get_context("fork").Process(target=writer, args=(pipe, size), daemon=True)
    child.start()
    got: queue.Queue = queue.Queue()

    def reader() -> None:
        while True:
            try:
                if pipe.get() is None:
                    got.put("none")
                    return
            except Exception as err:  # a message cut and mixed with the None: spaces' thread would die
                got.put(type(err).__name__)
                return

    threading.Thread(target=reader, daemon=True).start()
    time.sleep(random.uniform(0.05, 0.3))
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    pipe.wlock_release()  # as spaces' Worker does once its process has ended
    pipe.put(None)
    try:
        return got.get(timeout=wait_s) != "none"
    except queue.Empty:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "pipe-kill-cpu.md"))
    a = parser.parse_args()
    sizes = {"a run's update now": 450, "with a 176x144 frame (before)": 176 * 144 * 3,
             "with a 1280x720 frame (before)": 1280 * 720 * 3}
    lines = [f"# A worker killed while it answers: spaces' pipe (CPU), {datetime.date.today().isoformat()}", "",
             f"- machine: {machine()}", f"- {a.trials} trials a size; a reader still waiting {a.wait:g} s after "
             "the None counts as hung (bench/pipe_kill.py)", "",
             "| answer | bytes | hung |", "|---|---|---|"]
    for name, size in sizes.items():
        hung = sum(trial(size, a.wait) for _ in range(a.trials))
        lines.append(f"| {name} | {size:,} | {hung} of {a.trials} |")
        print(lines[-1], flush=True)
    save_report(lines, a.out)
    os._exit(0)  # the readers left waiting never end


if __name__ == "__main__":
    main()
