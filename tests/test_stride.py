"""A frame stride (every Nth frame): the checks and their sentences, the sampled reader, the engine
against a video made of the sampled frames only, the overlay, a continued strided run, the CLI and
the batch. The formats with a stride: tests/test_export_readers.py (its `stride-4` run)."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from sam3_video import batch
from sam3_video.errors import BadRequestError
from sam3_video.pipeline import run
from sam3_video.render import render
from sam3_video.results import read_results
from sam3_video.session import VideoSession
from sam3_video.types import RunOptions, check_stride, frame_order, grid_position, ordinal, stride_for_fps
from sam3_video.video import VideoReader, probe
from tests.media import decode_all
from tests.test_cli import _assert_one_clear_line, cli

PHRASES = ("person, window",)


@pytest.fixture(scope="module")
def info(carphone):
    return probe(carphone)  # 120 frames at 29.97 fps


@pytest.mark.parametrize("stride, message", [
    (0, "A stride of 0 does not move through the video; give a whole number of at least 1"),
    (-3, "A stride of -3 does not move"),
    (2.5, "The stride 2.5 is not a whole number of frames"),
    ("five", "The stride 'five' is not a number"),
    (True, "not a whole number"),
    (120, "A stride of 120 is longer than this video allows: it has 120 frames, so only one frame would be done; "
          "use a stride from 1 to 119."),
])
def test_a_bad_stride_gets_a_sentence(info, stride, message):
    with pytest.raises(BadRequestError, match=message.replace(".", r"\.").replace("'", ".")):
        check_stride(stride, info)


def test_good_strides_pass(info):
    assert [check_stride(s, info) for s in (1, 5, 5.0, "7", 119, None, "")] == [1, 5, 5, 7, 119, 1, 1]


def test_a_target_frame_rate_gives_the_nearest_stride(info):
    assert [stride_for_fps(info, f) for f in (30, 60, 15, 10, 7.5, 1)] == [1, 1, 2, 3, 4, 30]
    for bad in (0, -1, float("nan"), "fast"):
        with pytest.raises(BadRequestError, match="is not a positive number of frames a second"):
            stride_for_fps(info, bad)
    with pytest.raises(BadRequestError, match="ask for at least 0.252 frames a second"):
        stride_for_fps(info, 0.2)  # stride 150 on 120 frames


def test_a_frame_off_the_grid_gets_a_sentence_naming_the_frames_done():
    assert grid_position(17, 5, 12, 100) == 3 and grid_position(2, 5, 12, 100) == 0
    with pytest.raises(BadRequestError, match=r"With a stride of 5 from frame 12, frames 2, 7, 12, \.\.\. are done; "
                                              r"frame 13 is not one of them\. Choose frame 12 or 17\."):
        grid_position(13, 5, 12, 100)
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 102, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "102nd", "111th"]


@pytest.mark.parametrize("step, offset", [(3, 0), (5, 2), (40, 7)])
def test_the_sampled_reader_gives_the_files_frames_going_forward_without_seeking(media, step, offset, monkeypatch):
    path = f"{media}/bikes.mp4"
    whole = probe(path)
    view = whole.sampled(step, offset)
    assert (view.num_frames, view.fps) == (len(range(offset, 250, step)), 25.0 / step)
    assert view.timestamps == whole.timestamps[offset::step] and view.file_index(2) == offset + 2 * step
    with VideoReader(path, whole) as full:
        wanted = [full[offset + k * step].copy() for k in range(view.num_frames)]
    seeks = []
    monkeypatch.setattr(VideoReader, "_seek", lambda self, i: seeks.append(i))  # a seek would lose the frame
    with VideoReader(path, view) as sampled:
        for k in range(view.num_frames):
            np.testing.assert_array_equal(sampled[k], wanted[k])
    assert seeks == []


def _lossless_video(frames: list[np.ndarray], path, fps: float) -> str:
    """The frames as a PNG-coded .mov: decoded back bit for bit (an H.264 copy would not be)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("png", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "rgb24"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return str(path)


@pytest.fixture(scope="module")
def strided(carphone, backend, tmp_path_factory):
    """Both ways from frame 7, every 3rd frame, 4 frames a direction: 7, 10, 13, 16 then 4, 1."""
    out = tmp_path_factory.mktemp("strided")
    record = run(carphone, RunOptions.of(PHRASES, 7, "both", 4, stride=3), out, backend, outputs=["overlay", "mot"])
    return out, record


def test_a_strided_run_does_every_nth_frame_named_by_its_own_index(strided, info):
    out, record = strided
    order = frame_order(info.num_frames, 7, "both", 4, 3)
    assert order == [7, 10, 13, 16, 4, 1]
    assert (record.status, record.frames_done, record.frames_expected) == ("complete", 6, 6)
    doc = json.loads((out / "run.json").read_text())
    assert doc["stride"] == 3 and doc["frame_range"] == [1, 16] and doc["video"]["num_frames"] == 120
    assert "step" not in doc["video"] and "offset" not in doc["video"]
    assert [r.frame_index for r in read_results(out)] == sorted(order)
    assert {int(line.split(",")[0]) - 1 for line in (out / "annotations" / "mot.txt").read_text().splitlines()} \
        <= set(order)


def test_a_strided_run_equals_the_model_on_a_video_of_those_frames_only(strided, carphone, backend, info, tmp_path):
    out, _ = strided
    with VideoReader(carphone, info) as reader:
        frames = [reader[i].copy() for i in range(1, 120, 3)]  # 1, 4, 7, ...: frame 7's grid
    short = _lossless_video(frames, tmp_path / "every-3rd.mov", info.fps / 3)
    run(short, RunOptions.of(PHRASES, 2, "both", 4), tmp_path / "short", backend, outputs=[])  # frame 2 there is 7 here
    ours = {r.frame_index: r for r in read_results(out)}
    theirs = list(read_results(tmp_path / "short"))
    assert [r.frame_index for r in theirs] == [0, 1, 2, 3, 4, 5]
    assert sum(len(r) for r in theirs) > 0, "the small model must find objects for this to mean anything"
    for r in theirs:
        mine = ours[1 + 3 * r.frame_index]
        assert mine.obj_ids.tolist() == r.obj_ids.tolist() and mine.labels == r.labels
        np.testing.assert_array_equal(mine.masks, r.masks)
        np.testing.assert_allclose(mine.scores, r.scores, atol=1e-4)


def test_the_overlay_plays_the_frames_done_at_the_reduced_rate(strided, carphone, info):
    out, _ = strided
    overlay = probe(out / "overlay.mp4")
    assert overlay.num_frames == 6 and overlay.fps == pytest.approx(info.fps / 3, rel=1e-3)
    assert overlay.duration == pytest.approx(6 * 3 / info.fps, rel=1e-2)  # the stretch of video it covers
    results = {r.frame_index: r for r in read_results(out)}
    with VideoReader(carphone, info) as reader:  # what frame index i of the overlay should show, i +- 1 too
        drawn = {i: render(reader[i], results.get(i, results[min(results, key=lambda f: abs(f - i))]))
                 for i in range(0, 18)}
    for image, index in zip(decode_all(out / "overlay.mp4"), sorted(results)):  # H.264 is lossy: the closest
        errors = [np.abs(image.astype(int) - drawn[i]).mean() for i in (index - 1, index, index + 1) if i >= 0]
        assert int(np.argmin(errors)) == (1 if index > 0 else 0), (index, errors)


def test_a_session_with_a_stride_speaks_the_videos_frames(carphone, backend):
    with VideoSession(carphone, backend, stride=5, anchor=12) as s:
        assert (s.stride, s.model_info.offset, s.model_info.num_frames) == (5, 2, 24)
        with pytest.raises(BadRequestError, match="frames 2, 7, 12, ... are done; frame 13 is not one of them"):
            s.detect(13, "person")
        assert s.detect(12, "person").frame_index == 12
        assert s.frames("backward", max_frames=3) == [12, 7, 2]
        assert [r.frame_index for r in s.propagate("forward", max_frames=3)] == [12, 17, 22]
        with VideoReader(carphone) as reader:  # any frame reads, the ones the stride skips too
            np.testing.assert_array_equal(s.frame(13), reader[13])
            np.testing.assert_array_equal(s.frame(17), reader[17])
    with pytest.raises(BadRequestError, match="A stride of 0"):
        VideoSession(carphone, backend, stride=0)


def test_a_bad_stride_in_a_run_is_a_sentence_before_anything_is_written(carphone, backend, tmp_path):
    with pytest.raises(BadRequestError, match="longer than this video"):
        run(carphone, RunOptions.of(PHRASES, stride=500), tmp_path / "o", backend)
    assert not (tmp_path / "o").exists()


def test_a_continued_strided_run_keeps_the_stride_and_the_frames_behind(carphone, edit_backend, tmp_path):
    first = tmp_path / "first"
    run(carphone, RunOptions.of(PHRASES, 1, "forward", 8, stride=3), first, edit_backend, outputs=["coco"])
    before = {r.frame_index: r for r in read_results(first)}
    assert sorted(before) == list(range(1, 23, 3))
    for frame, message in ((14, "With a stride of 3 from frame 1, frames 1, 4, 7, ... are done; frame 14 is not one"),):
        with pytest.raises(BadRequestError, match=message.replace(".", r"\.")):
            run(carphone, RunOptions.of((), frame, continue_from=str(first)), tmp_path / "x", edit_backend)
    with pytest.raises(BadRequestError, match="did every 3rd frame; a continuation keeps its stride"):
        run(carphone, RunOptions.of((), 13, stride=2, continue_from=str(first)), tmp_path / "x", edit_backend)
    second = tmp_path / "second"
    record = run(carphone, RunOptions.of((), 13, max_frames=4, continue_from=str(first)), second, edit_backend,
                 outputs=["overlay", "coco"])
    assert (record.stride, record.frames_done, record.frames_expected) == (3, 8, 8)
    after = {r.frame_index: r for r in read_results(second)}
    assert sorted(after) == [1, 4, 7, 10, 13, 16, 19, 22]
    for i in (1, 4, 7, 10):  # the earlier frames behind the start, unchanged
        assert after[i].obj_ids.tolist() == before[i].obj_ids.tolist()
        np.testing.assert_array_equal(after[i].masks, before[i].masks)
    assert probe(second / "overlay.mp4").num_frames == 8
    coco = json.loads((second / "annotations" / "coco_instances.json").read_text())
    assert [i["frame_index"] for i in coco["images"]] == sorted(after)


def test_cli_stride_flags(carphone, test_model_dir, tmp_path):
    out = tmp_path / "fps"
    proc = cli("segment", carphone, "-p", "person", "-o", str(out), "--model", test_model_dir, "--device", "cpu",
               "--target-fps", "10", "--max-frames", "3", "--outputs", "mot", "-q")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "run.json").read_text())["stride"] == 3  # 29.97 / 10
    assert [r.frame_index for r in read_results(out)] == [0, 3, 6]
    line = _assert_one_clear_line(cli("segment", carphone, "-p", "person", "-o", str(tmp_path / "z"), "--model",
                                      test_model_dir, "--device", "cpu", "--stride", "0"))
    assert "A stride of 0 does not move through the video; give a whole number of at least 1" in line
    both = cli("segment", carphone, "-p", "person", "-o", str(tmp_path / "b"), "--stride", "2", "--target-fps", "5")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    for command in ("segment", "batch"):
        helped = cli(command, "--help").stdout
        assert "--stride N" in helped and "--target-fps F" in helped and "every Nth frame" in helped


