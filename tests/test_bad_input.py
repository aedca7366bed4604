"""Whatever a phone (or a user) produces: every corpus entry through the CLI and the app's service.

Each entry of tests/media.py's RECIPES gets either a correct result or one clear sentence, never a
traceback, a hang or a partial file presented as complete. The expected outcome of every entry is
written down in EXPECT (and EXTRA for the runs that start elsewhere), so a case cannot pass by
taking the other branch:

    "ok"               the run exits 0; overlay.mp4 is H.264 yuv420p with +faststart, has exactly the
                       frames processed at the source's display size (rotation applied, odd sizes
                       padded by one pixel) and fps; the manifests say complete and the frame range
    "failed: WORD"     exit 2 with the sentence (holding WORD) after some frames: the manifests say
                       failed, the overlay holds exactly the frames done
    "WORD"             exit 2 with one or two sentences holding WORD; no overlay.mp4, no manifest
                       saying complete

The CLI runs in-process on the small random SAM3 (tests/conftest.py), --max-frames 3.
"""

from __future__ import annotations

import json
import os
import re

import av
import numpy as np
import pytest

from sam3_video import cli
from sam3_video.errors import Sam3VideoError
from sam3_video.render import shrink
from sam3_video.web.service import Service
from sam3_video.video import probe

from tests import media

#: corpus entry -> expected outcome of `segment ENTRY --max-frames 3` (see the module docstring)
EXPECT = {
    "rot90.mp4": "ok",
    "rot180.mp4": "ok",
    "rot270.mp4": "ok",
    "vfr.mp4": "ok",
    "vfr.mkv": "ok",
    "odd_ffv1.mkv": "ok",
    "odd_x264rgb.mp4": "ok",
    "odd_mpeg4.avi": "ok",
    "vp9.webm": "ok",
    "mjpeg.avi": "ok",
    "single.mp4": "ok",
    "gop10.mp4": "ok",
    "raw.h264": "ok",
    "carphone.ts": "ok",
    "raw.mjpeg": "ok",
    "empty.mp4": "empty file",
    "random.mp4": "as a video",
    "notes.txt": "text file",
    "image.png": "ok",  # a still image is a one-frame video
    "audio.m4a": "no video stream",
    "truncated.mp4": "as a video",  # index at the end, cut off
    "truncated_faststart.mp4": "ok",  # index first: the frames before the cut
    "hevc.mp4": "ok",
    "hevc_10bit.mp4": "ok",
    "x264_10bit.mp4": "ok",
    "x264_yuv444.mp4": "ok",
    "av1.mkv": "ok",
    "prores.mov": "ok",
    "phone_rot90.mov": "ok",
    "odd_rot270.mp4": "ok",
    "anamorphic.mp4": "ok",  # stored 96x64 with 2:1 pixels; the overlay has the stored size, square pixels
    "anim.gif": "ok",
    "mpeg2.mpg": "ok",
    "h263.3gp": "ok",
    "tiny16.mp4": "ok",
    "4k.mp4": "ok",
    "long.mp4": "ok",  # the CLI has no length limit (the app has: test_service_open_video)
    "my clip ü 東京.mp4": "ok",
    "long_audio.mp4": "ok",
    "cut_mid_gop.ts": "ok",
    "zeroed_mdat.mp4": "no decodable video frames",
    "no_frames.mp4": "no video stream",
    "damaged_middle.mp4": "ok",  # frames 0-2 are before the damage
}

#: display (width, height) of every entry that must work: rotation applied, odd sizes as they are
DISPLAY = {
    "rot90.mp4": (144, 176), "rot180.mp4": (176, 144), "rot270.mp4": (144, 176), "vfr.mp4": (64, 48),
    "vfr.mkv": (64, 48), "odd_ffv1.mkv": (175, 143), "odd_x264rgb.mp4": (175, 143), "odd_mpeg4.avi": (175, 143),
    "vp9.webm": (96, 64), "mjpeg.avi": (96, 64), "single.mp4": (64, 48), "gop10.mp4": (96, 64),
    "raw.h264": (176, 144), "carphone.ts": (176, 144), "raw.mjpeg": (96, 64), "image.png": (64, 48),
    "truncated_faststart.mp4": (640, 272), "hevc.mp4": (96, 64), "hevc_10bit.mp4": (96, 64),
    "x264_10bit.mp4": (96, 64), "x264_yuv444.mp4": (96, 64), "av1.mkv": (96, 64), "prores.mov": (96, 64),
    "phone_rot90.mov": (144, 176), "odd_rot270.mp4": (143, 175), "anamorphic.mp4": (96, 64), "anim.gif": (96, 64),
    "mpeg2.mpg": (96, 64), "h263.3gp": (176, 144), "tiny16.mp4": (16, 16), "4k.mp4": (3840, 2160),
    "long.mp4": (64, 48), "my clip ü 東京.mp4": (96, 64), "long_audio.mp4": (96, 64), "cut_mid_gop.ts": (96, 64),
    "damaged_middle.mp4": (96, 64),
}  # fmt: skip

