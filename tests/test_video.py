"""probe() and VideoReader against plain PyAV (and OpenCV for rotation), on real and generated clips.

Every frame the reader returns must be identical to a plain `av.open(p).decode(video=0)` decode,
whatever order it is asked in. Generated clips are made once per session with the bundled ffmpeg
(see tests/media.py); CPU only.
"""

from __future__ import annotations

import re

import av
import numpy as np
import pytest

from sam3_video.errors import VideoReadError
from sam3_video.types import VideoInfo
from sam3_video.video import VideoReader, probe

try:
    import media
except ImportError:  # tests/ imported as a package
    from tests import media

REAL = list(media.REAL_CLIPS)


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """clip(name) -> path of media.RECIPES[name], generated once per session."""
    folder = tmp_path_factory.mktemp("clips")

    def make(name: str):
        if name.endswith(".webm") and not media.has_encoder("libvpx-vp9"):
            pytest.skip("the bundled ffmpeg has no libvpx-vp9 encoder, so no webm/VP9 clip can be made")
        return media.build(name, folder)

    return make


def cache_of(info: VideoInfo, frames: int) -> int:
    """cache_bytes that hold `frames` decoded frames of this video."""
    return frames * info.width * info.height * 3


def assert_frame(frame: np.ndarray, info: VideoInfo) -> None:
    assert frame.dtype == np.uint8
    assert frame.shape == (info.height, info.width, 3)


def assert_same_frames(reader: VideoReader, ref: list[np.ndarray], order) -> None:
    for i in order:
        frame = reader[int(i)]
        assert_frame(frame, reader.info)
        assert np.array_equal(frame, ref[i]), f"frame {i} differs from the plain PyAV decode"


def assert_user_message(err: BaseException, name: str) -> None:
    """A message for a person: one line, one or two sentences, names the file, no traceback text."""
    msg = str(err)
    assert msg.strip() == msg and msg.endswith("."), msg
    assert "\n" not in msg, msg
    for leak in ("Traceback", 'File "', "Errno", "av.error", "avcodec_", "avformat_", "returned -"):
        assert leak not in msg, msg
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z'])", msg)
    assert 1 <= len(sentences) <= 2, f"{len(sentences)} sentences: {msg}"
    assert name in msg, msg


# --- the real clips (tests/data) ---------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL)
def test_probe_shared_clip(name):
    path = media.clip(name)
    want = media.REAL_CLIPS[name]
    info = probe(path)
    assert (info.width, info.height) == (want["width"], want["height"])
    assert info.size == (want["height"], want["width"])
    assert info.num_frames == want["num_frames"]
    assert info.fps == pytest.approx(want["fps"], rel=1e-4)
    assert info.duration == pytest.approx(want["num_frames"] / want["fps"], rel=1e-4)
    assert info.has_audio is want["has_audio"]
    assert info.rotation == 0
    assert info.variable_frame_rate is False
    assert info.codec == "h264"
    assert info.path == str(path)
    assert len(info.timestamps) == info.num_frames
    assert info.timestamps[0] == 0
    assert np.all(np.diff(info.timestamps) > 0)


@pytest.fixture(scope="module", params=REAL)
def shared(request):
    """(path, info, every frame by plain PyAV) of one shared clip; one clip in memory at a time."""
    path = media.clip(request.param)
    return path, probe(path), media.decode_all(path)


def test_shared_reference_decode_has_every_frame(shared):
    path, info, ref = shared
    assert len(ref) == info.num_frames


def test_reader_forward_matches_pyav(shared):
    path, info, ref = shared
    with VideoReader(path) as reader:
        assert len(reader) == len(ref)
        frames = 0
        for i, frame in enumerate(reader):
            assert_frame(frame, info)
            assert np.array_equal(frame, ref[i]), f"frame {i} differs from the plain PyAV decode"
            frames += 1
        assert frames == len(ref)


#: Frames the backward test's cache holds: fewer than video.BACKWARD_CHUNK, so each chunk is decoded,
#: partly evicted and decoded again; 12 for the 720p clip keeps the test fast.
BACKWARD_CACHE_FRAMES = {"bigbuckbunny.mp4": 12}


def test_reader_backward_small_cache_matches_pyav(shared):
    path, info, ref = shared
    frames = BACKWARD_CACHE_FRAMES.get(path.name, 5)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, frames)) as reader:
        assert_same_frames(reader, ref, range(len(ref) - 1, -1, -1))


def test_reader_random_order_matches_pyav(shared):
    path, info, ref = shared
    order = np.random.default_rng(1234).choice(len(ref), size=10, replace=False)
    order = [0, len(ref) - 1, *order.tolist(), 0, len(ref) // 2]  # both ends, repeats
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, order)


