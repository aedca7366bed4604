"""Many visitors, cancelling and long use, against a launched app on 127.0.0.1 (small SAM3, CPU).

One app of its own: one model call at a time (SAM3_GPU_CONCURRENCY=1), at most 3 waiting
(SAM3_QUEUE_SIZE=3), and visitors' files expire after 45 s (SAM3_SESSION_TTL_S), so the tests
can watch the queue turn people away and the temporary folders empty again. Counts are bounded
(4+2 clients, 20 cancels at 1 to 20 frames, 50 jobs); results are summarised in docs/reliability.md.
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from sam3_video.video import probe
from tests.conftest import frames_in_zip, launch_app, manifest_in_zip, video_path, wait_for_frames

TTL_S = 45





def _bytes_under(*folders) -> int:
    """Bytes of the regular files under `folders` (empty folders left behind count as nothing)."""
    total = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except FileNotFoundError:  # deleted while we walk
                    pass
    return total


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def app(test_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability")
    tmp, cache = base / "tmp", base / "gradio"
    tmp.mkdir()
    cache.mkdir()
    url, proc, log_path = launch_app(base, {
        "SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu", "SAM3_GPU_CONCURRENCY": "1", "SAM3_QUEUE_SIZE": "3",
        "SAM3_SESSION_TTL_S": str(TTL_S), "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(cache)})
    folders = (str(tmp), str(cache))
    yield dict(url=url, proc=proc, log=log_path, folders=folders, baseline=_bytes_under(*folders))
    proc.terminate()
    proc.wait(timeout=30)


def _healthy(app) -> None:
    assert app["proc"].poll() is None, open(app["log"]).read()[-3000:]
    assert requests.get(app["url"], timeout=30).status_code == 200


def test_four_clients_at_once_get_their_own_results_and_the_queue_turns_the_rest_away(app, carphone):
    from gradio_client import Client, handle_file

    asks = [("person", 10, 6), ("window", 40, 7), ("person, window", 70, 8), ("face", 100, 9)]
    clients = [Client(app["url"], verbose=False) for _ in range(6)]
    for c in clients:  # upload first, so that the four requests below reach the queue at once
        c.predict(handle_file(carphone), api_name="/open_video")
    jobs = [c.submit(handle_file(carphone), prompt, start, "forward", n, "", api_name="/segment_video")
            for c, (prompt, start, n) in zip(clients, asks)]
    deadline = time.time() + 60
    while time.time() < deadline and sum(j.status().code.name in ("IN_QUEUE", "PROCESSING", "ITERATING", "PROGRESS", "SENDING_DATA") for j in jobs) < 4:
        time.sleep(0.05)
    extra = [c.submit(handle_file(carphone), "car", 0, "forward", 3, "", api_name="/segment_video")
             for c in clients[4:]]
    turned_away = []
    for job in extra:
        try:
            job.result(timeout=600)
        except Exception as err:
            turned_away.append(str(err))
    assert turned_away and all("queue is full" in e.lower() for e in turned_away), turned_away
    for job, (prompt, start, n) in zip(jobs, asks):
        overlay, zip_path, summary = job.result(timeout=600)
        assert summary["status"] == "complete" and summary["frames"] == n
        assert frames_in_zip(zip_path) == list(range(start, start + n))
        assert manifest_in_zip(zip_path)["prompts"] == [p.strip() for p in prompt.split(",")]
        assert probe(video_path(overlay)).num_frames == n
    _healthy(app)


def test_cancel_at_twenty_points_of_a_run(app, carphone):
    """Each cycle detects on a new frame, propagates and cancels once the run has reported k frames
    (k = 1 to 20); whatever /results then gives must be exact: its overlay, annotations and summary
    cover the same frames, from the start frame on, at least k of them."""
    from gradio_client import Client, handle_file

    client = Client(app["url"], verbose=False)
    client.predict(handle_file(carphone), api_name="/open_video")
    for cycle in range(20):
        start, k = 3 * cycle, 1 + cycle
        client.predict(start, "person", "", api_name="/detect")
        job = client.submit("forward", None, api_name="/propagate")
        wait_for_frames(job, k)
        job.cancel()
        overlay, zip_path, files, summary = client.predict(api_name="/results")
        frames = frames_in_zip(zip_path)
        assert summary["status"] == "stopped" and k <= summary["frames"] < 120 - start, (cycle, summary)
        assert frames == list(range(start, start + summary["frames"]))
        assert probe(video_path(overlay)).num_frames == len(frames)
        assert manifest_in_zip(zip_path)["frames_done"] == len(frames)
        root = next(p for p in os.listdir(app["folders"][0]) if p.startswith("sam3-video-app-"))
        for visitor in os.scandir(os.path.join(app["folders"][0], root)):  # cancelled runs do not pile up:
            runs = [d for d in os.listdir(visitor.path) if d.startswith("run-")]
            assert len(runs) <= 1, runs  # a visitor keeps its latest run only
    _healthy(app)


def test_fifty_jobs_in_a_row_flat_memory_and_the_temporary_folders_empty_again(app, carphone):
    from gradio_client import Client, handle_file

    rss = {}
    for i in range(1, 51):
        client = Client(app["url"], verbose=False)  # a new visitor each time, as on a public Space
        overlay, zip_path, summary = client.predict(handle_file(carphone), "person", i % 100, "forward", 3, "",
                                                    api_name="/segment_video")
        assert summary["status"] == "complete" and summary["frames"] == 3
        if i in (5, 50):
            rss[i] = _rss_mb(app["proc"].pid)
    busy = _bytes_under(*app["folders"])
    print(f"RSS after 5 jobs {rss[5]:.0f} MB, after 50 {rss[50]:.0f} MB; temporary bytes {app['baseline']} "
          f"at start, {busy} after the jobs")
    assert rss[50] <= 1.1 * rss[5], rss
    # every visitor of this module expires (TTL, then a sweep every TTL/2); deleting a workspace unlinks its
    # hard link to the upload, which renews the cached upload's ctime, so the cache sweep takes it TTL (and a
    # sweep) later: at most 3 x TTL after the last job
    allowed_s = 3 * TTL_S + 30
    deadline = time.time() + allowed_s
    while time.time() < deadline and _bytes_under(*app["folders"]) > app["baseline"]:
        time.sleep(2)
    print(f"back to {_bytes_under(*app['folders'])} bytes after {time.time() - deadline + allowed_s:.0f} s")
    assert busy > app["baseline"] and _bytes_under(*app["folders"]) <= app["baseline"]
    _healthy(app)
