"""The overlay video: every frame in range with its objects drawn, as browser-playable H.264.

`OverlayWriter` is a pipeline sink. Frames arrive forward from the start frame, then (for
backward and both) downward from the frame before it. The upward part is drawn and encoded as it
arrives; results of the downward part wait on disk (RLE, not pixels) and are drawn in frame
order when the run ends, as a second segment placed before the first. The segments are then
joined without re-encoding and the source's audio for the covered time is added. Memory stays
flat in video length, and a stopped run gives a playable video of exactly the frames done.

With a stride N (every Nth frame done) the overlay holds the frames done, at fps / N: it lasts as
long as the stretch of video it covers, so the source's audio still fits it.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from .export.base import Spill
from .render import render
from .results import EncodedFrame, RecordFrame
from .runfolder import OVERLAY
from .types import VideoInfo
from .video_out import H264Writer, mux_video


class OverlayWriter:
    name = OVERLAY

    def __init__(self, out_dir: str, info: VideoInfo, start_frame: int, frame_source: Callable[[int], np.ndarray],
                 stride: int = 1):
        self.path = os.path.join(out_dir, self.name)
        self.info = info
        self.start = int(start_frame)
        self.stride = int(stride)  # frames start, start + stride, ... arrive (and below the start, likewise)
        self.frame_source = frame_source
        self._up_path = os.path.join(out_dir, ".overlay-up.mp4")
        self._down_path = os.path.join(out_dir, ".overlay-down.mp4")
        self._up: H264Writer | None = None
        self._next_up = self.start  # the upward part must arrive in order; checked
        self._down = Spill(out_dir, "overlay")
        self._closed = False
        if os.path.exists(self.path):
            os.remove(self.path)

    def _writer(self, path: str) -> H264Writer:
        return H264Writer(path, self.info.width, self.info.height, self.info.fps / self.stride,
                          faststart=False)  # mux adds it

    def write(self, frame: EncodedFrame) -> None:
        index = frame.frame_index
        if index >= self.start:
            if index != self._next_up:
                raise ValueError(f"overlay expected frame {self._next_up}, got {index}")
            if self._up is None:
                self._up = self._writer(self._up_path)
            self._up.write(render(frame.image, frame, crops=frame.crops))
            self._next_up += self.stride
        else:
            self._down.add(index, frame.record)

    def close(self) -> None:
        """Encode the waiting frames, join the parts, add audio (idempotent)."""
        if self._closed:
            return
        self._closed = True
        parts = []
        try:
            down = self._down.keys()  # the frames below the start that were processed, ascending
            if down:
                with self._writer(self._down_path) as writer:
                    for index in down:
                        waiting = RecordFrame(self._down.get(index)[0], self.info.size)
                        writer.write(render(self.frame_source(index), waiting, crops=waiting.crops))
                parts.append(self._down_path)
            if self._up is not None:
                self._up.close()
                parts.append(self._up_path)
            if parts:
                first = down[0] if down else self.start
                end = self._next_up if self._up is not None else self.start  # the last frame's end
                audio = self.info.path if self.info.has_audio else None
                mux_video(parts, self.path, audio_source=audio, audio_start=self._time(first),
                          audio_duration=self._time(end) - self._time(first))
        finally:
            if self._up is not None:
                self._up.close()
            self._down.close()
            for path in (self._up_path, self._down_path):
                if os.path.exists(path):
                    os.remove(path)

    def _time(self, index: int) -> float:
        """Seconds from the first frame to frame `index` (the end of the video for num_frames)."""
        ts = self.info.timestamps
        if ts and index < len(ts):
            return float(ts[index] - ts[0])
        return float(self.info.duration) if index >= self.info.num_frames else index / self.info.fps
