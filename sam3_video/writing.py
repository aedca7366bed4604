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
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property, partial
from typing import Callable, Iterator, Sequence

import numpy as np

from .export import FORMATS, Annotations, Categories, ExportContext
from .overlay import OverlayWriter
from .results import EncodedFrame, frame_from_json
from .runfolder import RESULTS, RunRecord, read_record
from .timeline import TimelineWriter
from .types import FrameResult, VideoInfo
from .video import VideoReader

log = logging.getLogger(__name__)
WRITER_NICE = 10  # added to a writer thread's niceness (Linux: per thread; elsewhere nothing)
FRAME_INDEX = re.compile(rb'\{"frame_index":(\d+),')  # how a results line starts
QUEUE_FRAMES = 2000  # frames a `Background` holds at most (encoded: a few KB each); the model waits beyond


class RecordFrame(EncodedFrame):
    """A frame as `results.jsonl` holds it (`record`): its masks are decoded only when a writer asks,
    and its run-length encodings are the record's own (never encoded again)."""

    def __init__(self, record: dict, size: tuple[int, int], image: Callable[[], np.ndarray] | None = None):
        self.record, self._size = record, size
        self._image = image

    @property
    def frame_index(self) -> int:
        return int(self.record["frame_index"])

    @cached_property
    def result(self) -> FrameResult:  # type: ignore[override]
        return frame_from_json(self.record, *self._size)

    @cached_property
    def rles(self) -> list[dict]:
        return [o["mask"] for o in self.record["objects"]]


class FileWriter:
    """The overlay (when `wanted` names it), the annotation formats in `wanted` and any `extra`
    sinks of one run folder, written frame by frame from results records; frames are decoded from
    the video by a reader of this writer's own, when a writer needs them.

    `first_frame` is the first frame that will arrive (the overlay starts there); frames after it
    arrive in order upward, then downward below it (pipeline.run's order)."""

    def __init__(self, out_dir: str, wanted: Sequence[str], info: VideoInfo, prompts: Sequence[str],
                 first_frame: int, stride: int = 1, offset: int = 0, extra: Sequence = (),
                 parallel: bool | None = None):
        self.out_dir, self.info, self.stride, self.offset = out_dir, info, max(1, int(stride)), int(offset)
        formats = [name for name in wanted if name in FORMATS]
        needs_image = bool(extra) or "overlay" in wanted or any(FORMATS[f].needs_image for f in formats)
        self._reader = VideoReader(info.path, info.sampled(self.stride, self.offset)) if needs_image else None
        self.sinks: list = []
        try:
            if "overlay" in wanted:
                self.sinks.append(OverlayWriter(out_dir, info, first_frame, self.frame, self.stride))
            self.sinks.append(TimelineWriter(out_dir, self.stride))  # objects.json: each object's frames
            self.sinks.extend(extra)
            context = ExportContext(info, Categories(tuple(prompts)), self.stride, self.offset)
            self.annotations = Annotations(out_dir, formats, context) if formats else None
        except BaseException:
            self._close_reader()
            raise
        self.written: list[int] = []  # frames every sink was given, in the order they came
        # each sink (the overlay, each format, ...) writes a frame in a thread of its own, all of a
        # frame before the next: a frame costs its slowest writer, not the sum (cv2, pycocotools,
        # zlib and the H.264 encoder work outside the GIL); None: when the machine has 2 cores or more
        self._units = self.sinks + (list(self.annotations.writers.values()) if self.annotations is not None else [])
        if parallel is None:
            parallel = (os.cpu_count() or 1) > 1
        self._pool = ThreadPoolExecutor(len(self._units), "sam3-writer", lower_priority) \
            if parallel and len(self._units) > 1 else None

    def frame(self, index: int) -> np.ndarray:
        """The video's frame `index` (the run's stride and offset applied)."""
        assert self._reader is not None
        return self._reader[(index - self.offset) // self.stride]

    def write(self, frame: dict | EncodedFrame) -> None:
        """Give one frame (a results record, or an encoded frame) to every sink, even when one
        fails, then raise the first failure."""
        if isinstance(frame, dict):
            frame = RecordFrame(frame, self.info.size, partial(self.frame, int(frame["frame_index"])))
        elif frame._image is None:
            frame._image = partial(self.frame, frame.frame_index)
        first: BaseException | None
        if self._pool is None:
            sinks = self.sinks + ([self.annotations] if self.annotations is not None else [])
            first = call_all([partial(sink.write, frame) for sink in sinks])
        else:
            frame.result  # what several writers share, made once before they start
            if self._reader is not None:
                frame.image
            done = [self._pool.submit(unit.write, frame) for unit in self._units]
            errors = [future.exception() for future in done]  # waits for each
            first = next((error for error in errors if error is not None), None)
            if self.annotations is not None:
                self.annotations.frames += 1
        self.written.append(frame.frame_index)
        if first is not None:
            raise first

    def close(self, record: RunRecord | None) -> Exception | None:
        """Close every sink (the annotations last, with the run's `record` as their manifest) and
        return the first error instead of raising it: each file is closed whatever failed."""
        first = call_all([sink.close for sink in self.sinks])
        if self.annotations is not None:
            manifest = record.to_json() if record is not None else {}
            first = first or call_all([partial(self.annotations.close, manifest)])
        self._close_reader()
        return first

    def _close_reader(self) -> None:
        pool = getattr(self, "_pool", None)  # None too when __init__ failed before making it
        if pool is not None:
            pool.shutdown()
            self._pool = None
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
            frame = self._queue.get()
            if frame is None:
                return
            if self.error is None:
                try:
                    self.writer.write(frame)
                except BaseException as err:  # kept for the model's thread; later frames are dropped
                    self.error = err

    @property
    def written(self) -> int:
        return len(self.writer.written)

    def put(self, frame: dict | EncodedFrame) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put(frame)

    def drain(self, every_s: float = 0.5) -> Iterator[int]:
        """Wait until every frame put so far is written (idempotent), yielding the frames written
        at least every `every_s` seconds while it waits; then raise a writer's error."""
        if self._thread.is_alive():
            self._queue.put(None)
            while self._thread.is_alive():
                self._thread.join(every_s)
                yield self.written
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
        self._writer.write(record)

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
        yield self.written, len(total)
        while self._read(every) and self.error is None:
            yield self.written, len(total)
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

    def _restart(self) -> None:
        log.info("the files followed differ from the final results: writing them again")
        if self._writer is not None:
            self._writer.close(None)
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
            self._writer._close_reader()
        shutil.rmtree(self.staging, ignore_errors=True)


def _writer_for(staging: str, wanted: Sequence[str], info: VideoInfo, record: RunRecord | None,
                first_frame: int) -> FileWriter:
    """The files of the run `record` describes (its phrases, stride and start frame), from `first_frame`."""
    if record is None:
        raise FileNotFoundError("the run's folder has results but no run.json")
    stride = max(1, int(record.stride or 1))
    return FileWriter(staging, wanted, info, record.start.phrases, first_frame, stride, record.start.frame % stride)


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