#: more runs: (entry, extra CLI arguments, expected outcome)
EXTRA = [
    ("long.mp4", ("--start-frame", "20000"), "ok"),
    ("truncated_faststart.mp4", ("--start-frame", "113", "--max-frames", "10"), "ok"),  # the last 3 frames
    ("damaged_middle.mp4", ("--start-frame", "20", "--max-frames", "10"), "failed: damaged"),
    ("damaged_middle.mp4", ("--start-frame", "40",), "ok"),  # past the damage
]

#: entries that the app refuses under its default limits, with a word of its sentence
SERVICE_REFUSES = {"long.mp4": "takes up to 600 s"}

#: encoders a recipe needs beyond libx264 (the bundled ffmpeg has them; another may not)
NEEDS = {"vp9.webm": "libvpx-vp9", "hevc.mp4": "libx265", "hevc_10bit.mp4": "libx265", "av1.mkv": "libaom-av1",
         "prores.mov": "prores_ks"}

#: entries whose probe() count is not compared with a full decode, and why
COUNT_UNCHECKED = {
    "damaged_middle.mp4": "probe counts the 60 frames its index lists without decoding them; 15 are damaged, "
                          "which a run reaching them says in its error sentence",
}

CASES = [(name, (), outcome) for name, outcome in EXPECT.items()] + EXTRA


def test_every_recipe_has_an_expectation():
    assert set(EXPECT) == set(media.RECIPES)
    assert len(EXPECT) >= 40
    assert set(DISPLAY) == {name for name, outcome in EXPECT.items() if outcome == "ok"}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The small model on one thread: on a busy machine torch's thread pool spins and the same
    3 frames take ten times longer; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """corpus(name) -> path of media.RECIPES[name], generated once per session."""
    folder = tmp_path_factory.mktemp("corpus")

    def make(name: str):
        if name in NEEDS and not media.has_encoder(NEEDS[name]):
            pytest.skip(f"the bundled ffmpeg has no {NEEDS[name]} encoder, so {name} cannot be made")
        return media.build(name, folder)

    return make


def decoded_frame_count(path) -> int:
    """Frames plain PyAV decodes, leaving out packets flagged corrupt (media.decode_intact, not converted)."""
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(len(packet.decode()) for packet in container.demux(stream) if not packet.is_corrupt)


def top_level_boxes(path) -> list[bytes]:
    data = open(path, "rb").read()
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        pos += size
    return boxes


def assert_sentence(text: str, word: str) -> None:
    """One or two plain sentences holding `word`: no traceback text, no exception class names."""
    assert word in text, text
    for leak in ("Traceback", 'File "', "Errno", "avcodec_", "avformat_", "unexpected failure"):
        assert leak not in text, text
    assert not re.search(r"\b[A-Z]\w*(Error|Exception)\b", text), text
    assert "\n" not in text.strip(), text
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z'])", text.strip())
    assert 1 <= len(sentences) <= 2, f"{len(sentences)} sentences: {text}"


def read_json(path):
    return json.loads(open(path, encoding="utf-8").read()) if os.path.exists(path) else None


