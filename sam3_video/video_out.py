"""Video output: browser-playable H.264 mp4 through the ffmpeg bundled with imageio-ffmpeg.

`H264Writer` streams RGB frames into a video-only segment; `mux_video` joins segments without
re-encoding and adds the source's audio for the covered time span. Knows nothing of models.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import weakref
from fractions import Fraction
from typing import IO, Sequence, cast

import numpy as np

from .errors import VideoReadError, VideoWriteError
from .video import _reason

#: Audio codecs copied into the mp4 as they are; any other is encoded to AAC.
COPY_AUDIO_CODECS = {"aac", "mp3"}
#: Characters of ffmpeg's stderr quoted in an error message.
STDERR_TAIL = 1500


_OPEN: "weakref.WeakSet[H264Writer]" = weakref.WeakSet()  # writers whose ffmpeg still reads its stdin


def _release_in_child() -> None:
    """In a process forked while writers are open (on ZeroGPU the GPU workers fork from the app,
    whose main process writes the overlay): its copy of each ffmpeg's stdin points at /dev/null
    instead, or ffmpeg would not see the end of its input before that process exits."""
    for writer in list(_OPEN):
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), writer._stdin.fileno())
        except (OSError, ValueError, AttributeError):
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_release_in_child)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (there is no system ffmpeg)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _tail(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.split())  # one line: newlines and runs of spaces collapsed
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


class H264Writer:
    """Streams RGB frames into a browser-playable mp4: H.264 (libx264), yuv420p, no audio, +faststart
    (`faststart=False` for a segment that `mux_video` rewrites anyway).

    Frames go straight into ffmpeg's stdin, so memory stays flat whatever the length. ffmpeg's
    stderr goes to a temporary file, which can never fill up and block the encoder.

    libx264 with yuv420p needs even width and height: an odd size is padded by one pixel on the
    right and/or bottom, replicating the last column/row, so `out_size` is the written
    (width, height) and may be one larger than (width, height).

        with H264Writer("out.mp4", 640, 272, 25) as writer:
            for rgb in frames:  # (272, 640, 3) uint8
                writer.write(rgb)

    Raises:
        VideoWriteError: from `write` or `close` when ffmpeg fails (the tail of its stderr is
            in the message).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, crf: int = 20,
                 preset: str = "veryfast", faststart: bool = True):  # fmt: skip
        self.path = os.fspath(path)
        self.width, self.height = int(width), int(height)
        if self.width < 1 or self.height < 1 or not fps or fps <= 0:
            raise ValueError(f"H264Writer needs a positive size and fps, got {width}x{height} at {fps} fps")
        self.fps = float(fps)
        self.out_size = (self.width + self.width % 2, self.height + self.height % 2)
        self.frames_written = 0
        self._closed = False
        # odd sizes: one reused buffer of the written size; the edge column/row are copied into it
        padded = self.out_size != (self.width, self.height)
        self._buffer = np.empty((self.out_size[1], self.out_size[0], 3), np.uint8) if padded else None
        rate = Fraction(self.fps).limit_denominator(1001)
        cmd = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "{}x{}".format(*self.out_size), "-r", str(rate), "-i", "-",
            "-an", "-c:v", "libx264", "-preset", str(preset), "-crf", str(crf), "-pix_fmt", "yuv420p",
            *(["-movflags", "+faststart"] if faststart else []), "-f", "mp4", self.path,
        ]  # fmt: skip
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as err:
            self._stderr.close()
            raise VideoWriteError(f"Could not start ffmpeg to write '{os.path.basename(self.path)}' ({err}).") from None
        self._stdin = cast(IO[bytes], self._proc.stdin)  # stdin=PIPE: never None
        _OPEN.add(self)

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame: (height, width, 3) uint8 RGB, the size given to the constructor."""
        if self._closed:
            raise ValueError(f"The writer of '{os.path.basename(self.path)}' is closed; open a new one to write more.")
        rgb = np.asarray(rgb)
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(
                f"Each frame must be a ({self.height}, {self.width}, 3) uint8 RGB array to match the video's "
                f"{self.width}x{self.height} size; got a {rgb.dtype} array of shape {rgb.shape}."
            )
        if self._buffer is not None:
            h, w = self.height, self.width
            self._buffer[:h, :w] = rgb
            self._buffer[:h, w:] = rgb[:, -1:]  # replicate the last column (odd width)
            self._buffer[h:] = self._buffer[h - 1 : h]  # and the last row (odd height)
            rgb = self._buffer
        try:
            self._stdin.write(np.ascontiguousarray(rgb).data.cast("B"))
        except (BrokenPipeError, OSError):  # ffmpeg has exited; its stderr says why
            self._finish(kill=False)
            raise self._error() from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and wait for ffmpeg; safe to call twice. Raises VideoWriteError on failure."""
        if self._closed:
            return
        self._finish(kill=False)
        if self._proc.returncode != 0:
            raise self._error()

    def abort(self) -> None:
        """Stop ffmpeg now and delete the unfinished file (an mp4 without its index does not play)."""
        if self._closed:
            return
        self._finish(kill=True)
        try:
            os.remove(self.path)
        except OSError:
            pass

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the caller's exception; the half-written file is of no use
            self.abort()

    def _finish(self, kill: bool) -> None:
        self._closed = True
        _OPEN.discard(self)
        if kill:
            self._proc.kill()
        try:
            self._stdin.close()
        except OSError:  # BrokenPipe while flushing: ffmpeg already exited
            pass
        self._proc.wait()
        self._stderr.seek(0)
        self._stderr_text = _tail(self._stderr.read())
        self._stderr.close()

    def _error(self) -> VideoWriteError:
        detail = self._stderr_text or f"exit code {self._proc.returncode}"
        return VideoWriteError(
            f"Could not write the video '{os.path.basename(self.path)}' after {self.frames_written} frame(s): "
            f"ffmpeg failed ({detail}). Check that the folder exists, is writable and has free space, "
            "and that the encoder settings are valid."
        )


