"""The pipeline's outputs on the small SAM3 and real clips: overlay video, annotations, manifest,
for whole, both-way and stopped runs."""

from __future__ import annotations

import json
import os
import zipfile

import av
import cv2
import numpy as np
import pytest

from sam3_video.errors import BadRequestError
from sam3_video.pipeline import run
from sam3_video.render import render
from sam3_video.results import read_results
from sam3_video.types import RunOptions
from sam3_video.video import VideoReader, probe
from tests.media import decode_all


def _video_stream(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return s.codec_context.name, s.codec_context.pix_fmt, len(c.streams.audio)


def _annotation_frames(out) -> dict[str, list[int]]:
    folder = out / "annotations"
    coco = json.loads((folder / "coco_instances.json").read_text())
    return {
        "coco": sorted(i["frame_index"] for i in coco["images"]),
        "ytvis": json.loads((folder / "ytvis_dataset.json").read_text())["videos"][0]["frame_indices"],
        "labelme": sorted(int(p.stem) for p in (folder / "labelme").glob("*.json")),
        "davis": sorted(int(p.stem) for p in (folder / "davis").glob("*.png")),
    }


@pytest.fixture(scope="module")
def both_way_run(carphone, backend, tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    summary = run(carphone, RunOptions.of(("person, window",), 20, "both", 6), out, backend=backend)
    return out, summary


def test_overlay_is_browser_h264_with_the_frames_in_order(both_way_run, carphone):
    out, summary = both_way_run
    assert summary.complete and summary.frames_done == 11
    info = probe(out / "overlay.mp4")
    assert (info.num_frames, info.width, info.height) == (11, 176, 144)
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-3)
    assert _video_stream(out / "overlay.mp4")[:2] == ("h264", "yuv420p")
    assert os.stat(out / "overlay.mp4").st_mode & 0o044 == 0o044  # an ordinary file others may read
    results = list(read_results(out))
    assert [r.frame_index for r in results] == list(range(15, 26))
    assert sum(len(r) for r in results) > 0, "the small model must find objects for this test to mean anything"
    decoded = decode_all(out / "overlay.mp4")
    with VideoReader(carphone) as reader:
        sources = [reader[r.frame_index] for r in results]
    expected = [render(source, r) for source, r in zip(sources, results)]
    for k, got in enumerate(decoded):
        # the right frame in the right place: closest to its own drawing (H.264 is lossy)
        errors = [np.abs(got.astype(int) - e).mean() for e in expected]
        assert int(np.argmin(errors)) == k and errors[k] < 16, (k, errors)
        r, source = results[k], sources[k]
        if r.masks.any():  # inside a mask the colour changed
            inside = r.masks.any(0)
            assert np.abs(got[inside].astype(int) - source[inside]).mean() > 25
        untouched = np.all(expected[k] == source, axis=-1).astype(np.uint8)
        far = cv2.erode(untouched, np.ones((9, 9), np.uint8)).astype(bool)  # 4+ px from any drawing
        if far.sum() > 500:  # far from what was drawn nothing changed (beyond H.264's loss)
            assert np.abs(got[far].astype(int) - source[far]).mean() < 8


def test_annotations_cover_exactly_the_processed_frames(both_way_run):
    out, summary = both_way_run
    assert all(frames == list(range(15, 26)) for frames in _annotation_frames(out).values())
    manifest = json.loads((out / "annotations" / "manifest.json").read_text())
    assert manifest["frame_range"] == [15, 25] and manifest["direction"] == "both"
    assert manifest["prompts"] == ["person", "window"] and manifest["backend"] == "transformers"
    assert set(manifest["thresholds"]) == {"score_threshold_detection", "new_det_thresh"}
    assert manifest["software"].startswith("sam3-video ")
    with zipfile.ZipFile(out / "annotations.zip") as z:
        assert "annotations/manifest.json" in z.namelist() and "annotations/mots.txt" in z.namelist()
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "complete" and run_json["frame_range"] == [15, 25]


def test_stopped_run_keeps_valid_files_for_the_frames_done(carphone, backend, tmp_path):
    holder = {}

    def on_progress(p):
        if p.done == 22:  # all 20 frames forward, then 2 backward (SAM3 holds 15 more back)
            holder["session"].stop()

    summary = run(carphone, RunOptions.of(("person",), 40, "both", 20), tmp_path, backend=backend,
                  on_progress=on_progress, on_session=lambda s: holder.__setitem__("session", s))
    assert summary.status == "stopped" and 22 <= summary.frames_done < 39
    done = sorted(r.frame_index for r in read_results(tmp_path))
    assert len(done) == summary.frames_done and done == list(range(done[0], 60)) and done[0] < 40
    assert all(frames == done for frames in _annotation_frames(tmp_path).values())
    assert probe(tmp_path / "overlay.mp4").num_frames == len(done)
    assert json.loads((tmp_path / "annotations" / "manifest.json").read_text())["status"] == "stopped"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left


def test_overlay_carries_the_source_audio(media, backend, tmp_path):
    summary = run(os.path.join(media, "bigbuckbunny.mp4"), RunOptions.of(("rabbit",), 10, "forward", 5), tmp_path,
                  backend=backend, outputs=["overlay"])
    assert summary.complete
    assert _video_stream(tmp_path / "overlay.mp4")[2] == 1
    with av.open(str(tmp_path / "overlay.mp4")) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.channels == 6
    assert probe(tmp_path / "overlay.mp4").num_frames == 5
    assert not (tmp_path / "annotations").exists()  # only what was asked for


def test_unknown_output_is_refused_before_any_work(carphone, backend, tmp_path):
    with pytest.raises(BadRequestError, match="Unknown output"):
        run(carphone, RunOptions.of(("person",)), tmp_path / "o", backend=backend, outputs=["overlay", "gif"])
    assert not (tmp_path / "o").exists()


def test_writing_in_its_own_thread_gives_the_same_files(carphone, backend, tmp_path):
    opts = RunOptions.of(("person, window",), 10, "both", 5)
    for overlap in (False, True):
        assert run(carphone, opts, tmp_path / str(overlap), backend=backend, overlap=overlap).complete
    same = ["results.jsonl", "annotations/mot.txt", "annotations/mots.txt", "annotations/coco_instances.json",
            "annotations/labelme/00012.json"]
    for name in same:
        assert (tmp_path / "False" / name).read_bytes() == (tmp_path / "True" / name).read_bytes(), name
    assert probe(tmp_path / "True" / "overlay.mp4").num_frames == 9
    np.testing.assert_array_equal(decode_all(tmp_path / "False" / "overlay.mp4")[3],
                                  decode_all(tmp_path / "True" / "overlay.mp4")[3])



@pytest.mark.parametrize("outputs", [["ytvis"], ["labelme"], ["overlay"]])
def test_the_files_decode_frames_with_a_reader_of_their_own(carphone, backend, tmp_path, monkeypatch, outputs):
    """The model's video reader is not thread-safe and is the model's: the writers (a format that
    ships frames, YouTube-VIS's JPEGImages or labelme's images, and the overlay) decode the frames
    they need with a reader of their own, in the writer's thread."""
    import threading

    from sam3_video.session import VideoSession
    from sam3_video.video import VideoReader

    model_reads, writer_reads, frame, get = set(), set(), VideoSession.frame, VideoReader.__getitem__
    monkeypatch.setattr(VideoSession, "frame", lambda self, i: model_reads.add(threading.get_ident()) or frame(self, i))
    monkeypatch.setattr(VideoReader, "__getitem__",
                        lambda self, i: writer_reads.add(threading.current_thread().name) or get(self, i))
    assert run(carphone, RunOptions.of(("person",), 0, "forward", 4), tmp_path / "o", backend=backend,
               outputs=outputs).complete
    assert model_reads <= {threading.get_ident()}  # the model's reader: only on the model's thread
    assert "sam3-writer" in writer_reads


def test_the_model_never_waits_for_the_writers(carphone, backend, tmp_path):
    """A writer held back until the model has done every frame: the model still goes on to the end
    (the writers take the frames later), and the files cover every frame."""
    import threading

    model_done = threading.Event()

    class HeldBack:
        def __init__(self):
            self.frames = []

        def write(self, frame):
            assert model_done.wait(600), "the model waited for the writer"  # only binds if it does
            self.frames.append(frame.frame_index)

        def close(self):
            pass

    held = HeldBack()
    written = []

    def on_progress(p):
        if p.written is None and p.done == p.total:
            model_done.set()
        elif p.written is not None:
            written.append(p.written)

    summary = run(carphone, RunOptions.of(("person",), 0, "forward", 30), tmp_path, backend=backend, sinks=[held],
                  on_progress=on_progress)
    assert summary.complete and held.frames == list(range(30))
    assert _annotation_frames(tmp_path)["coco"] == list(range(30))
    assert probe(tmp_path / "overlay.mp4").num_frames == 30
    assert written == sorted(written) and all(w < 30 for w in written)  # the writing's progress, after the model's


@pytest.mark.parametrize("bad_frame", [3, 29])  # 29, the last: the error comes out only when the writer closes
def test_a_sink_that_fails_fails_the_run_and_the_rest_is_closed(carphone, backend, tmp_path, bad_frame):
    class Broken:
        def __init__(self):
            self.closed = False

        def write(self, frame):
            if frame.frame_index == bad_frame:
                raise OSError("No space left on device (simulated)")

        def close(self):
            self.closed = True

    broken = Broken()
    with pytest.raises(OSError, match="No space left"):
        run(carphone, RunOptions.of(("person",), 0, "forward", 30), tmp_path, backend=backend, sinks=[broken])
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["status"] == "failed" and "No space left" in manifest["error"] and broken.closed
    done = [r.frame_index for r in read_results(tmp_path)]
    assert done == list(range(len(done))) and probe(tmp_path / "overlay.mp4").num_frames == len(done)
    assert _annotation_frames(tmp_path)["coco"] == done  # every other output covers the same frames
    assert done == list(range(bad_frame + 1))  # the other sinks took the frame the broken one failed on
    assert manifest["frames_done"] == bad_frame + 1 and manifest["frame_range"] == [0, bad_frame]
    exported = json.loads((tmp_path / "annotations" / "manifest.json").read_text())
    assert exported["status"] == "failed" and exported["frames_done"] == bad_frame + 1
