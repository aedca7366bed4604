"""Test media: the real clips in tests/data/, and small clips generated with the bundled ffmpeg.

Plain functions so that any test module (or a conftest fixture) can use them:

    media_dir()                  folder of the real clips (tests/data: bikes.mp4, ...)
    clip("bikes.mp4")            path of one real clip
    ffmpeg(*args)                run the bundled ffmpeg with -y -loglevel error
    has_encoder("libvpx-vp9")    whether the bundled ffmpeg can encode with it
    make_clip(path, ...)         a synthetic clip from lavfi testsrc (size, rate, frames, codec)
    rotate_clip(src, dst, deg)   copy of a clip with display-rotation metadata
    vfr_clip(path)               a clip whose frame timestamps are irregular
    decode_all(path)             every frame as RGB uint8 via plain PyAV (reference decode)
    decode_intact(path)          the same, leaving out packets flagged corrupt (truncated files)
    frame_times(path)            each decoded frame's time in seconds via plain PyAV
    build(name, folder)          one named clip or bad input from RECIPES, made once into folder

A conftest fixture can wrap `build` with a session tmp folder:

    @pytest.fixture(scope="session")
    def clip(tmp_path_factory):
        folder = tmp_path_factory.mktemp("clips")
        return lambda name: media.build(name, folder)
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"

#: Facts about the real clips, as documented in tests/data/README.md.
REAL_CLIPS = {
    "bikes.mp4": dict(width=640, height=272, num_frames=250, fps=25.0, has_audio=False),
    "bigbuckbunny.mp4": dict(width=1280, height=720, num_frames=132, fps=25.0, has_audio=True),
    "carphone_pristine.mp4": dict(width=176, height=144, num_frames=120, fps=30000 / 1001, has_audio=False),
}


def media_dir() -> Path:
    """The real clips the tests use: tests/data/ (see its README for their origin and licences)."""
    return DATA


def clip(name: str) -> Path:
    """Path of one real clip of tests/data/."""
    path = DATA / name
    assert path.is_file(), f"{path} is missing: the clips the tests use live in tests/data/"
    return path


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: object, timeout: float = 60) -> None:
    """Run the bundled ffmpeg with `-y -loglevel error`; raise RuntimeError with its stderr on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-y", "-loglevel", "error", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")


@functools.lru_cache(maxsize=None)
def has_encoder(name: str) -> bool:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True)
    return any(line.split()[1:2] == [name] for line in proc.stdout.splitlines() if line.strip())


def make_clip(
    path: str | os.PathLike,
    size: tuple[int, int] = (64, 48),
    rate: float | str = 25,
    frames: int = 10,
    codec: str = "libx264",
    pix_fmt: str | None = "yuv420p",
    extra: tuple[str, ...] = (),
) -> Path:
    """A `frames`-frame testsrc clip of `size` (width, height) at `rate`, encoded with `codec`.

    `pix_fmt=None` leaves the encoder's default; `extra` goes before the output path.
    """
    path = Path(path)
    w, h = size
    args: list[object] = ["-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={rate}", "-frames:v", frames, "-c:v", codec]
    if pix_fmt:
        args += ["-pix_fmt", pix_fmt]
    ffmpeg(*args, *extra, path)
    return path


def rotate_clip(src: str | os.PathLike, dst: str | os.PathLike, degrees: int) -> Path:
    """Copy of `src` (no re-encode) whose display matrix rotates it by `degrees` counter-clockwise."""
    ffmpeg("-display_rotation", degrees, "-i", src, "-c", "copy", dst)
    return Path(dst)


def vfr_clip(path: str | os.PathLike, frames: int = 60) -> Path:
    """H.264 mp4 whose first 30 frames are 1/25 s apart, then 1/10 s apart (variable frame rate)."""
    setpts = "if(lt(N,30),N/25,30/25+(N-30)/10)/TB"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
        "-vf", f"settb=1/1000,setpts='{setpts}'",
        "-frames:v", frames, "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-video_track_timescale", 1000, path,
    )  # fmt: skip
    return Path(path)


def decode_all(path: str | os.PathLike) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB uint8, by a plain PyAV decode (no rotation)."""
    import av

    with av.open(os.fspath(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decode_intact(path: str | os.PathLike) -> list[np.ndarray]:
    """Like `decode_all`, but the packets the demuxer flags corrupt (cut off at the end of a
    truncated file) are not given to the decoder: a plain decode raises on them."""
    import av

    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        return [frame.to_ndarray(format="rgb24") for packet in container.demux(stream) if not packet.is_corrupt
                for frame in packet.decode()]


def frame_times(path: str | os.PathLike) -> list[float]:
    """Each decoded frame's presentation time in seconds, relative to the first, via plain PyAV."""
    import av

    with av.open(os.fspath(path)) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    return [t - times[0] for t in times] if times else []


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])


