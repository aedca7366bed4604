"""Video input: probe a file and stream its frames; knows nothing about models.

Frames are decoded with PyAV as they are needed, in display orientation (the container's rotation
applied), as RGB uint8 arrays of shape (H, W, 3). Frame indices follow presentation timestamps, so
variable frame rate and B-frames give the same numbering as a player. Random access (for backward
propagation) decodes a chunk from the nearest keyframe and keeps a small, byte-bounded cache, so
memory does not grow with the length of the video.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Iterator

import numpy as np

from .errors import VideoReadError
from .types import VideoInfo

log = logging.getLogger(__name__)

#: Bytes of decoded frames kept for random access (source resolution, RGB uint8).
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
#: Frames decoded per step when walking backwards.
BACKWARD_CHUNK = 32
#: FFmpeg renders text files as "video"; they are not what anyone means by a video.
TEXT_FORMATS = {"tty"}
TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}


def _open(path: str):
    import av

    if not os.path.exists(path):
        raise VideoReadError(f"The video '{path}' does not exist. Check the path and try again.")
    if os.path.isdir(path):
        raise VideoReadError(f"'{path}' is a folder, not a video file. Pass the path of one video file.")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"The video '{os.path.basename(path)}' is an empty file. Upload or pass the complete video.")
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as err:  # PyAV raises many error types for bad input
        raise VideoReadError(
            f"Could not read '{os.path.basename(path)}' as a video ({_reason(err)}). "
            "Use a complete video file such as mp4, mov, webm, mkv or avi."
        ) from None
    stream = container.streams.video[0] if container.streams.video else None
    if stream is not None and (container.format.name in TEXT_FORMATS or stream.codec_context.name in TEXT_CODECS):
        container.close()
        raise VideoReadError(
            f"'{os.path.basename(path)}' is a text file, not a video. Use a video file such as mp4, mov, webm or mkv."
        )
    if stream is None:
        container.close()
        raise VideoReadError(
            f"'{os.path.basename(path)}' has no video stream (it may be audio only or an image). "
            "Use a file that contains video."
        )
    return container


def _reason(err: Exception) -> str:
    text = str(err).strip().rstrip(".")
    # PyAV messages look like "[Errno 1094995529] Invalid data found when processing input: 'x.mp4'"
    if "] " in text:
        text = text.split("] ", 1)[1]
    if ": '" in text:
        text = text.split(": '", 1)[0]
    return text[:200] or type(err).__name__


def _packet_pts(container, stream, name: str) -> list[int]:
    """Sorted presentation timestamps of the frames a decoder can give, read from the packets.

    Left out: packets the demuxer flags corrupt (bytes missing, as at the end of a cut file),
    which `_decode` never feeds to the decoder either, and packets before the first keyframe (a
    recording that starts mid-GOP): decoders drop those frames, so counting them would number
    every later frame one off and make frame 0 undecodable. Streams without any keyframe flag
    keep every packet.
    """
    pts: list[int] = []
    first_key = None
    try:
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None and not packet.is_corrupt:
                if first_key is None and packet.is_keyframe:
                    first_key = len(pts)
                pts.append(int(packet.pts))
    except Exception as err:
        log.warning("demuxing %s stopped early: %s", name, err)
    return sorted(set(pts[first_key or 0 :]))


def _decode(container, stream) -> Iterator:
    """Decoded frames of `stream`, as `container.decode(stream)` gives them, but going on past
    damage as a player does: packets flagged corrupt are left out (see `_packet_pts`; fed to the
    decoder, a cut-off packet raises and the frames still waiting behind it are lost), and a
    packet the decoder rejects is skipped, so the frames after a damaged stretch still decode
    (the frames it held are simply missing: `VideoReader` says so for those indices)."""
    skipped = 0
    for packet in container.demux(stream):
        if packet.is_corrupt:
            continue
        try:
            frames = packet.decode()
        except Exception as err:  # PyAV raises many error types for bad data
            if not skipped:
                log.warning("skipping undecodable data in %s: %s", os.path.basename(container.name), err)
            skipped += 1
            continue
        yield from frames


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def probe(path: str | os.PathLike) -> VideoInfo:
    """Facts about a video: true frame count, average fps, display size, rotation, audio.

    Counts frames from the container's packets (no decoding), so the count is right where the
    header is wrong or the frame rate varies (`_packet_pts` says which packets count). Decodes the
    first frame to prove the video decodes.

    Raises:
        VideoReadError: with a sentence saying what is wrong, for anything that is not a
            decodable video.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        time_base = float(stream.time_base) if stream.time_base else 0.0
        pts = _packet_pts(container, stream, name)
        container.close()
        container = _open(path)  # decode from the start; raw streams cannot seek back
        stream = container.streams.video[0]
        first = None
        try:
            for frame in _decode(container, stream):
                first = frame
                break
        except Exception as err:
            raise VideoReadError(
                f"'{name}' could not be decoded ({_reason(err)}). The file may be truncated or use "
                "an unsupported codec; re-export it as H.264 mp4."
            ) from None
        if first is None:
            raise VideoReadError(
                f"'{name}' contains no decodable video frames: it is empty or damaged, or its codec is not "
                "supported. Re-export it as H.264 mp4."
            )
        rotation = int(getattr(first, "rotation", 0) or 0) % 360
        if not pts:  # streams without timestamps: count by decoding
            count = 1 + sum(1 for _ in _decode(container, stream))
            # a raw stream's average_rate is the demuxer's default (25); guessed_rate has the
            # codec's own timing (H.264 VUI), where there is one
            rate = float(stream.guessed_rate or stream.average_rate or 25.0)
            timestamps = tuple(i / rate for i in range(count))
        else:
            timestamps = tuple((p - pts[0]) * time_base for p in pts)
        num_frames = len(timestamps)
        deltas = np.diff(timestamps) if num_frames > 1 else np.array([])
        if len(deltas) and deltas.mean() > 0:
            step = float(np.median(deltas))
            duration = timestamps[-1] + step
            fps = num_frames / duration
            vfr = bool(deltas.max() > 1.5 * deltas.min() + 1e-6)
        else:
            rate = float(stream.average_rate or stream.guessed_rate or 25.0)
            fps, duration, vfr = rate, num_frames / rate, False
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            path=path,
            width=int(width),
            height=int(height),
            num_frames=num_frames,
            fps=float(fps),
            duration=float(duration),
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
            variable_frame_rate=vfr,
            timestamps=timestamps,
        )
    finally:
        container.close()


