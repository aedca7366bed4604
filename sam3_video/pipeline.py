"""video -> session -> FrameResult stream -> sinks, with progress. One pipeline for every door.

`run()` detects on the start frame, propagates, hands each frame's result to every sink as soon
as SAM3 releases it, and keeps `run.json` (the manifest) true at every moment: it says which
frames are done and whether the run finished, stopped or failed.

What lands in the output folder (see README, "Output"):
    results.jsonl     every frame's objects, lossless (always)
    run.json          the manifest
    overlay.mp4       output "overlay"
    annotations/      the chosen annotation formats + manifest.json, and annotations.zip of it
A stopped or failed run still closes every sink, so each file is valid and covers exactly the
frames that were processed. The overlay and the annotations are written from the results, off the
model's thread (sam3_video/writing.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from typing import Callable, Protocol, Sequence

from . import continuation
from .backends import Backend, load_backend
from .backends.base import effective_thresholds
from .errors import OUT_OF_MEMORY_ADVICE, BadRequestError, OutOfMemoryError, Sam3VideoError, is_out_of_memory
from .export import check_outputs
from .progress import Progress
from .results import EncodedFrame, ResultsWriter, count_visible, frame_to_json
from .runfolder import RunRecord, write_record
from .session import VideoSession
from .types import Direction, RunOptions, ordinal
from .version import __version__
from .video import probe
from .writing import Background, FileWriter, call_all


class Sink(Protocol):
    """Receives each frame as it arrives (results file, overlay video, exporters, ...)."""

    def write(self, frame: EncodedFrame) -> None: ...

    def close(self) -> None: ...


def run(
    video: str | os.PathLike,
    options: RunOptions,
    out_dir: str | os.PathLike,
    backend: Backend | None = None,
    sinks: Sequence[Sink] = (),
    on_progress: Callable[[Progress], None] | None = None,
    on_session: Callable[[VideoSession], None] | None = None,
    outputs: Sequence[str] = ("all",),
    overlap: bool = True,
    writer_cores: int | None = None,
) -> RunRecord:
    """Segment one video into `out_dir`: results.jsonl and run.json, the `outputs` asked for
    ("overlay", annotation format names, or "all"), plus whatever extra `sinks` write.

    Errors a user can fix (bad video, missing model, bad options) raise `Sam3VideoError` before
    anything is written; a failure during propagation is recorded in run.json and re-raised
    after the frames done so far are saved in every output. The model's thread writes results.jsonl
    and run.json; the overlay, the formats and the `sinks` are written from the results by a
    `writing.FileWriter` with a video reader of its own, with `overlap` in a thread of its own that
    the model never waits for (up to `writing.QUEUE_FRAMES` frames behind). The run returns once
    every file is final; while the writers finish, `on_progress` gets `Progress.written`.
    `writer_cores`: the cores the writers' processes may take (lanes.py; None: the machine's).
    Returns the run's record, as run.json holds it at the end.
    """
    out_dir = os.fspath(out_dir)
    wanted = check_outputs(outputs)
    backend = backend or load_backend()
    started = time.perf_counter()
    info = probe(video)
    earlier = None
    start = options.start
    if start.continue_from:
        earlier = continuation.load(start.continue_from, start.frame, options.direction, info)
        if os.path.abspath(earlier.folder) == os.path.abspath(out_dir):
            raise BadRequestError("Write the continued run to a new folder: it reads the earlier run's "
                                  "folder while it writes.")
        if options.stride not in (1, earlier.stride):
            raise BadRequestError(f"The run in '{earlier.folder}' did every {ordinal(earlier.stride)} frame; a "
                                  "continuation keeps its stride, so leave the stride at 1 or give "
                                  f"{earlier.stride}.")
        start = replace(start, phrases=start.phrases or earlier.prompts,  # unless given: the earlier's
                        threshold=earlier.threshold if start.threshold is None else start.threshold)
        options = replace(options, start=start,
                          direction=earlier.direction,  # as given, else the way the earlier run went
                          stride=earlier.stride)  # and on the earlier run's frames
    elif options.direction is None:
        options = replace(options, direction="forward")
    with VideoSession(video, backend, info, stride=options.stride, anchor=start.frame) as session:
        if on_session:
            on_session(session)
        session.replay(start.frame, start.phrases, start.threshold, start.removed, start.edits, earlier)
        direction: Direction = options.direction or "forward"  # set above: the earlier run's, or forward
        order = session.frames(direction, start.frame, options.max_frames)
        kept = earlier.kept if earlier else []  # ascending, all on one side of the start frame
        expected = len(kept) + len(order)
        os.makedirs(out_dir, exist_ok=True)
        record = _record(out_dir, session, options, backend, expected, earlier)
        write_record(out_dir, record)
        # kept frames come first and in order: the overlay starts with them
        results = ResultsWriter(out_dir)  # the model's side writes this (and run.json) only
        files = None
        if wanted or sinks:  # the overlay and the formats: from the results, by a writer of their own
            files = FileWriter(out_dir, wanted, session.info, start.phrases, (kept or order)[0], session.stride,
                               session.model_info.offset, extra=sinks, frames=expected, cores=writer_cores)
        feed = Background(files) if files is not None and overlap else None
        ids_per_label: dict[str, set[int]] = {}
        status, error, done, handed = "complete", None, 0, []

        def hand_over(record: dict, line: bytes | None = None) -> None:
            nonlocal done
            line = results.write(record, line)  # dumped once: the lanes are sent this line
            if feed is not None:
                feed.put(record, line)  # encoded: a few KB a frame wait, never the masks or the pixels
            elif files is not None:
                files.write(record, line)
            count_visible(record, ids_per_label)
            done += 1
            handed.append(int(record["frame_index"]))

        try:
            # The kept frames are frames done: a stop (even one asked before this run began, as
            # between two GPU calls of one app run) ends the run after them, never before. They are
            # the earlier run's lines, copied.
            for line in earlier.frames.lines(kept) if earlier else ():
                hand_over(json.loads(line), line)
            new_started = time.perf_counter()
            # Continued with nothing changed on its start frame (the next GPU call of one run, or a
            # run continued as it was): that frame is the earlier run's, as its files show it.
            same_start = earlier is not None and not start.edits and not start.removed
            for result in () if session.stopped else session.propagate(direction, start.frame, options.max_frames):
                if earlier is not None and same_start and result.frame_index == earlier.frame:
                    line = next(earlier.frames.lines([earlier.frame]))
                    hand_over(json.loads(line), line)
                else:
                    hand_over(frame_to_json(result))
                if on_progress:
                    elapsed = time.perf_counter() - new_started  # the model's pace, kept frames aside
                    fps = (done - len(kept)) / elapsed if elapsed > 0 else 0.0
                    eta = (expected - done) / fps if fps > 0 else None
                    on_progress(Progress(done, expected, fps, eta, time.perf_counter() - started, result=result))
            if session.stopped and done < expected:
                status = "stopped"
        except BaseException as err:  # saved frames stay valid; the manifest says what happened
            status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
            error = str(err) if isinstance(err, Sam3VideoError) else f"{type(err).__name__}: {err}"
            if is_out_of_memory(err):
                error = (f"Ran out of memory on {backend.device} after {done} of {expected} frames; the {done} "
                         f"frames done are saved. {OUT_OF_MEMORY_ADVICE}")
                raise OutOfMemoryError(error) from err
            raise
        finally:
            close_error = None
            if feed is not None:  # every frame handed over is written, however long that takes
                try:
                    for written in feed.drain():
                        if on_progress and written < done:
                            on_progress(Progress(done, expected, elapsed_s=time.perf_counter() - started,
                                                 written=written))
                except Exception as err:
                    close_error = err
            if files is not None and feed is None:
                for _ in files.settle():  # the lanes' last frames
                    pass
            if files is not None and len(files.written) < done:  # a writer failed: only what every output took counts
                done = len(files.written)
                results.keep(done)
            close_error = call_all([results.close]) or close_error
            record.objects_per_label = {label: len(ids) for label, ids in sorted(ids_per_label.items())}
            record.elapsed_s = round(time.perf_counter() - started, 3)
            record.frames_done, record.status, record.error = done, status, error
            record.notice = session.notice
            record.frame_range = [min(handed[:done]), max(handed[:done])] if done else None
            if close_error is not None and error is None:
                record.status, record.error = "failed", f"writing the outputs failed: {close_error}"
            if files is not None:  # always closed, whatever failed before
                files_error = files.close(record)
                if files_error is not None and record.error is None:
                    record.status, record.error = "failed", f"writing the outputs failed: {files_error}"
                close_error = close_error or files_error
            write_record(out_dir, record)
            if close_error is not None and error is None:
                raise close_error
    return record


def _record(out_dir: str, session: VideoSession, options: RunOptions, backend: Backend, expected: int,
            earlier: continuation.EarlierRun | None) -> RunRecord:
    """The new run's record: its settings, nothing done yet."""
    info = asdict(session.info)
    for name in ("timestamps", "step", "offset"):  # the video's own facts only (the stride is the run's)
        info.pop(name)
    thresholds = effective_thresholds(backend.default_thresholds, options.start.threshold)
    continued = None
    if earlier is not None:
        continued = {"folder": os.path.abspath(earlier.folder), "frame": earlier.frame, "frames_kept": len(earlier.kept)}
    start = options.start if earlier is None else replace(options.start, continue_from=os.path.abspath(earlier.folder))
    return RunRecord(video=info, start=start, direction=options.direction,
                     max_frames=options.max_frames, stride=session.stride, thresholds=thresholds, model=backend.model_id,
                     backend=backend.name, device=str(backend.device), frames_expected=expected,
                     postprocessing=backend.postprocessing,
                     software=f"sam3-video {__version__}", continued_from=continued, out_dir=out_dir)
