"""The app through gradio_client against a launched server on 127.0.0.1 (small SAM3, real clip)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zipfile

import pytest

from sam3_video.video import probe

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(test_model_dir, tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("app") / "app.log", "w")
    env = {**os.environ, "SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, open(log.name).read()
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_segment_video_endpoint(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    overlay, zip_path, summary = client.predict(
        handle_file(carphone), "person, window", 60, "both", 5, None, api_name="/segment_video"
    )
    assert summary["status"] == "complete" and summary["frames"] == 9
    with zipfile.ZipFile(zip_path) as z:
        frames = json.loads(z.read("annotations/ytvis_dataset.json"))["videos"][0]["frame_indices"]
        manifest = json.loads(z.read("annotations/manifest.json"))
    assert frames == list(range(56, 65))
    assert manifest["prompts"] == ["person", "window"] and manifest["video"]["num_frames"] == 120
    info = probe(overlay["video"] if isinstance(overlay, dict) else overlay)
    assert (info.num_frames, info.width, info.height, info.codec) == (9, 176, 144, "h264")


def test_bad_prompt_is_a_sentence(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="prompt is empty"):
        client.predict(handle_file(carphone), " , ", 0, "forward", None, None, api_name="/segment_video")
