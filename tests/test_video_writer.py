"""H264Writer and mux_video on the shared real clips: what a browser needs, checked with PyAV.

H.264 in yuv420p, even size (odd input padded), every written frame present at the given rate,
moov before mdat (+faststart), pixels close to what was written, audio only when the source has
it. Real clips come from tests/data through tests/media.py; CPU only.
"""

from __future__ import annotations

import os
import struct

import av
import numpy as np
import pytest

from sam3_video.errors import Sam3VideoError, VideoReadError, VideoWriteError
from sam3_video.video import VideoReader, probe
from sam3_video.video_out import H264Writer, concat_line, mux_video

try:
    import media
except ImportError:  # tests/ imported as a package
    from tests import media


def top_level_boxes(path) -> list[str]:
    """Types of the mp4's top-level boxes in file order ('ftyp', 'moov', 'mdat', ...)."""
    kinds = []
    with open(path, "rb") as f:
        size_total = os.fstat(f.fileno()).st_size
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            size, kind = struct.unpack(">I4s", f.read(8))
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
            elif size == 0:
                size = size_total - pos
            kinds.append(kind.decode("latin-1"))
            pos += size
    return kinds


def streams_of(path) -> dict:
    """Facts about the first video and audio streams via PyAV."""
    with av.open(os.fspath(path)) as container:
        video = container.streams.video[0]
        facts = dict(codec=video.codec_context.name, pix_fmt=video.codec_context.pix_fmt, audio=None)
        if container.streams.audio:
            audio = container.streams.audio[0]
            packets = [p for p in container.demux(audio) if p.size and p.pts is not None]
            stored = float((max(p.pts + p.duration for p in packets) - min(p.pts for p in packets)) * audio.time_base)
            facts["audio"] = dict(codec=audio.codec_context.codec.canonical_name, stored=stored, heard=audible_seconds(path))
    return facts


