"""Batch segmentation on a local Ray (CPU, small SAM3): same outputs as the single-video path,
bad videos reported and skipped, finished videos skipped on a rerun, a killed run resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sam3_video.batch import collect_jobs, is_complete
from sam3_video.errors import BadRequestError
from sam3_video.pipeline import run
from sam3_video.results import read_results
from sam3_video.types import RunOptions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--max-frames", "6", "--outputs", "overlay,coco,mot", "--workers", "1", "--device", "cpu", "-q"]


def batch(*args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    return subprocess.run([sys.executable, "-m", "sam3_video", "batch", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def videos(media, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(os.path.join(media, "carphone_pristine.mp4"), folder / "carphone.mp4")
    shutil.copy(os.path.join(media, "bikes.mp4"), folder / "sub" / "bikes.mp4")
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 100)
    return folder


def test_folder_on_ray_matches_the_single_video_path(videos, test_model_dir, backend, tmp_path):
    out = tmp_path / "out"
    proc = batch(str(videos), "--prompt", "person, car", "--out", str(out), "--model", test_model_dir, *ARGS)
    assert proc.returncode == 1, proc.stderr  # one video failed, the rest completed
    assert "Traceback" not in proc.stdout
    assert "2 complete, 1 failed of 3 videos" in proc.stdout
    reports = {os.path.basename(r["video"]): r for r in json.loads((out / "batch_summary.json").read_text())}
    assert reports["broken.mp4"]["status"] == "failed" and "as a video" in reports["broken.mp4"]["error"]
    assert reports["carphone.mp4"]["worker"] == reports["bikes.mp4"]["worker"]  # one model load, two videos
    for name, folder in (("carphone.mp4", "carphone"), ("bikes.mp4", "sub__bikes")):
        assert reports[name]["status"] == "complete" and reports[name]["frames"] == 6
        single = tmp_path / f"single-{folder}"
        run(videos / ("sub" if "bikes" in name else "") / name, RunOptions.of(("person, car",), max_frames=6), single,
            backend=backend, outputs=["overlay", "coco", "mot"])
        ours, theirs = list(read_results(out / folder)), list(read_results(single))
        assert [r.frame_index for r in ours] == [r.frame_index for r in theirs] == list(range(6))
        for a, b in zip(ours, theirs):
            assert a.obj_ids.tolist() == b.obj_ids.tolist() and a.labels == b.labels
            np.testing.assert_array_equal(a.masks, b.masks)
        mot = os.path.join("annotations", "mot.txt")
        assert (out / folder / mot).read_text() == (single / mot).read_text()
        assert (out / folder / "overlay.mp4").exists()

    # a second run checks the outputs and skips what is complete
    stamp = os.path.getmtime(out / "carphone" / "run.json")
    again = batch(str(videos), "--prompt", "person, car", "--out", str(out), "--model", test_model_dir, *ARGS)
    assert "2 skipped, 1 failed of 3 videos" in again.stdout, again.stdout + again.stderr
    assert os.path.getmtime(out / "carphone" / "run.json") == stamp


def test_a_killed_batch_finishes_on_the_next_run(media, test_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        shutil.copy(os.path.join(media, "carphone_pristine.mp4"), folder / f"clip{k}.mp4")
    out = tmp_path / "out"
    args = [str(folder), "--prompt", "person", "--out", str(out), "--model", test_model_dir,
            "--max-frames", "40", "--outputs", "overlay", "--workers", "1", "--device", "cpu", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "sam3_video", "batch", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = collect_jobs(str(folder), "person", str(out), max_frames=40)
    while proc.poll() is None and not any(is_complete(j, ["overlay"]) for j in jobs):  # until one is written
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    done_before = [is_complete(j, ["overlay"]) for j in jobs]
    assert 1 <= sum(done_before) < 3, done_before
    again = batch(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{sum(done_before)} skipped" in again.stdout
    assert all(is_complete(j, ["overlay"]) for j in jobs)


def test_manifest_sets_prompts_and_ranges_per_video(media, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("video,prompt,start_frame,max_frames\n"
                        f"{os.path.join(media, 'bikes.mp4')},car,10,5\n"
                        f"{os.path.join(media, 'carphone_pristine.mp4')},,0,\n")
    jobs = collect_jobs(str(manifest), "person", str(tmp_path / "out"), max_frames=20)
    assert [(j.prompts, j.start_frame, j.max_frames) for j in jobs] == [(("car",), 10, 5), (("person",), 0, 20)]
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"video": "bikes.mp4", "prompt": "car, light"}) + "\n")
    shutil.copy(os.path.join(media, "bikes.mp4"), tmp_path / "bikes.mp4")
    (job,) = collect_jobs(str(jsonl), None, str(tmp_path / "out"))
    assert job.video == str(tmp_path / "bikes.mp4") and job.prompts == ("car", "light")


def test_inputs_that_name_no_videos_are_sentences(tmp_path):
    with pytest.raises(BadRequestError, match="No videos found"):
        collect_jobs(str(tmp_path / "*.mp4"), "car", str(tmp_path / "out"))
    (tmp_path / "a.mp4").write_bytes(b"x")
    with pytest.raises(BadRequestError, match="No prompt"):
        collect_jobs(str(tmp_path), None, str(tmp_path / "out"))
