"""Shared fixtures: the small random SAM3 is built once per test run, loaded through the same code
as the real model, and the real clips come from ../shared/media (or $SAM3_MEDIA)."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # labelme (used to read our files back) imports Qt
warnings.filterwarnings("ignore", message=".*kernels.*")

from tests.media import media_dir  # noqa: E402


@pytest.fixture(scope="session")
def media() -> str:
    return media_dir()


@pytest.fixture(scope="session")
def carphone(media) -> str:
    return os.path.join(media, "carphone_pristine.mp4")


@pytest.fixture(scope="session")
def test_model_dir(tmp_path_factory) -> str:
    from sam3_video.testmodel import make_test_model

    return make_test_model(tmp_path_factory.mktemp("sam3-small"))


@pytest.fixture(scope="session")
def backend(test_model_dir):
    from sam3_video.backends import load_backend

    return load_backend(test_model_dir, backend="auto", device="cpu")


@pytest.fixture(scope="session")
def edit_backend(backend):
    """A private copy of the small backend for edit tests. The random tracker says "no object" for
    about half of its outputs, which empties a mask; this copy's tracker always says "object"
    (object-score bias +5) and its detection cuts keep 3 objects on carphone's frame 0, so edits
    are visible and the object limit (8) leaves room. The shipped code and `backend` are untouched."""
    import copy
    import threading

    import torch

    private = copy.copy(backend)
    private.model = copy.deepcopy(backend.model)
    private.lock = threading.RLock()
    private.default_thresholds = (0.492, 0.492)
    with torch.no_grad():
        private.model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(5.0)
    return private


@pytest.fixture()
def fail_at_frame(monkeypatch):
    """fail_at_frame(frame, fail): the transformers session calls `fail()` instead of its step for
    `frame` (until `monkeypatch.undo()`)."""
    from sam3_video.backends import transformers as tb

    step = tb.TransformersSession._step

    def arm(frame: int, fail) -> None:
        def failing_step(self, frame_index, reverse):
            if frame_index == frame:
                fail()
            return step(self, frame_index, reverse)

        monkeypatch.setattr(tb.TransformersSession, "_step", failing_step)

    return arm


def cpu_allocation_failure() -> None:
    """A real allocator failure (2**60 bytes), as one inside a layer would be."""
    import torch

    torch.empty(1 << 60, dtype=torch.uint8)


def video_path(value) -> str:
    """The file path of a gradio_client Video output (a dict or a path, by Gradio version)."""
    return value["video"] if isinstance(value, dict) else value


def frames_in_zip(zip_path) -> list[int]:
    """The frame indices an annotations.zip covers (its YouTube-VIS video)."""
    import json
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        return json.loads(z.read("annotations/ytvis_dataset.json"))["videos"][0]["frame_indices"]


def manifest_in_zip(zip_path) -> dict:
    import json
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        return json.loads(z.read("annotations/manifest.json"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(log_dir, env: dict) -> tuple:
    """Start `python app.py` on a free port of 127.0.0.1; return (url, process, log path)."""
    import socket
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    port = _free_port()
    log_path = os.path.join(str(log_dir), "app.log")
    log = open(log_path, "w")
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **env}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=repo, env=full_env,
                            stdout=log, stderr=log)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}/", proc, log_path
        except OSError:
            assert proc.poll() is None, open(log_path).read()
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start in 120 s:\n" + open(log_path).read())


@pytest.fixture(scope="session")
def app_url(test_model_dir, tmp_path_factory):
    """The app on the small SAM3 (CPU), shared by the API and browser tests."""
    url, proc, _ = launch_app(tmp_path_factory.mktemp("app"), {"SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu",
                                                               "SAM3_GPU_CONCURRENCY": "2"})
    yield url
    proc.terminate()
    proc.wait(timeout=30)