def audible_seconds(path) -> float:
    """Seconds of audio a player outputs: decoded samples, after the edit list's cuts."""
    with av.open(os.fspath(path)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate


def write(path, frames, fps=25.0, **kwargs) -> H264Writer:
    height, width = frames[0].shape[:2]
    with H264Writer(path, width, height, fps, **kwargs) as writer:
        for rgb in frames:
            writer.write(rgb)
    return writer


def assert_browser_mp4(path, width, height, num_frames, fps):
    info = probe(path)
    facts = streams_of(path)
    assert (facts["codec"], facts["pix_fmt"]) == ("h264", "yuv420p")
    assert (info.width, info.height, info.num_frames) == (width, height, num_frames)
    assert info.fps == pytest.approx(fps, abs=0.01)
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat"), f"not faststart: {boxes}"


@pytest.fixture(scope="session")
def bikes_frames() -> list[np.ndarray]:
    with VideoReader(media.clip("bikes.mp4")) as reader:
        return list(reader)


@pytest.fixture(scope="session")
def bikes_written(bikes_frames, tmp_path_factory):
    path = tmp_path_factory.mktemp("writer") / "bikes.mp4"
    writer = write(path, bikes_frames)
    return path, writer


@pytest.fixture(scope="session")
def parts(bikes_frames, tmp_path_factory) -> list[str]:
    """Two segments of bikes: 50 frames, then 30 frames."""
    folder = tmp_path_factory.mktemp("parts")
    write(folder / "a.mp4", bikes_frames[:50])
    write(folder / "b.mp4", bikes_frames[50:80])
    return [str(folder / "a.mp4"), str(folder / "b.mp4")]


def test_bikes_written_as_browser_h264(bikes_written, bikes_frames):
    path, writer = bikes_written
    assert writer.frames_written == len(bikes_frames) == 250
    assert writer.out_size == (640, 272)
    assert_browser_mp4(path, 640, 272, 250, 25.0)
    assert streams_of(path)["audio"] is None


def test_decoded_pixels_close_to_written(bikes_written, bikes_frames):
    decoded = media.decode_all(bikes_written[0])
    assert len(decoded) == len(bikes_frames)
    for i in (0, 1, 100, 249):
        diff = np.abs(decoded[i].astype(np.int16) - bikes_frames[i]).mean()
        assert diff < 4, f"frame {i} differs by {diff:.1f} on average"


@pytest.mark.parametrize("width, height", [(175, 143), (176, 143), (175, 144), (176, 144)])
def test_odd_sizes_are_padded_by_replicating_the_edge(carphone, tmp_path, width, height):
    info = probe(carphone)
    with VideoReader(carphone, info) as reader:
        frames = [reader[i][:height, :width] for i in range(8)]
    path = tmp_path / "odd.mp4"
    writer = write(path, frames, fps=info.fps)
    out_w, out_h = width + width % 2, height + height % 2
    assert writer.out_size == (out_w, out_h)
    assert_browser_mp4(path, out_w, out_h, 8, info.fps)  # 29.97 fps kept
    decoded = media.decode_all(path)[3].astype(np.int16)
    assert np.abs(decoded[:height, :width] - frames[3]).mean() < 4
    # the padding repeats the edge: the added column/row look like the last real one
    assert np.abs(decoded[:height, -1] - frames[3][:, -1]).mean() < 8
    assert np.abs(decoded[-1, :width] - frames[3][-1]).mean() < 8


@pytest.mark.parametrize(
    "bad",
    [np.zeros((272, 640), np.uint8), np.zeros((272, 640, 4), np.uint8), np.zeros((640, 272, 3), np.uint8),
     np.zeros((272, 640, 3), np.float32), np.zeros((271, 640, 3), np.uint8)],
    ids=["gray", "rgba", "transposed", "float", "one-row-short"],
)  # fmt: skip
def test_bad_frame_shape_is_a_value_error(tmp_path, bad):
    with H264Writer(tmp_path / "bad.mp4", 640, 272, 25) as writer:
        with pytest.raises(ValueError, match=r"\(272, 640, 3\) uint8"):
            writer.write(bad)
        writer.write(np.zeros((272, 640, 3), np.uint8))  # still usable
    assert writer.frames_written == 1
    assert probe(tmp_path / "bad.mp4").num_frames == 1


def test_close_is_idempotent_and_write_after_close_fails(tmp_path):
    writer = H264Writer(tmp_path / "x.mp4", 32, 16, 10)
    writer.write(np.zeros((16, 32, 3), np.uint8))
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write(np.zeros((16, 32, 3), np.uint8))


def test_exception_inside_with_removes_the_unfinished_file(tmp_path):
    path = tmp_path / "x.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with H264Writer(path, 32, 16, 10) as writer:
            writer.write(np.zeros((16, 32, 3), np.uint8))
            raise RuntimeError("boom")
    assert not path.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("size", [(640, 272), (32, 16)], ids=["frame-bigger-than-pipe", "small-frame"])
def test_unwritable_path_is_a_clear_error_not_a_hang(tmp_path, size):
    width, height = size
    path = tmp_path / "no such folder" / "out.mp4"
    writer = H264Writer(path, width, height, 25)
    with pytest.raises(VideoWriteError, match="out.mp4") as caught:
        for _ in range(50):  # ffmpeg exits at once: a write or the close reports it
            writer.write(np.zeros((height, width, 3), np.uint8))
        writer.close()
    assert isinstance(caught.value, Sam3VideoError)
    assert "No such file or directory" in str(caught.value)
    assert "\n" not in str(caught.value)
    writer.close()  # already closed: no second error


@pytest.mark.timeout(60)
def test_ffmpeg_rejecting_its_options_is_a_clear_error(tmp_path):
    with pytest.raises(VideoWriteError, match="ffmpeg failed .*preset"):
        write(tmp_path / "x.mp4", [np.zeros((16, 32, 3), np.uint8)] * 3, preset="no-such-preset")


def test_two_parts_concatenate_without_audio_from_a_silent_source(parts, tmp_path):
    out = tmp_path / "joined.mp4"
    mux_video(parts, out, audio_source=media.clip("bikes.mp4"), audio_start=2.0, audio_duration=3.2)
    assert_browser_mp4(out, 640, 272, 80, 25.0)
    assert streams_of(out)["audio"] is None
    assert sorted(os.listdir(tmp_path)) == ["joined.mp4"]  # no temporary files left


def test_joined_frames_are_the_parts_frames(parts, tmp_path):
    out = tmp_path / "joined.mp4"
    mux_video(parts, out)
    joined = media.decode_all(out)
    expected = media.decode_all(parts[0]) + media.decode_all(parts[1])
    assert len(joined) == len(expected) == 80
    for i in (0, 49, 50, 79):  # stream copy: bit-identical decode
        assert np.array_equal(joined[i], expected[i])
    times = media.frame_times(out)
    assert np.allclose(np.diff(times), 1 / 25, atol=1e-3)


@pytest.mark.parametrize("start, duration, expected", [(1.0, 2.0, 2.0), (0.0, 3.2, 3.2), (2.5, None, 5.3 - 2.5)])
def test_audio_from_bigbuckbunny_is_trimmed_and_copied(parts, tmp_path, start, duration, expected):
    out = tmp_path / "with audio.mp4"
    mux_video(parts, out, audio_source=media.clip("bigbuckbunny.mp4"), audio_start=start,
              audio_duration=duration)  # fmt: skip
    assert_browser_mp4(out, 640, 272, 80, 25.0)
    audio = streams_of(out)["audio"]
    assert audio is not None and audio["codec"] == "aac"
    assert audio["heard"] == pytest.approx(expected, abs=0.1)
    assert audio["stored"] == pytest.approx(expected, abs=0.1)  # no hidden audio before the cut


@pytest.mark.parametrize("suffix, codec", [(".wav", "pcm_s16le"), (".mp3", "libmp3lame")])
def test_other_audio_is_encoded_to_aac_and_mp3_is_copied(parts, tmp_path, suffix, codec):
    if not media.has_encoder(codec):
        pytest.skip(f"the bundled ffmpeg cannot encode {codec}")
    source = tmp_path / f"tone{suffix}"
    media.ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-c:a", codec, source)
    out = tmp_path / "out.mp4"
    mux_video(parts[:1], out, audio_source=source, audio_duration=2.0)
    audio = streams_of(out)["audio"]
    assert audio["codec"] == ("mp3" if suffix == ".mp3" else "aac")
    assert audio["heard"] == pytest.approx(2.0, abs=0.1)
    assert probe(out).num_frames == 50


def test_paths_with_spaces_quotes_and_unicode(bikes_frames, tmp_path):
    folder = tmp_path / "dir with spaces ö 'q'"
    folder.mkdir()
    names = ["part one 'ü' ñ.mp4", 'part "two" 音.mp4']
    for name, chunk in zip(names, (bikes_frames[:10], bikes_frames[10:25])):
        write(folder / name, chunk)
    out = folder / "out 'final' 動画.mp4"
    mux_video([folder / n for n in names], out, audio_source=media.clip("bigbuckbunny.mp4"),
              audio_duration=1.0)  # fmt: skip
    assert probe(out).num_frames == 25
    assert streams_of(out)["audio"] is not None


@pytest.mark.parametrize(
    "path, line",
    [("/a/b c.mp4", "file '/a/b c.mp4'\n"), ("/a/it's.mp4", "file '/a/it'\\''s.mp4'\n"), ("/ü/音.mp4", "file '/ü/音.mp4'\n")],
)  # fmt: skip
def test_concat_line_quotes_paths(path, line):
    assert concat_line(path) == line


def test_concat_line_refuses_line_breaks():
    with pytest.raises(ValueError, match="line break"):
        concat_line("/a/b\nfile '/etc/passwd'")


def test_mux_errors_are_clear_and_leave_the_old_output(parts, tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with pytest.raises(VideoWriteError, match="does not exist"):
        mux_video([tmp_path / "missing.mp4"], out)
    with pytest.raises(VideoReadError, match="does not exist"):
        mux_video(parts, out, audio_source=tmp_path / "missing.m4a")
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n")
    with pytest.raises(VideoWriteError, match="ffmpeg failed"):
        mux_video([not_video], out)
    with pytest.raises(VideoWriteError, match="writable"):
        mux_video(parts, tmp_path / "no folder" / "out.mp4")
    with pytest.raises(ValueError):
        mux_video([], out)
    assert out.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["notes.mp4", "out.mp4"]


def test_a_process_forked_while_a_writer_is_open_does_not_keep_ffmpeg_waiting(tmp_path):
    """On ZeroGPU the GPU workers fork from the app while its main process writes an overlay: a
    fork's copy of ffmpeg's stdin would keep ffmpeg from seeing the end of its input (and the
    writer's close waiting) for as long as the worker lives. In the fork it is /dev/null."""
    import stat

    writer = H264Writer(tmp_path / "a.mp4", 64, 48, 10)
    writer.write(np.zeros((48, 64, 3), np.uint8))
    child = os.fork()
    if child == 0:
        still_the_pipe = stat.S_ISFIFO(os.fstat(writer._proc.stdin.fileno()).st_mode)
        os._exit(1 if still_the_pipe else 0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the fork still holds ffmpeg's stdin"
    assert stat.S_ISFIFO(os.fstat(writer._proc.stdin.fileno()).st_mode)  # here, the writer's own pipe
    writer.close()
    assert probe(tmp_path / "a.mp4").num_frames == 1