def test_reader_cache_stays_within_its_byte_budget():
    path = media.clip("carphone_pristine.mp4")
    info = probe(path)
    budget = cache_of(info, 5)
    with VideoReader(path, info=info, cache_bytes=budget) as reader:
        for i in [*range(len(reader) - 1, len(reader) - 40, -1), *range(0, 20)]:
            reader[i]
            cached = reader._cache.values()
            assert sum(a.nbytes for a in cached) <= budget
            assert len(reader._cache) <= 5


def test_reader_uses_given_info_and_pathlike():
    path = media.clip("carphone_pristine.mp4")
    info = probe(str(path))
    with VideoReader(path, info=info) as reader:
        assert reader.info is info
        assert reader.path == str(path)
        assert len(reader) == info.num_frames


@pytest.mark.parametrize("index", [-1, 120, 10_000])
def test_reader_index_outside_the_video_raises_index_error(index):
    with VideoReader(media.clip("carphone_pristine.mp4")) as reader:
        with pytest.raises(IndexError):
            reader[index]


def test_editing_a_returned_frame_does_not_change_the_cache():
    with VideoReader(media.clip("carphone_pristine.mp4")) as reader:
        frame = reader[3]
        original = frame.copy()
        try:
            frame[:] = 0
        except ValueError:  # read-only frames are a fine fix too
            pass
        assert np.array_equal(reader[3], original)


# --- rotation metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_probe_rotated_clip_reports_display_size(clip, degrees):
    info = probe(clip(f"rot{degrees}.mp4"))
    assert info.rotation == degrees
    if degrees == 180:
        assert (info.width, info.height) == (176, 144)
    else:
        assert (info.width, info.height) == (144, 176)
    assert info.num_frames == 120


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_frames_match_opencv(clip, degrees):
    cv2 = pytest.importorskip("cv2")
    path = clip(f"rot{degrees}.mp4")
    capture = cv2.VideoCapture(str(path))
    try:
        with VideoReader(path) as reader:
            for i in range(3):
                ok, bgr = capture.read()
                assert ok
                expected = np.ascontiguousarray(bgr[..., ::-1])
                frame = reader[i]
                assert_frame(frame, reader.info)
                assert np.array_equal(frame, expected), f"frame {i} is not oriented as OpenCV shows it"
    finally:
        capture.release()


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_frames_backward_are_rotated_pyav_frames(clip, degrees):
    path = clip(f"rot{degrees}.mp4")
    ref = [np.rot90(f, degrees // 90) for f in media.decode_all(path)]
    info = probe(path)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, [119, 118, 117, 90, 60, 0])


# --- variable frame rate -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_probe_variable_frame_rate(clip, name):
    path = clip(name)
    info = probe(path)
    # the true count, from the packets, not from a header's duration x fps (OpenCV says 62 for the mkv)
    assert info.num_frames == len(media.decode_all(path)) == 60
    assert info.variable_frame_rate is True
    ts = np.array(info.timestamps)
    assert len(ts) == 60 and ts[0] == 0
    assert np.all(np.diff(ts) > 0)
    assert ts == pytest.approx(media.frame_times(path), abs=1e-6)
    assert np.diff(ts[:30]) == pytest.approx(0.04, abs=1e-6)  # 25 fps part
    assert np.diff(ts[31:]).mean() == pytest.approx(0.1, abs=0.01)  # 10 fps part
    assert info.fps == pytest.approx(info.num_frames / info.duration)
    assert 10 < info.fps < 25


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_reader_variable_frame_rate_matches_pyav(clip, name):
    path = clip(name)
    ref = media.decode_all(path)
    info = probe(path)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, range(59, -1, -1))
        assert_same_frames(reader, ref, [0, 45, 10, 59, 30, 29])


# --- other sizes, codecs and containers ----------------------------------------------------------

FORMATS = [
    # name, width, height, frames, codec
    ("odd_ffv1.mkv", 175, 143, 10, "ffv1"),
    ("odd_x264rgb.mp4", 175, 143, 10, "h264"),
    ("odd_mpeg4.avi", 175, 143, 10, "mpeg4"),
    ("vp9.webm", 96, 64, 20, "vp9"),
    ("mjpeg.avi", 96, 64, 20, "mjpeg"),
    ("single.mp4", 64, 48, 1, "h264"),
    ("gop10.mp4", 96, 64, 60, "h264"),
]


@pytest.mark.parametrize("name, width, height, frames, codec", FORMATS)
def test_probe_generated_formats(clip, name, width, height, frames, codec):
    info = probe(clip(name))
    assert (info.width, info.height, info.num_frames, info.codec) == (width, height, frames, codec)
    assert info.fps == pytest.approx(25, rel=1e-3)
    assert info.duration == pytest.approx(frames / 25, rel=1e-3)
    assert info.rotation == 0 and not info.variable_frame_rate and not info.has_audio
    assert len(info.timestamps) == frames


