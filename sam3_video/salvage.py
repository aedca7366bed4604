"""Make a valid run folder out of one whose writer was cut off.

A GPU call can end without closing its files: on ZeroGPU the platform kills a worker that runs past
the duration it asked for, and a worker can die. Its folder then holds `results.jsonl` up to the
last frame written (each line is flushed as the frame arrives; a last line cut short is left out)
and a `run.json` that still says "running", while the overlay and the annotations are unfinished.
`rewrite` writes every output again from `results.jsonl`, in this process (no model, no GPU), into
a new folder: the frames done are kept, in every format, and `run.json` says how the run ended.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Sequence

from .continuation import RunFrames
from .pipeline import check_outputs, open_outputs, write_all
from .results import EncodedFrame
from .runfolder import RunRecord, read_record, write_record
from .types import VideoInfo
from .video import VideoReader


def frames_in(folder: str | None) -> int:
    """How many frames the results of the run in `folder` hold (0: none, or no such folder)."""
    try:
        return len(RunFrames(folder).offsets) if folder else 0
    except (OSError, ValueError):
        return 0


def rewrite(folder: str, out_dir: str, info: VideoInfo, outputs: Sequence[str], status: str,
            error: str | None = None) -> RunRecord:
    """Write the run in `folder` again into `out_dir`, from its results only: results.jsonl, the
    overlay and the formats in `outputs`, run.json with `status` and `error`. Returns the record.

    Raises OSError / Sam3VideoError when `folder` holds no readable results."""
    started = time.perf_counter()
    frames = RunFrames(folder)
    earlier = read_record(folder)
    if earlier is None:
        raise FileNotFoundError(f"no run.json in {folder}")
    indices = sorted(frames.offsets)
    wanted = check_outputs(outputs)
    os.makedirs(out_dir, exist_ok=True)
    record = replace(earlier, status="running", frames_done=0, frame_range=None, error=None, out_dir=out_dir)
    write_record(out_dir, record)
    stride = max(1, int(earlier.stride or 1))  # a run of every Nth frame: its frames, N apart
    offset = int(earlier.start_frame or 0) % stride
    with VideoReader(info.path, info.sampled(stride, offset)) as reader:
        def frame(index: int):
            return reader[(index - offset) // stride]

        sinks, annotations = open_outputs(out_dir, wanted if indices else [w for w in wanted if w != "overlay"],
                                          info, earlier.prompts, indices[0] if indices else 0, frame, stride, offset)
        ids_per_label: dict[str, set[int]] = {}
        try:
            for result in frames.read(indices, info.height, info.width):
                write_all(sinks + ([annotations] if annotations else []),
                          EncodedFrame(result, lambda i=result.frame_index: frame(i)))
                for obj_id, label in zip(result.obj_ids.tolist(), result.labels):  # counted as a run counts them
                    ids_per_label.setdefault(label, set()).add(obj_id)
        finally:
            for sink in sinks:
                sink.close()
            record.status, record.error = status, error
            record.frames_done = len(indices)
            record.frame_range = [indices[0], indices[-1]] if indices else None
            record.objects_per_label = {label: len(ids) for label, ids in sorted(ids_per_label.items())}
            record.elapsed_s = round(earlier.elapsed_s + time.perf_counter() - started, 3)
            if annotations is not None:
                annotations.close(record.to_json())
            write_record(out_dir, record)
    return record