def _carphone() -> Path:
    return clip("carphone_pristine.mp4")


#: name -> function(dst path) that makes it. Names are file names; the suffix picks the container.
RECIPES = {
    # display rotation metadata on the real 176x144 clip (no re-encode)
    "rot90.mp4": lambda dst: rotate_clip(_carphone(), dst, 90),
    "rot180.mp4": lambda dst: rotate_clip(_carphone(), dst, 180),
    "rot270.mp4": lambda dst: rotate_clip(_carphone(), dst, 270),
    # variable frame rate: 30 frames at 25 fps, then 30 at 10 fps
    "vfr.mp4": lambda dst: vfr_clip(dst),
    "vfr.mkv": lambda dst: ffmpeg("-i", vfr_clip(dst.with_suffix(".src.mp4")), "-c", "copy", dst),
    # odd sizes, other codecs and containers
    "odd_ffv1.mkv": lambda dst: make_clip(dst, (175, 143), codec="ffv1", pix_fmt=None),
    "odd_x264rgb.mp4": lambda dst: make_clip(dst, (175, 143), codec="libx264rgb", pix_fmt=None),
    "odd_mpeg4.avi": lambda dst: make_clip(dst, (175, 143), codec="mpeg4"),
    "vp9.webm": lambda dst: make_clip(dst, (96, 64), frames=20, codec="libvpx-vp9"),
    "mjpeg.avi": lambda dst: make_clip(dst, (96, 64), frames=20, codec="mjpeg", pix_fmt="yuvj420p"),
    "single.mp4": lambda dst: make_clip(dst, (64, 48), frames=1),
    "gop10.mp4": lambda dst: make_clip(dst, (96, 64), frames=60, extra=("-g", 10, "-bf", 2)),
    # containers without an index or timestamps
    "raw.h264": lambda dst: ffmpeg("-i", _carphone(), "-c", "copy", dst),
    "carphone.ts": lambda dst: ffmpeg("-i", _carphone(), "-c", "copy", dst),
    "raw.mjpeg": lambda dst: make_clip(dst, (96, 64), frames=40, codec="mjpeg", pix_fmt="yuvj420p"),
    # not videos, or broken ones
    "empty.mp4": lambda dst: dst.write_bytes(b""),
    "random.mp4": lambda dst: dst.write_bytes(np.random.default_rng(0).bytes(100_000)),
    "notes.txt": lambda dst: dst.write_text("This is a text file, not a video.\n" * 50),
    "image.png": lambda dst: ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", 1, dst),
    "audio.m4a": lambda dst: ffmpeg("-f", "lavfi", "-i", "sine", "-t", 1, dst),
    # bikes.mp4 has its index (moov) at the end: the first half has no index at all
    "truncated.mp4": lambda dst: _truncate(clip("bikes.mp4"), dst),
    # index first (faststart), then cut: the index promises packets whose bytes are missing
    "truncated_faststart.mp4": lambda dst: (
        ffmpeg("-i", clip("bikes.mp4"), "-c", "copy", "-movflags", "+faststart", dst.with_suffix(".full.mp4")),
        _truncate(dst.with_suffix(".full.mp4"), dst),
    ),
}  # fmt: skip


def _zero_mdat(dst: Path, frames: int = 10, middle: int = 0) -> None:
    """A faststart H.264 mp4 (keyframe every 10 frames) whose media data (the mdat box) is zeroed:
    all of it (the index is intact and lists every frame, but not one decodes), or only `middle`
    bytes at its middle (the frames before decode, then decoding fails)."""
    src = make_clip(dst.with_suffix(".src.mp4"), (96, 64), frames=frames, extra=("-g", 10, "-movflags", "+faststart"))
    data = bytearray(src.read_bytes())
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), bytes(data[pos + 4 : pos + 8])
        if kind == b"mdat":
            start, end = pos + 8, pos + size
            if middle:
                start = (start + end - middle) // 2
                end = start + middle
            data[start:end] = bytes(end - start)
            break
        pos += size
    else:
        raise RuntimeError(f"no mdat box in {src}")
    dst.write_bytes(bytes(data))


