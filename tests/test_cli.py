"""The CLI as a user runs it: a subprocess, a real clip, the small SAM3 in a local folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sam3_video.results import read_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, env=None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sam3_video", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=600)


def test_segment_end_to_end(carphone, test_model_dir, tmp_path):
    out = tmp_path / "out"
    proc = cli("segment", carphone, "--prompt", "person, window", "--out", str(out), "--model", test_model_dir,
               "--device", "cpu", "--start-frame", "40", "--direction", "both")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "complete: 120/120 frames" in proc.stdout
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["frames_done"] == 120
    assert manifest["prompts"] == ["person", "window"] and manifest["backend"] == "transformers"
    results = list(read_results(out))
    assert [r.frame_index for r in results] == list(range(120))  # every frame, once
    label_of, seen = {}, set()
    for r in results:
        assert r.masks.shape == (len(r), 144, 176)
        for obj_id, label, mask in zip(r.obj_ids.tolist(), r.labels, r.masks):
            assert label_of.setdefault(obj_id, label) == label  # an id never changes label
            if mask.any():
                seen.add(obj_id)
    assert set(label_of.values()) == {"person", "window"}
    assert manifest["objects_per_label"] == {  # objects with a pixel somewhere: what the files hold
        label: n for label in ("person", "window") if (n := sum(1 for k in seen if label_of[k] == label))
    }


def _assert_one_clear_line(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("model", ["facebook/sam3", "/nonexistent/sam3-copy"])
def test_missing_model_gives_the_fix(carphone, tmp_path, model):
    proc = cli("segment", carphone, "-p", "person", "-o", str(tmp_path / "o"), "--model", model, "--device", "cpu",
               env={"HF_TOKEN": "hf_secret_value_123"})
    line = _assert_one_clear_line(proc)
    assert model in line and "gated" in line and "HF_TOKEN" in line and "--model" in line
    assert "make-test-model" in line
    assert "hf_secret_value_123" not in proc.stderr + proc.stdout
    assert not (tmp_path / "o").exists(), "nothing is written when the model cannot load"


def test_unreadable_video(test_model_dir, tmp_path):
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(os.urandom(4096))
    proc = cli("segment", str(bad), "-p", "person", "-o", str(tmp_path / "o"), "--model", test_model_dir, "--device", "cpu")
    line = _assert_one_clear_line(proc)
    assert "holiday.mp4" in line and "video" in line


def test_bad_options(carphone, test_model_dir, tmp_path):
    proc = cli("segment", carphone, "-p", " , ", "-o", str(tmp_path / "o"), "--model", test_model_dir, "--device", "cpu")
    assert "prompt is empty" in _assert_one_clear_line(proc)
    proc = cli("segment", carphone, "-p", "car", "-o", str(tmp_path / "o"), "--model", test_model_dir,
               "--device", "cpu", "--start-frame", "500")
    assert "frames 0 to 119" in _assert_one_clear_line(proc)


def test_make_test_model(tmp_path):
    proc = cli("make-test-model", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr
    names = set(os.listdir(tmp_path / "m"))
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json"} <= names


def test_out_of_memory_is_one_sentence_and_keeps_the_frames(carphone, test_model_dir, tmp_path, fail_at_frame, capsys):
    """In-process (to inject the failure): the model's allocation fails at frame 5."""
    from sam3_video import cli as cli_module
    from tests.conftest import cpu_allocation_failure

    fail_at_frame(5, cpu_allocation_failure)
    out = tmp_path / "o"
    code = cli_module.main(["segment", str(carphone), "-p", "person", "-o", str(out), "--model", test_model_dir,
                            "--device", "cpu", "--max-frames", "20"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "error: Ran out of memory on cpu after 5 of 20 frames; the 5 frames done are saved." in err
    assert [r.frame_index for r in read_results(out)] == list(range(5))
    assert json.loads((out / "run.json").read_text())["status"] == "failed"