def source_frame(path, index: int, rotation: int) -> np.ndarray:
    """Frame `index` by plain PyAV, turned as a player shows it (the rotation test_video checks against OpenCV)."""
    with av.open(os.fspath(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return np.rot90(frame.to_ndarray(format="rgb24"), rotation // 90)
    raise AssertionError(f"{path} has no frame {index}")


def assert_upright(overlay_frame: np.ndarray, path, index: int, rotation: int) -> None:
    """The overlay's frame looks like the source turned by `rotation`, more than turned any other way
    (objects are drawn over it, so this compares, rather than asking for equal pixels)."""
    h, w = overlay_frame.shape[:2]

    def distance(degrees: int) -> float:
        turned = source_frame(path, index, degrees % 360)
        turned = np.pad(turned, ((0, h - turned.shape[0]), (0, w - turned.shape[1]), (0, 0)), mode="edge")
        return float(np.abs(turned.astype(int) - overlay_frame.astype(int)).mean())

    assert distance(rotation) < distance(rotation + 180), "the overlay is upside down"  # 90 more: the size differs


def assert_overlay(path, info, frames: int, start: int = 0) -> None:
    """Browser-playable H.264 of `frames` frames at the source's display size and fps."""
    assert top_level_boxes(path).index(b"moov") < top_level_boxes(path).index(b"mdat"), "not +faststart"
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        audio = container.streams.audio[0] if container.streams.audio else None
        audio_s = float(audio.duration * audio.time_base) if audio is not None and audio.duration else None
    width, height = info.width + info.width % 2, info.height + info.height % 2  # odd sizes: padded by one
    assert [frame.shape for frame in decoded] == [(height, width, 3)] * frames
    if info.rotation:
        assert_upright(decoded[0], info.path, start, info.rotation)
    out = probe(path)
    assert out.num_frames == frames and out.rotation == 0
    if frames > 1:
        assert out.fps == pytest.approx(info.fps, rel=2e-3)
        assert out.duration == pytest.approx(frames / info.fps, rel=2e-3)
    if info.has_audio:  # the source's sound for the frames covered, no more (AAC adds a few ms)
        assert audio_s is not None and audio_s == pytest.approx(frames / info.fps, abs=0.1)
    else:
        assert audio is None


@pytest.mark.parametrize("name, extra, outcome", [pytest.param(*c, id=" ".join([c[0], *c[1]])) for c in CASES])
def test_cli_segment(corpus, test_model_dir, tmp_path, capsys, name, extra, outcome):
    path = corpus(name)
    out = tmp_path / "out"
    args = ["segment", str(path), "-p", "person", "-o", str(out), "--model", test_model_dir, "--device", "cpu",
            "--max-frames", "3", "-q", *extra]
    code = cli.main(args)
    stdout, stderr = capsys.readouterr()
    overlay, run_json, manifest = out / "overlay.mp4", read_json(out / "run.json"), read_json(
        out / "annotations" / "manifest.json")
    if outcome == "ok":
        assert code == 0, stderr
        assert "Traceback" not in stderr and "error" not in stderr, stderr
        info = probe(path)
        if name not in COUNT_UNCHECKED:
            assert info.num_frames == decoded_frame_count(path)
        start = int(extra[extra.index("--start-frame") + 1]) if "--start-frame" in extra else 0
        limit = int(extra[extra.index("--max-frames") + 1]) if "--max-frames" in extra else 3
        frames = min(limit, info.num_frames - start)
        frame_range = [start, start + frames - 1]
        for doc in (run_json, manifest):
            assert doc["status"] == "complete" and doc["frames_done"] == frames and doc["frame_range"] == frame_range
        assert (info.width, info.height) == DISPLAY[name]
        assert_overlay(overlay, info, frames, start)
        assert f"complete: {frames}/{frames} frames" in stdout
        return
    assert code == 2, (code, stderr)
    assert "Traceback" not in stdout
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    sentence = lines[0][len("error: "):]
    if outcome.startswith("failed: "):  # some frames done, then the sentence; nothing claims complete
        assert_sentence(sentence, outcome[len("failed: "):])
        assert name in sentence
        done = run_json["frames_done"]
        for doc in (run_json, manifest):
            assert doc["status"] == "failed" and doc["frames_done"] == done and doc["error"] == sentence
        assert 0 < done < 10
        assert_overlay(overlay, probe(path), done, run_json["frame_range"][0])
        return
    assert_sentence(sentence, outcome)
    assert os.path.basename(str(path)) in sentence
    assert not overlay.exists()
    for doc in (run_json, manifest):
        assert doc is None or doc["status"] != "complete"


def test_cli_segment_a_video_where_no_object_is_left(corpus, test_model_dir, tmp_path, capsys):
    # nothing found is an ordinary outcome (a dark clip, a phrase that is not there); removing every id
    # makes it certain with the random model
    out = tmp_path / "out"
    code = cli.main(["segment", str(corpus("gop10.mp4")), "-p", "person", "-o", str(out), "--model", test_model_dir,
                     "--device", "cpu", "--max-frames", "3", "-q", "--remove", ",".join(map(str, range(100)))])
    stderr = capsys.readouterr().err
    assert code == 0, stderr
    assert read_json(out / "annotations" / "manifest.json")["status"] == "complete"
    assert_overlay(out / "overlay.mp4", probe(corpus("gop10.mp4")), 3)


@pytest.fixture(scope="module")
def service(test_model_dir, tmp_path_factory):
    return Service(model=test_model_dir, device="cpu", root=str(tmp_path_factory.mktemp("service")))


@pytest.mark.parametrize("name", list(EXPECT))
def test_service_open_video(corpus, service, name):
    path = corpus(name)
    outcome = SERVICE_REFUSES.get(name, EXPECT[name])
    if outcome == "ok":
        info, image = service.open_video(name, str(path))
        assert info.num_frames == probe(path).num_frames and (info.width, info.height) == DISPLAY[name]
        assert image.shape == shrink(np.zeros((info.height, info.width, 3), np.uint8)).shape  # display size, shrunk
        return
    with pytest.raises(Sam3VideoError) as caught:
        service.open_video(name, str(path))
    assert_sentence(str(caught.value), outcome)