@pytest.mark.parametrize("name", [row[0] for row in FORMATS])
def test_reader_generated_formats_match_pyav(clip, name):
    path = clip(name)
    ref = media.decode_all(path)
    info = probe(path)
    n = len(ref)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert len(reader) == n
        assert_same_frames(reader, ref, range(n))
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, range(n - 1, -1, -1))
        assert_same_frames(reader, ref, np.random.default_rng(0).permutation(n))


def test_png_image_probes_as_a_single_frame_video(clip):
    # PyAV opens a still image as a one-frame video; the package accepts it as such
    path = clip("image.png")
    info = probe(path)
    assert (info.width, info.height, info.num_frames) == (64, 48, 1)
    with VideoReader(path, info=info) as reader:
        assert np.array_equal(reader[0], media.decode_all(path)[0])


# --- bad inputs ----------------------------------------------------------------------------------

BAD = [
    # recipe name, words the message must contain
    ("empty.mp4", "empty"),
    ("random.mp4", "as a video"),
    ("audio.m4a", "no video stream"),
    ("truncated.mp4", "as a video"),
]


@pytest.mark.parametrize("name, words", BAD)
@pytest.mark.parametrize("opener", [probe, VideoReader], ids=["probe", "VideoReader"])
def test_bad_input_raises_video_read_error(clip, name, words, opener):
    with pytest.raises(VideoReadError) as caught:
        opener(clip(name))
    assert_user_message(caught.value, name)
    assert words in str(caught.value)


@pytest.mark.parametrize("opener", [probe, VideoReader], ids=["probe", "VideoReader"])
def test_missing_path_raises_video_read_error(tmp_path, opener):
    with pytest.raises(VideoReadError) as caught:
        opener(tmp_path / "nowhere.mp4")
    assert_user_message(caught.value, "nowhere.mp4")
    assert "does not exist" in str(caught.value)


@pytest.mark.parametrize("opener", [probe, VideoReader], ids=["probe", "VideoReader"])
def test_directory_raises_video_read_error(tmp_path, opener):
    folder = tmp_path / "frames.mp4"
    folder.mkdir()
    with pytest.raises(VideoReadError) as caught:
        opener(folder)
    assert_user_message(caught.value, "frames.mp4")
    assert "folder" in str(caught.value)


def test_text_file_raises_video_read_error(clip):
    with pytest.raises(VideoReadError) as caught:
        probe(clip("notes.txt"))
    assert_user_message(caught.value, "notes.txt")


def test_text_named_mp4_raises_video_read_error(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("This is a text file, not a video.\n" * 50)
    with pytest.raises(VideoReadError) as caught:
        probe(path)
    assert_user_message(caught.value, "notes.mp4")


def _decodable_prefix(path) -> list[np.ndarray]:
    """Frames plain PyAV decodes before the first error."""
    frames = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError:
            pass
    return frames


def test_truncated_faststart_mp4_gives_every_frame_before_the_cut(clip):
    # the index lists all 250 frames; the demuxer flags the packet cut in half corrupt, and the
    # packets after it are gone. Plain PyAV feeds the cut packet to the decoder, which raises and
    # loses the frames still in its reorder buffer; the reader leaves that packet out instead.
    path = clip("truncated_faststart.mp4")
    prefix = _decodable_prefix(path)
    ref = media.decode_intact(path)
    assert 0 < len(prefix) < len(ref) < 250
    assert all(np.array_equal(a, b) for a, b in zip(prefix, ref))
    info = probe(path)
    assert info.num_frames == len(ref)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, range(len(ref)))
        assert_same_frames(reader, ref, range(len(ref) - 1, len(ref) - 40, -1))


# --- containers without an index or timestamps ---------------------------------------------------


def test_raw_h264_stream_without_timestamps(clip):
    path = clip("raw.h264")
    info = probe(path)
    assert info.num_frames == len(media.decode_all(path)) == 120
    assert info.fps == pytest.approx(30000 / 1001)  # from the stream's own timing (VUI), not the demuxer's 25


def test_ts_cut_mid_gop_counts_from_the_first_keyframe(clip):
    # the first packet is a frame whose keyframe was cut off: no decoder gives it, so it is not counted
    path = clip("cut_mid_gop.ts")
    ref = media.decode_all(path)
    info = probe(path)
    assert info.num_frames == len(ref) == 40 and info.fps == pytest.approx(25)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, [0, 1, 39, 20, 19, 0])


def test_reader_mpeg_ts_matches_pyav(clip):
    path = clip("carphone.ts")
    ref = media.decode_all(path)
    with VideoReader(path) as reader:
        assert len(reader) == len(ref) == 120
        assert_same_frames(reader, ref, range(len(ref)))


def test_reader_raw_mjpeg_backward_matches_pyav(clip):
    path = clip("raw.mjpeg")
    ref = media.decode_all(path)
    info = probe(path)
    with VideoReader(path, info=info, cache_bytes=cache_of(info, 5)) as reader:
        assert_same_frames(reader, ref, range(len(ref) - 1, -1, -1))
