"""Make a valid run folder out of one whose writer was cut off.

A GPU call can end without closing its files: on ZeroGPU the platform kills a worker that runs past
the duration it asked for, and a worker can die. Its folder then holds `results.jsonl` up to the
last frame written (each line is flushed as the frame arrives; a last line cut short is left out)
and a `run.json` that still says "running" (and any other output it wrote is unfinished).
`rewrite` copies the complete results into a new folder, in this process (no model, no GPU), with
the outputs asked for written from them: the frames done are kept, in every format, and `run.json`
says how the run ended. (The web app's GPU calls write results only; its files are written from
them by sam3_video/writing.Follower.)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Sequence

from .continuation import RunFrames
from .export import check_outputs
from .results import ResultsWriter, count_visible
from .runfolder import RunRecord, read_record, write_record
from .types import VideoInfo
from .writing import FileWriter


def frames_in(folder: str | None) -> int:
    """How many frames the results of the run in `folder` hold (0: none, or no such folder)."""
    try:
        return len(RunFrames(folder).offsets) if folder else 0
    except (OSError, ValueError):
        return 0


def rewrite(folder: str, out_dir: str, info: VideoInfo, outputs: Sequence[str], status: str,
            error: str | None = None) -> RunRecord:
    """Write the run in `folder` again into `out_dir`, from its results only: results.jsonl (its
    complete lines, copied), the overlay and the formats in `outputs` (none: the results only),
    run.json with `status` and `error`. Returns the record.

    Raises OSError / Sam3VideoError when `folder` holds no readable results."""
    started = time.perf_counter()
    frames = RunFrames(folder)
    earlier = read_record(folder)
    if earlier is None:
        raise FileNotFoundError(f"no run.json in {folder}")
    order = sorted(frames.offsets)
    wanted = check_outputs(outputs)
    if not order:  # an overlay of no frame is no video
        wanted = [w for w in wanted if w != "overlay"]
    os.makedirs(out_dir, exist_ok=True)
    record = replace(earlier, status="running", frames_done=0, frame_range=None, error=None, out_dir=out_dir)
    write_record(out_dir, record)
    stride = max(1, int(earlier.stride or 1))  # a run of every Nth frame: its frames, N apart
    offset = earlier.start.frame % stride
    results = ResultsWriter(out_dir)
    files = FileWriter(out_dir, wanted, info, earlier.start.phrases, order[0] if order else 0, stride, offset,
                       frames=len(order)) \
        if wanted else None
    ids_per_label: dict[str, set[int]] = {}
    try:
        for line in frames.lines(order):
            frame = json.loads(line)
            results.write(frame, line)
            if files is not None:
                files.write(frame)
            count_visible(frame, ids_per_label)  # counted as a run counts them
    finally:
        results.close()
        record.status, record.error = status, error
        record.frames_done = len(order)
        record.frame_range = [min(order), max(order)] if order else None
        record.objects_per_label = {label: len(ids) for label, ids in sorted(ids_per_label.items())}
        record.elapsed_s = round(earlier.elapsed_s + time.perf_counter() - started, 3)
        failed = files.close(record) if files is not None else None
        write_record(out_dir, record)
    if failed is not None:
        raise failed
    return record