class VideoReader:
    """Decoded frames of one video, by index, in display orientation.

    `reader[i]` returns frame i as RGB uint8 (H, W, 3). Going forward decodes sequentially; going
    backward decodes `BACKWARD_CHUNK` frames from the nearest keyframe at a time. At most
    `cache_bytes` of decoded frames are kept.

    With a sampled info (`VideoInfo.sampled`), `reader[i]` is the file's frame
    `info.file_index(i)`: going forward decodes on through the file and converts only the sampled
    frames (no seek per frame), backward decodes `BACKWARD_CHUNK` sampled frames at a time.
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.path = os.fspath(path)
        self.info = info or probe(self.path)
        self._container = _open(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        tb = float(self._stream.time_base) if self._stream.time_base else 0.0
        self._time_base = tb
        self._pts: list[int] = []
        self._index_of_pts: dict[int, int] = {}
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._frame_bytes = self.info.width * self.info.height * 3
        self._step, self._offset = self.info.step, self.info.offset  # sampled frames (1, 0: all)
        self._decoder: Iterator | None = None
        self._next_index = 0  # index the sequential decoder yields next
        self._lock = threading.RLock()  # a prefetching thread and the pipeline read frames
        self._load_pts()

    def _load_pts(self) -> None:
        self._pts = _packet_pts(self._container, self._stream, os.path.basename(self.path))
        self._index_of_pts = {p: i for i, p in enumerate(self._pts)}
        self._restart(0)

    def __len__(self) -> int:
        return self.info.num_frames

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._decoder = None
            self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> np.ndarray:
        """Frame `index` as a read-only RGB uint8 (H, W, 3) array (thread-safe: one decoder, one
        caller at a time)."""
        with self._lock:
            return self._get(index)

    def _get(self, index: int) -> np.ndarray:
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"frame {index} is outside 0..{n - 1}")
        index = self.info.file_index(index)  # from here on, the file's own frame indices
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        chunk = BACKWARD_CHUNK * self._step  # a chunk holds BACKWARD_CHUNK frames of this info
        if not (self._next_index <= index < self._next_index + chunk):
            self._seek(max(0, index - chunk + self._step))
        for attempt in range(2):
            while True:
                got, rgb = self._decode_next()
                if got is None or got > index:  # the end, or a seek that landed past the frame
                    break
                if got == index and rgb is not None:
                    return rgb
            self._restart(max(0, index - chunk + self._step))  # decode from the very start instead
        raise VideoReadError(
            f"Frame {index} of '{os.path.basename(self.path)}' could not be decoded; the file is damaged "
            "there. Re-export the video, or choose a frame range that avoids the damaged part."
        )

    def _seek(self, index: int) -> None:
        """Position the decoder at the keyframe before frame `index`."""
        if not self._pts or index == 0:
            self._restart(index)
            return
        try:
            self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        except Exception:  # some raw streams cannot seek: decode from the start
            self._restart(index)
            return
        self._decoder = _decode(self._container, self._stream)
        self._next_index = index
        self._seek_target = index

    def _restart(self, target: int) -> None:
        """Reopen the file and decode from frame 0, skipping frames before `target`."""
        self._container.close()
        self._container = _open(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._decoder = _decode(self._container, self._stream)
        self._next_index = 0
        self._seek_target = target

    def _decode_next(self) -> tuple[int | None, np.ndarray | None]:
        assert self._decoder is not None
        try:
            for frame in self._decoder:
                if self._pts and frame.pts is not None and frame.pts in self._index_of_pts:
                    idx = self._index_of_pts[frame.pts]
                else:
                    idx = self._fallback_index(frame)
                self._next_index = idx + 1
                if idx < self._seek_target or (idx - self._offset) % self._step:
                    continue  # before the frame sought, or not a sampled frame: never converted
                rgb = _rotate(frame.to_ndarray(format="rgb24"), self.info.rotation)
                self._remember(idx, rgb)
                return idx, rgb
        except Exception as err:  # a damaged packet: treat as the end of what decodes
            log.warning("decoding %s stopped: %s", self.path, err)
        return None, None

    def _fallback_index(self, frame) -> int:
        if frame.pts is not None and self._pts:  # timestamp not among the packets': nearest one
            if frame.pts < self._pts[0]:  # before the first counted frame (see _packet_pts): skipped
                return -1
            return int(np.searchsorted(self._pts, frame.pts).clip(0, len(self._pts) - 1))
        return self._next_index

    def _remember(self, index: int, rgb: np.ndarray) -> None:
        rgb.flags.writeable = False  # shared with the cache: callers draw on copies
        self._cache[index] = rgb
        self._cache.move_to_end(index)
        while len(self._cache) > 2 and len(self._cache) * self._frame_bytes > self._cache_bytes:
            self._cache.popitem(last=False)
