"""A run's files written from its results, off the model's path.

The model's side of a run writes only what it must: `results.jsonl` (every frame's objects,
lossless) and `run.json`. The overlay video and the annotation formats are written from those
results by a `FileWriter`, which decodes the frames it draws with a video reader of its own:

- `pipeline.run` (the CLI, the batch, the Python API) feeds it in a thread of its own through a
  deep queue of encoded frames (`Background`): the model never waits for a writer, and the run
  returns once every file is final.
- The web app's GPU calls write results only; a `Follower` in the app's process reads each call's
  `results.jsonl` as frames land and writes the files into a folder of its own, then moves them into
  the run's final folder once the last call has ended (sam3_video/web/runloop.py). On ZeroGPU the
  visitor's GPU time buys model work only.

A long job's outputs are shared out between lanes (sam3_video/lanes.py): processes of their own that
each write a share from the same results lines, so that writing uses every core; the `FileWriter`
hands each lane every line and counts a frame written once every lane has.

Writers take only the CPU the model leaves (`lower_priority`: Linux's SCHED_IDLE, else a higher
niceness), so that on a busy machine the model's thread (a GPU's kernel launches, or the model
itself on a CPU) comes first.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import threading
import zlib
from functools import partial
from typing import Callable, Iterator, Sequence

import numpy as np

from . import lanes
from .export import FORMATS, Annotations, Categories, ExportContext
from .overlay import OverlayWriter
from .results import EncodedFrame, RecordFrame
from .runfolder import RESULTS, RunRecord, read_record
from .timeline import TimelineWriter
from .types import VideoInfo
from .video import VideoReader

log = logging.getLogger(__name__)
WRITER_NICE = 10  # added to a writer thread's niceness (Linux: per thread; elsewhere nothing)
FRAME_INDEX = re.compile(rb'\{"frame_index":(\d+),')  # how a results line starts
QUEUE_FRAMES = 2000  # frames a `Background` holds at most (encoded: a few KB each); the model waits beyond


class FileWriter:
    """The overlay (when `wanted` names it), the annotation formats in `wanted` and any `extra`
    sinks of one run folder, written frame by frame from results records; frames are decoded from
    the video by a reader of this writer's own, when a writer needs them.

    `first_frame` is the first frame that will arrive (the overlay starts there); frames after it
    arrive in order upward, then downward below it (pipeline.run's order).

    The overlay and the formats are written by `processes` lanes (lanes.py: processes of their own,
    each a share of the outputs) or, with 0, here; None: as many as `lanes.processes` says for a job
    of `frames` frames (None: not known) on `cores` cores (None: the machine's). The objects'
    timeline and `extra` sinks are written here.
    `part`: this writer is a lane's, writing its share (no timeline; `part_facts` once closed)."""

    def __init__(self, out_dir: str, wanted: Sequence[str], info: VideoInfo, prompts: Sequence[str],
                 first_frame: int, stride: int = 1, offset: int = 0, extra: Sequence = (),
                 processes: int | None = None, frames: int | None = None, part: bool = False,
                 cores: int | None = None):
        self.out_dir, self.info, self.stride, self.offset = out_dir, info, max(1, int(stride)), int(offset)
        self.part = part
        wanted = [name for name in wanted if name == "overlay" or name in FORMATS]
        formats = [name for name in wanted if name in FORMATS]
        if processes is None:
            processes = lanes.processes(wanted, info.size, frames, cores)
        shares = lanes.split(wanted, processes) if processes and not part else []
        mine = [] if shares else wanted  # what this writer writes itself
        needs_image = bool(extra) or "overlay" in mine or any(FORMATS[f].needs_image for f in mine if f in FORMATS)
        self._reader = VideoReader(info.path, info.sampled(self.stride, self.offset)) if needs_image else None
        self.sinks: list = []
        self.lanes: list[lanes.Lane] = []
        self._sent: list[int] = []  # frames handed to every lane, in the order they came
        self._mine_done = 0  # of those, the frames this writer's own sinks were given
        self.part_facts: tuple[dict[str, dict | None], list[str]] = ({}, [])
        self._closed = False
        try:
            if "overlay" in mine:
                self.sinks.append(OverlayWriter(out_dir, info, first_frame, self.frame, self.stride))
            if not part:
                self.sinks.append(TimelineWriter(out_dir, self.stride))  # objects.json: each object's frames
            self.sinks.extend(extra)
            self.context = ExportContext(info, Categories(tuple(prompts)), self.stride, self.offset)
            self.annotations = Annotations(out_dir, formats, self.context, mine=[f for f in mine if f in FORMATS],
                                           clean=not part) if formats else None
            for share in shares:
                self.lanes.append(lanes.Lane(out_dir, share, info, prompts, first_frame, self.stride, self.offset))
        except BaseException:
            self.abort()
            raise

    def frame(self, index: int) -> np.ndarray:
        """The video's frame `index` (the run's stride and offset applied)."""
        assert self._reader is not None
        return self._reader[(index - self.offset) // self.stride]

    @property
    def written(self) -> list[int]:
        """The frames every output has written (or given up on after an error), in the order they came."""
        done = min([self._mine_done] + [lane.acked for lane in self.lanes])
        return self._sent[:done]

    def write(self, frame: dict | EncodedFrame, line: bytes | None = None) -> None:
        """Give one frame (a results record, or an encoded frame) to every sink and lane, even when
        one fails, then raise the first failure. `line`: the record's results line, when the caller
        read it (the lanes get it as it is)."""
        if isinstance(frame, dict):
            frame = RecordFrame(frame, self.info.size, partial(self.frame, int(frame["frame_index"])))
        elif frame._image is None:
            frame._image = partial(self.frame, frame.frame_index)
        calls = [partial(sink.write, frame) for sink in self.sinks]
        if self.annotations is not None:
            calls.append(partial(self.annotations.write, frame))
        if self.lanes:
            line = line or (json.dumps(frame.record, separators=(",", ":")) + "\n").encode("utf-8")
            calls += [partial(lane.send, line) for lane in self.lanes]
            for label, area in zip(frame.labels, frame.areas):  # the manifest's categories, as the lanes number them
                if area:
                    self.context.categories.id_of(label)
        self._sent.append(frame.frame_index)
        first = call_all(calls)
        self._mine_done += 1
        if first is not None:
            raise first

    def settle(self, every_s: float = 0.5) -> Iterator[int]:
        """Wait until every lane has written (or given up on) each frame handed to it, yielding the
        frames written so far at least every `every_s` seconds while it waits."""
        for lane in self.lanes:
            while not lane.wait(len(self._sent), every_s) and lane.error is None and lane.closed is None:
                yield len(self.written)

    def close(self, record: RunRecord | None) -> Exception | None:
        """Close every sink and lane (the annotations last, with the run's `record` as their
        manifest) and return the first error instead of raising it: each file is closed whatever failed."""
        self._closed = True
        first = call_all([sink.close for sink in self.sinks])
        facts: dict[str, dict | None] = {}
        errors: list[str] = []
        for lane in self.lanes:
            lane_facts, lane_errors, error = lane.close()
            facts.update(lane_facts)
            errors += lane_errors
            first = first or error
        if self.annotations is not None:
            if self.part:
                self.part_facts = self.annotations.close_writers()
            else:
                manifest = record.to_json() if record is not None else {}
                mine_facts, mine_errors = self.annotations.close_writers()
                facts.update(mine_facts)
                finish = partial(self.annotations.finish, manifest, facts, errors + mine_errors)
                first = first or call_all([finish])
        self._close_reader()
        return first

    def abort(self) -> None:
        """Stop every lane, close the sinks here (an overlay's encoder) unless closed already and the
        reader: the files as they are, to be deleted."""
        for lane in self.lanes:
            lane.abort()
        if not self._closed:
            self._closed = True
            call_all([sink.close for sink in self.sinks])
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class Background:
    """A `FileWriter` fed through a queue, in a thread of its own at a lower priority: `put`
    returns at once (unless `QUEUE_FRAMES` frames wait). A writer's error stops the writing and is
    raised by the next `put` or by `drain`."""

    def __init__(self, writer: FileWriter, depth: int = QUEUE_FRAMES):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="sam3-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        lower_priority()
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.writer.write(*item)
                except BaseException as err:  # kept for the model's thread; later frames are dropped
                    self.error = err

    @property
    def written(self) -> int:
        return len(self.writer.written)

    def put(self, frame: dict | EncodedFrame, line: bytes | None = None) -> None:
        """Queue `frame` (and its results `line`, when the caller has it: lanes are sent it as it is)."""
        if self.error is not None:
            raise self.error
        self._queue.put((frame, line))

    def drain(self, every_s: float = 0.5) -> Iterator[int]:
        """Wait until every frame put so far is written (idempotent), yielding the frames written
        at least every `every_s` seconds while it waits; then raise a writer's error."""
        if self._thread.is_alive():
            self._queue.put(None)
            while self._thread.is_alive():
                self._thread.join(every_s)
                yield self.written
        yield from self.writer.settle(every_s)  # what the lanes still write
        if self.error is not None:
            raise self.error


class Follower:
    """Writes a run's files from the results that GPU calls write into successive folders, in the
    app's process, into `staging` (a folder of its own); `finish` moves them into the run's final
    folder.

    `follow(folder)` points it at the folder the next call writes; a thread reads that folder's
    `results.jsonl` as lines land (complete lines only) and writes every frame not written yet. A
    call that continues another starts its folder with the frames kept from it: those are skipped
    (they are the same lines). `finish` checks the written frames against the final folder's
    results and writes the files again from them if they differ (a call's redone frame that came
    out otherwise, or a final folder that is not the last one followed)."""

    POLL_S = 0.2

    def __init__(self, staging: str, wanted: Sequence[str], info: VideoInfo):
        self.staging, self.wanted, self.info = staging, list(wanted), info
        os.makedirs(staging, exist_ok=True)
        self._writer: FileWriter | None = None
        self._lines: dict[int, int] = {}  # frame -> crc32 of the results line it was written from
        self._folder: str | None = None
        self._position = 0  # bytes of the followed folder's results.jsonl read so far
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._ended = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="sam3-follower", daemon=True)
        self._thread.start()

    @property
    def written(self) -> int:
        return len(self._lines)

    def follow(self, folder: str) -> None:
        """From now on, read the results that land in `folder` (the GPU call starting now writes it)."""
        with self._lock:
            self._read()  # what the folder followed so far holds, first
            self._folder, self._position = folder, 0
        self._wake.set()

    def _work(self) -> None:
        lower_priority()
        while not self._ended:
            with self._lock:  # one frame at a time: `follow` and `finish` wait for a frame at most
                read = 0 if self._ended else self._read(1)
            if not read:
                self._wake.wait(self.POLL_S)
                self._wake.clear()

    def _read(self, limit: int | None = None) -> int:
        """Write the complete lines of the followed folder's results not read yet (at most `limit`
        frames); return how many lines were read. A writer's error is kept, and ends the writing."""
        if self._folder is None or self.error is not None:
            return 0
        try:
            with open(os.path.join(self._folder, RESULTS), "rb") as f:
                f.seek(self._position)
                lines = 0
                while limit is None or lines < limit:
                    line = f.readline()
                    if not line.endswith(b"\n"):  # nothing more yet, or a line still being written
                        break
                    self._position += len(line)
                    lines += 1
                    if line.strip():
                        self._take(line)
                return lines
        except FileNotFoundError:  # the call has not written its first frame yet
            return 0
        except BaseException as err:
            self.error = err
            return 0

    def _take(self, line: bytes) -> None:
        record = json.loads(line)
        index, crc = int(record["frame_index"]), zlib.crc32(line)
        if index in self._lines:
            if self._lines[index] != crc:
                self._lines[index] = -1  # written from other results than the ones kept: `finish` rewrites
            return
        if self._writer is None:  # the run's phrases and frames, as the folder's run.json says
            self._writer = _writer_for(self.staging, self.wanted, self.info, read_record(self._folder), index)
        self._lines[index] = crc
        self._writer.write(record, line)

    def finish(self, folder: str, record: RunRecord | None, every: int = 10) -> Iterator[tuple[int, int]]:
        """Write what is left of the results of `folder` (the run's final folder, its `record` as
        run.json holds it, None: none readable), close the files and move them into `folder`. Yields (frames written,
        frames in all) as it goes, at least every `every` frames. Raises a writer's error after
        closing every file it could."""
        self._stop()
        try:
            total = _results_lines(folder)
        except OSError:
            total = {}
        if self._folder != folder:
            self._folder, self._position = folder, 0
        if self.error is not None or set(self._lines) - set(total) or any(
                total.get(index) != crc for index, crc in self._lines.items() if index in total):
            self._restart()  # what was written is not what the folder holds: again, from the folder
        yield self._done(), len(total)
        while self._read(every) and self.error is None:
            yield self._done(), len(total)
        if self._writer is not None and self._writer.lanes:
            for _ in self._writer.settle():
                yield self._done(), len(total)
            yield self._done(), len(total)
        if self._writer is None and self.error is None:  # not one frame: the annotation formats, empty
            self._writer = _writer_for(self.staging, [w for w in self.wanted if w != "overlay"], self.info, record, 0)
        close_error = self._writer.close(record) if self._writer is not None else None
        error = self.error or close_error
        if error is None:
            for name in sorted(os.listdir(self.staging)):
                target = os.path.join(folder, name)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                os.replace(os.path.join(self.staging, name), target)
        self.discard()
        if error is not None:
            raise error

    def _done(self) -> int:
        """Frames every output has written (`written` counts the frames taken)."""
        return len(self._writer.written) if self._writer is not None else 0

    def _restart(self) -> None:
        log.info("the files followed differ from the final results: writing them again")
        if self._writer is not None:
            self._writer.abort()
        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging)
        self._writer, self._lines, self._position, self.error = None, {}, 0, None

    def _stop(self) -> None:
        with self._lock:
            self._ended = True
        self._wake.set()
        self._thread.join()

    def discard(self) -> None:
        """Stop following and delete what was written (idempotent)."""
        self._stop()
        if self._writer is not None:
            self._writer.abort()
        shutil.rmtree(self.staging, ignore_errors=True)


def _writer_for(staging: str, wanted: Sequence[str], info: VideoInfo, record: RunRecord | None,
                first_frame: int) -> FileWriter:
    """The files of the run `record` describes (its phrases, stride and start frame), from `first_frame`."""
    if record is None:
        raise FileNotFoundError("the run's folder has results but no run.json")
    stride = max(1, int(record.stride or 1))
    return FileWriter(staging, wanted, info, record.start.phrases, first_frame, stride, record.start.frame % stride,
                      frames=record.frames_expected)


def _results_lines(folder: str) -> dict[int, int]:
    """frame -> crc32 of its line, for the complete lines of `folder`'s results.jsonl (the frame
    read from the line's start, as ResultsWriter writes it: no mask is parsed)."""
    out: dict[int, int] = {}
    with open(os.path.join(folder, RESULTS), "rb") as f:
        for line in f:
            if line.endswith(b"\n") and line.strip():
                start = FRAME_INDEX.match(line)
                index = int(start.group(1)) if start else int(json.loads(line)["frame_index"])
                out[index] = zlib.crc32(line)
    return out


def lower_priority() -> None:
    """Give the calling thread only the CPU the model leaves: Linux's SCHED_IDLE policy (the thread
    runs when a core would otherwise idle; ffmpeg, started from it, inherits it), else its niceness
    raised by WRITER_NICE; elsewhere nothing. On a GPU the model's thread mostly waits for the GPU,
    so the writers still get their time."""
    thread = threading.get_native_id()
    try:
        os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + WRITER_NICE))
    except (AttributeError, OSError):
        pass


def call_all(calls: Sequence[Callable[[], None]]) -> Exception | None:
    """Call each function even when one fails (feeding or closing every sink); return the first error."""
    first = None
    for call in calls:
        try:
            call()
        except Exception as err:
            first = first or err
    return first