def test_batch_passes_the_stride_or_the_target_rate(carphone, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"video,prompt,stride,target_fps\n{carphone},car,,\n{carphone},car,4,\n{carphone},car,,15\n")
    jobs = batch.collect_jobs(str(manifest), None, str(tmp_path / "out"), stride=2)
    assert [j.options().stride for j in jobs] == [2, 4, 2]  # the default, the row's, 29.97 / 15
    assert [(j.stride, j.target_fps) for j in jobs] == [(2, None), (4, None), (1, 15.0)]
    manifest.write_text(f"video,prompt,stride,target_fps\n{carphone},car,3,10\n")
    with pytest.raises(BadRequestError, match="Row 1 sets both a stride and a target frame rate"):
        batch.collect_jobs(str(manifest), None, str(tmp_path / "out"))


def test_the_official_backend_is_given_the_sampled_frames(carphone, info):
    """Meta's predictor reads a folder of frames (backends/official.py): with a stride it gets the
    frames done, numbered 0, 1, ... as the session's backend indices."""
    import os
    import shutil
    import threading
    from contextlib import nullcontext

    import cv2

    from sam3_video.backends.official import OfficialSession

    class FakePredictor:
        lock = threading.RLock()

        def request(self, **req):
            return {"session_id": "s1"}

        def autocast(self):
            return nullcontext()

    view = info.sampled(7, 3)
    session = OfficialSession(FakePredictor(), carphone, view)
    try:
        folder = os.path.join(session.workdir, "frames")
        assert view.num_frames == 17  # 3, 10, ..., 115
        assert sorted(os.listdir(folder)) == sorted(f"{k}.jpg" for k in range(view.num_frames))
        with VideoReader(carphone, info) as reader:
            for k in (0, 1, 16):
                jpeg = cv2.cvtColor(cv2.imread(os.path.join(folder, f"{k}.jpg")), cv2.COLOR_BGR2RGB).astype(int)
                errors = [np.abs(jpeg - reader[3 + 7 * k + d]).mean() for d in (-1, 0, 1) if 3 + 7 * k + d < 120]
                assert int(np.argmin(errors)) == 1 and errors[1] < 3, (k, errors)
    finally:
        shutil.rmtree(session.workdir, ignore_errors=True)


def test_a_strided_run_salvaged_keeps_its_frames_and_stride(strided, info, tmp_path):
    """The app rewrites a cut-off GPU call's folder from its results (salvage.py): a strided run's
    overlay and formats come back on its own frames."""
    from sam3_video import salvage
    from tests.readers import cvat_task_frame, cvat_task_meta, cvat_video_tracks

    out, _ = strided
    record = salvage.rewrite(str(out), str(tmp_path / "again"), info, ["overlay", "cvat", "mot"], "stopped", "cut off")
    assert (record.stride, record.frames_done, record.frame_range, record.status) == (3, 6, [1, 16], "stopped")
    overlay = probe(tmp_path / "again" / "overlay.mp4")
    assert overlay.num_frames == 6 and overlay.fps == pytest.approx(info.fps / 3, rel=1e-3)
    xml = tmp_path / "again" / "annotations" / "cvat_video.xml"
    meta = cvat_task_meta(xml)
    assert (meta["start_frame"], meta["frame_filter"], meta["size"]) == (1, "step=3", 40)
    for track in cvat_video_tracks(xml).values():
        for frame in track["keyframes"]:
            cvat_task_frame(frame, 1, 3, 40)
