"""A run's files written by several processes at once: each `Lane` is a process that writes some
of the outputs (the overlay, a few formats) from the same results records.

Writing every format of a 720p frame costs more than one core gives at 30 frames a second, and the
writers are Python that holds the GIL, so threads do not help: lanes do. `FileWriter` (writing.py)
splits the outputs into lanes of about equal cost (`split`), keeping the formats that ship the
frames as JPEG (labelme, COCO, YouTube-VIS) in one lane so that a frame is decoded and encoded
once; it sends each lane every results line, and counts a frame written once every lane has said so.
A lane is started as `python -m sam3_video.lane_main`: no fork of the caller (an app with threads and a
model loaded), nothing of its main module imported again.

The protocol, one line each way at a time: the first line in is the lane's settings (JSON); then a
results line per frame; the end of its input closes the files. Out: `w` after each frame, `e <json
sentence>` when a writer failed (the later frames are not written, as in `writing.Background`), and
`c <json>` when the files are closed (the formats' manifest facts and failures).

How many lanes (`processes`): `SAM3_WRITER_PROCESSES` when set (0: every file in the caller's
thread, as before lanes), else one a core (of the machine, or of a batch worker's share) up to one
an output group, and none for a small job (under `SMALL_JOB` pixels in all), where starting a
process costs more than it saves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict
from typing import Sequence

from .types import VideoInfo

PROCESSES_ENV = "SAM3_WRITER_PROCESSES"
SMALL_JOB = 1280 * 720 * 60  # pixels (frame area x frames) under which the files are written in-process
SHARE_JPEG = ("labelme", "coco", "ytvis")  # ship the frames as JPEG: one lane decodes and encodes them once
#: ms a 720p frame with 10 objects costs each output on the 2-core dev machine (bench/writers.py);
#: the overlay's H.264 encoder runs in a process of its own beside it
COST = {"overlay": 12.0, "cvat": 11.0, "davis": 4.5, "mots": 3.5, "mot": 0.5, "labelme": 12.0, "coco": 3.0,
        "ytvis": 3.0, "jpeg": 12.0}


def processes(wanted: Sequence[str], size: tuple[int, int], frames: int | None, cores: int | None = None) -> int:
    """How many lanes write `wanted` (outputs) for a job of `frames` frames of `size` (height, width);
    0: in the caller's thread. `cores`: the cores this job's writing may use (default: the machine's;
    a batch worker gets its share of a node's spare cores)."""
    groups = len(units(wanted))
    setting = os.environ.get(PROCESSES_ENV, "").strip()
    if setting:
        try:
            count = int(setting)
        except ValueError:
            raise ValueError(f"{PROCESSES_ENV} must be a whole number of processes (0: none), not {setting!r}") from None
        return max(0, min(count, groups))
    if frames is not None and size[0] * size[1] * frames < SMALL_JOB:
        return 0
    return min(groups, max(1, cores or os.cpu_count() or 1))


def units(wanted: Sequence[str]) -> list[tuple[str, ...]]:
    """The outputs in groups that stay in one lane: the JPEG-shipping formats together, the rest alone."""
    jpeg = tuple(name for name in wanted if name in SHARE_JPEG)
    return ([jpeg] if jpeg else []) + [(name,) for name in wanted if name not in SHARE_JPEG]


def cost(unit: Sequence[str]) -> float:
    shared = COST["jpeg"] if any(name in SHARE_JPEG for name in unit) else 0.0
    return shared + sum(COST.get(name, 1.0) for name in unit)


def split(wanted: Sequence[str], count: int) -> list[list[str]]:
    """`wanted` in `count` lanes (fewer when there are fewer groups) of about equal cost: the dearest
    group first, each to the cheapest lane so far. Each lane keeps the outputs' order."""
    lanes: list[list[str]] = [[] for _ in range(max(1, count))]
    loads = [0.0] * len(lanes)
    for unit in sorted(units(wanted), key=cost, reverse=True):
        k = loads.index(min(loads))
        lanes[k] += unit
        loads[k] += cost(unit)
    return [[name for name in wanted if name in lane] for lane in lanes if lane]


class Lane:
    """One process writing `wanted` (a share of a run's outputs) into `out_dir`; see the module."""

    def __init__(self, out_dir: str, wanted: Sequence[str], info: VideoInfo, prompts: Sequence[str],
                 first_frame: int, stride: int, offset: int):
        self.wanted = list(wanted)
        self.acked = 0  # frames the lane has written (or given up on after an error)
        self.error: Exception | None = None
        self.closed: dict | None = None  # what the lane said when it closed its files
        self._changed = threading.Condition()
        self._stderr = tempfile.TemporaryFile()
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        self._proc = subprocess.Popen([sys.executable, "-m", "sam3_video.lane_main"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        settings = {"out_dir": out_dir, "wanted": self.wanted, "info": asdict(info), "prompts": list(prompts),
                    "first_frame": int(first_frame), "stride": int(stride), "offset": int(offset)}
        self._reader = threading.Thread(target=self._listen, name="sam3-lane", daemon=True)
        self._reader.start()
        self._send(json.dumps(settings).encode("utf-8") + b"\n")

    def _listen(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with self._changed:
                if line == b"w\n":
                    self.acked += 1
                elif line.startswith(b"e "):
                    self.error = RuntimeError(json.loads(line[2:]))
                elif line.startswith(b"c "):
                    self.closed = json.loads(line[2:])
                self._changed.notify_all()
        code = self._proc.wait()
        with self._changed:
            if self.closed is None and self.error is None:
                self.error = RuntimeError(f"the process writing {', '.join(self.wanted)} ended (exit code {code})"
                                          f"{self._stderr_tail()}")
            self._changed.notify_all()

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        return f": {tail.splitlines()[-1]}" if tail else ""

    def _send(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._reader.join()  # the lane is gone: its reader has the reason
            raise self.error or RuntimeError(f"the process writing {', '.join(self.wanted)} is gone")

    def send(self, line: bytes) -> None:
        """Hand the lane a results line (waits while the lane's input pipe is full)."""
        if self.error is not None:
            raise self.error
        self._send(line)

    def wait(self, frames: int, timeout: float | None = None) -> bool:
        """Wait until the lane has written `frames` frames, failed or ended; whether it got there."""
        with self._changed:
            self._changed.wait_for(lambda: self.acked >= frames or self.error is not None or not self._reader.is_alive(),
                                   timeout)
            return self.acked >= frames

    def close(self) -> tuple[dict[str, dict | None], list[str], Exception | None]:
        """Close the lane's files (after every frame sent): each format's manifest facts, the formats
        that failed, and the lane's first other error."""
        try:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                self._proc.stdin.close()
        except OSError:
            pass
        self._reader.join()
        self._stderr.close()
        closed = self.closed or {}
        error = self.error
        if error is None and closed.get("error"):
            error = RuntimeError(closed["error"])
        return closed.get("facts", {}), list(closed.get("errors", [])), error

    def abort(self) -> None:
        """Stop the lane now, its files as they are."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._reader.join()
        self._stderr.close()