def _cut_ts(dst: Path) -> None:
    """An MPEG-TS (keyframe every 20 frames) with its first third cut off at a packet boundary, as
    a recording that started mid-broadcast: the first packets are frames whose keyframe is gone."""
    src = make_clip(dst.with_suffix(".src.ts"), (96, 64), frames=60, extra=("-g", 20))
    data = src.read_bytes()
    dst.write_bytes(data[(len(data) // 3) // 188 * 188 :])


def _long_clip(dst: Path) -> Path:
    """3700 s of 64x48 at 10 fps (37000 frames): over the app's default 600 s / 18000 frames."""
    return make_clip(dst, (64, 48), rate=10, frames=37_000, extra=("-preset", "ultrafast", "-g", 250))


#: HEVC as Apple writes it (hvc1 tag, which Safari needs), without x265's banner
_HVC1 = ("-tag:v", "hvc1", "-x265-params", "log-level=error")

RECIPES.update({
    # what phones and cameras produce: other codecs, containers, bit depths and chroma
    "hevc.mp4": lambda dst: make_clip(dst, (96, 64), codec="libx265", extra=_HVC1),
    "hevc_10bit.mp4": lambda dst: make_clip(dst, (96, 64), codec="libx265", pix_fmt="yuv420p10le", extra=_HVC1),
    "x264_10bit.mp4": lambda dst: make_clip(dst, (96, 64), pix_fmt="yuv420p10le"),
    "x264_yuv444.mp4": lambda dst: make_clip(dst, (96, 64), pix_fmt="yuv444p"),
    "av1.mkv": lambda dst: make_clip(dst, (96, 64), codec="libaom-av1", extra=("-cpu-used", 8)),
    "prores.mov": lambda dst: make_clip(dst, (96, 64), codec="prores_ks", pix_fmt="yuv422p10le"),
    # an iPhone-style mov: H.264 with a 90 degree display rotation and AAC audio
    "phone_rot90.mov": lambda dst: ffmpeg("-display_rotation", 90, "-i", _carphone(), "-f", "lavfi", "-i", "sine=d=5",
                                          "-c:v", "copy", "-c:a", "aac", "-shortest", dst),
    # odd size (x264 takes it in 4:4:4) and a 270 degree rotation: the overlay is padded and turned
    "odd_rot270.mp4": lambda dst: rotate_clip(make_clip(dst.with_suffix(".src.mp4"), (175, 143), pix_fmt="yuv444p"),
                                              dst, 270),
    "anamorphic.mp4": lambda dst: make_clip(dst, (96, 64), extra=("-vf", "setsar=2/1")),
    "anim.gif": lambda dst: make_clip(dst, (96, 64), rate=10, codec="gif", pix_fmt=None),
    "mpeg2.mpg": lambda dst: make_clip(dst, (96, 64), codec="mpeg2video"),
    "h263.3gp": lambda dst: make_clip(dst, (176, 144), codec="h263"),
    # sizes at both ends, and a video longer than the app takes
    "tiny16.mp4": lambda dst: make_clip(dst, (16, 16)),
    "4k.mp4": lambda dst: make_clip(dst, (3840, 2160), frames=3, extra=("-preset", "ultrafast")),
    "long.mp4": _long_clip,
    # a file name with spaces and non-ASCII letters
    "my clip ü 東京.mp4": lambda dst: make_clip(dst, (96, 64)),
    # the audio goes on for 3 s after the 0.4 s of video
    "long_audio.mp4": lambda dst: ffmpeg("-i", make_clip(dst.with_suffix(".src.mp4"), (96, 64)), "-f", "lavfi",
                                         "-i", "sine=d=3", "-c:v", "copy", "-c:a", "aac", dst),
    "cut_mid_gop.ts": _cut_ts,
    # a video stream with no decodable frame, and an mp4 without any track (ffmpeg asked for 0 frames)
    "zeroed_mdat.mp4": _zero_mdat,
    "no_frames.mp4": lambda dst: make_clip(dst, (96, 64), frames=0),
    # damaged in the middle: 60 frames listed, frames 21 to 35 do not decode (the decoder rejects their data)
    "damaged_middle.mp4": lambda dst: _zero_mdat(dst, frames=60, middle=2000),
})  # fmt: skip


def build(name: str, folder: str | os.PathLike) -> Path:
    """`folder/name` made by RECIPES[name] unless it is already there."""
    dst = Path(folder) / name
    if not dst.exists():
        RECIPES[name](dst)
    return dst