def audio_codec(path: str | os.PathLike) -> str | None:
    """Codec name of the first audio stream of `path` ('aac', 'mp3', ...), None when it has none."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"The audio source '{path}' does not exist. Check the path or leave it out.")
    try:
        with av.open(path, metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            return container.streams.audio[0].codec_context.codec.canonical_name  # 'mp3', not 'mp3float'
    except Exception as err:  # PyAV raises many error types for bad input
        raise VideoReadError(f"Could not read '{os.path.basename(path)}' for its audio ({_reason(err)}).") from None


def concat_line(path: str) -> str:
    """One `file '...'` line of an ffmpeg concat list; a ' inside the path is written '\\''."""
    if "\n" in path or "\r" in path:
        raise ValueError(f"A video path with a line break cannot be joined by ffmpeg: {path!r}")
    return "file '" + os.path.abspath(path).replace("'", "'\\''") + "'\n"


def mux_video(
    parts: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    audio_source: str | os.PathLike | None = None,
    audio_start: float = 0.0,
    audio_duration: float | None = None,
) -> None:
    """Join H.264 mp4 segments (written by `H264Writer` with the same settings) and add audio.

    The video is copied, never re-encoded. The first audio stream of `audio_source`, if it has one,
    is cut to start at `audio_start` seconds and to last `audio_duration` seconds (None: to its
    end); aac and mp3 are copied, other codecs encoded to AAC. The result is written with
    +faststart to a temporary name next to `out_path` and renamed onto it, so `out_path` is either
    the old file or the complete new one.

    Raises:
        VideoWriteError: a part is missing or ffmpeg failed.
        VideoReadError: `audio_source` is missing or unreadable.
    """
    parts = [os.fspath(p) for p in parts]
    out_path = os.fspath(out_path)
    if not parts:
        raise ValueError("mux_video needs at least one video segment to join.")
    for part in parts:
        if not os.path.isfile(part):
            raise VideoWriteError(f"The video segment '{part}' does not exist, so it cannot be joined.")
    codec = audio_codec(audio_source) if audio_source is not None else None
    folder = os.path.dirname(os.path.abspath(out_path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mux-", suffix=".mp4", dir=folder)
    except OSError as err:
        raise VideoWriteError(f"Cannot write into '{folder}' ({err.strerror}). Choose a writable folder.") from None
    os.close(fd)
    fd, listing = tempfile.mkstemp(prefix=".mux-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(concat_line(os.fspath(p)) for p in parts)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "concat", "-safe", "0", "-i", listing]  # fmt: skip
    if codec is not None and audio_source is not None:
        copy_audio = codec in COPY_AUDIO_CODECS
        cmd += ["-ss", f"{max(0.0, audio_start):.6f}"]
        if audio_duration is not None:
            cmd += ["-t", f"{max(0.0, audio_duration):.6f}"]
        cmd += ["-i", os.fspath(audio_source), "-map", "0:v:0", "-map", "1:a:0"]
        # copied packets before the cut would stay in the file, hidden by an edit list: drop them
        cmd += ["-c:a", "copy", "-copypriorss", "0"] if copy_audio else ["-c:a", "aac", "-b:a", "192k"]
    else:
        cmd += ["-map", "0:v:0"]
    cmd += ["-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", tmp]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode != 0:
            raise VideoWriteError(
                f"Could not join the video into '{os.path.basename(out_path)}': ffmpeg failed "
                f"({_tail(proc.stderr) or f'exit code {proc.returncode}'})."
            )
        os.chmod(tmp, 0o644)  # mkstemp made it private; the result is an ordinary file
        os.replace(tmp, out_path)
    finally:
        for leftover in (tmp, listing):
            if os.path.exists(leftover):
                os.remove(leftover)
