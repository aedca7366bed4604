"""The app through gradio_client against a launched server on 127.0.0.1 (small SAM3, real clip):
the interactive steps, the one-shot endpoint, cancelling, and two clients at once."""

from __future__ import annotations

import json
import threading
import zipfile

import pytest

from sam3_video.video import probe
from tests.conftest import frames_in_zip, manifest_in_zip, video_path, wait_for_frames




def test_upload_detect_remove_propagate_download(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    facts, slider, first = client.predict(handle_file(carphone), api_name="/open_video")
    assert "120 frames" in facts and "176x144" in facts and first
    image, table, _ = client.predict(60, "person, window", "", api_name="/detect")
    ids = [row[0] for row in table["data"]]
    assert ids and image, "the small model must find objects for this test to mean anything"
    _, table, _ = client.predict([ids[0]], api_name="/remove_objects")
    assert ids[0] not in [row[0] for row in table["data"]]
    job = client.submit("both", 10, api_name="/propagate")
    preview, status, overlay, zip_path, files, summary = job.result(timeout=600)
    assert summary["status"] == "complete" and summary["frames"] == 19 and "complete" in status
    assert probe(video_path(overlay)).num_frames == 19
    assert frames_in_zip(zip_path) == list(range(51, 70))
    with zipfile.ZipFile(zip_path) as z:
        coco = json.loads(z.read("annotations/coco_instances.json"))
    assert coco["annotations"] and ids[0] not in {a["track_id"] for a in coco["annotations"]}
    assert {"mot.txt", "labelme.zip"} <= {f.replace("\\", "/").rsplit("/", 1)[-1] for f in files}


def test_cancel_keeps_the_frames_done_and_frees_the_slot(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    client.predict(handle_file(carphone), api_name="/open_video")
    client.predict(0, "person", "", api_name="/detect")
    job = client.submit("forward", None, api_name="/propagate")
    wait_for_frames(job, 20)  # real progress, then cancel mid-run
    job.cancel()
    overlay, zip_path, files, summary = client.predict(api_name="/results")
    assert summary["status"] == "stopped" and 20 <= summary["frames"] < 120
    frames = frames_in_zip(zip_path)
    assert frames == list(range(summary["frames"]))
    assert probe(video_path(overlay)).num_frames == summary["frames"]
    *_, summary = client.submit("forward", 5, api_name="/propagate").result(timeout=300)  # the tab goes on
    assert summary["status"] == "complete" and summary["frames"] == 5


def test_two_clients_at_once_get_their_own_results(app_url, carphone):
    from gradio_client import Client, handle_file

    asks = {"a": ("person", 30), "b": ("window", 80)}
    out = {}

    def one(name):
        prompt, start = asks[name]
        client = Client(app_url, verbose=False)
        out[name] = client.predict(handle_file(carphone), prompt, start, "forward", 6, "", api_name="/segment_video")

    threads = [threading.Thread(target=one, args=(n,)) for n in asks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    for name, (prompt, start) in asks.items():
        overlay, zip_path, summary = out[name]
        assert summary["status"] == "complete" and set(summary["objects_per_label"]) == {prompt}
        assert frames_in_zip(zip_path) == list(range(start, start + 6))
        assert manifest_in_zip(zip_path)["prompts"] == [prompt]
    assert out["a"][1] != out["b"][1]


def test_one_shot_endpoint(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    overlay, zip_path, summary = client.predict(
        handle_file(carphone), "person, window", 60, "both", 5, "", api_name="/segment_video"
    )
    assert summary["status"] == "complete" and summary["frames"] == 9
    assert frames_in_zip(zip_path) == list(range(56, 65))
    info = probe(video_path(overlay))
    assert (info.num_frames, info.width, info.height, info.codec) == (9, 176, 144, "h264")


@pytest.mark.parametrize(
    "args, match",
    [((" , ", 0, "forward", None, ""), "prompt is empty"),
     (("person", 500, "forward", None, ""), "outside this video"),
     (("person", 0, "forward", None, "7"), "not a score"),
     (("person", 0, "forward", None, "high"), "not a number"),
     (("person", 0, "sideways", None, ""), "not in the list of choices")],  # Gradio checks the radio
)
def test_bad_requests_are_sentences(app_url, carphone, args, match):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match=match):
        client.predict(handle_file(carphone), *args, api_name="/segment_video")


def test_click_edits_through_the_api_carry_into_the_run(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    client.predict(handle_file(carphone), api_name="/open_video")
    _, table, _ = client.predict(0, "person, window", "", api_name="/detect")
    first = table["data"][0][0]
    rows = client.predict(first, 20.0, 30.0, True, api_name="/refine_object")
    assert first in [row[0] for row in rows]
    last = table["data"][-1][0]
    client.predict([last], api_name="/remove_objects")  # the small model detects up to its cap of 8
    client.predict("mirror", 100.0, 20.0, 170.0, 100.0, api_name="/add_object")
    with pytest.raises(Exception, match="Object 999 is not tracked on this frame"):
        client.predict(999, 5.0, 5.0, True, api_name="/refine_object")
    *_, zip_path, _, summary = client.submit("forward", 3, api_name="/propagate").result(timeout=300)
    assert summary["status"] == "complete"
    manifest = manifest_in_zip(zip_path)
    assert [(e["kind"], e["obj_id"], e["label"]) for e in manifest["edits"]] == [("refine", first, ""),
                                                                               ("add_object", None, "mirror")]
    assert manifest["removed_ids"] == [last]


def test_fix_a_frame_of_the_run_and_continue_through_the_api(app_url, carphone):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="Nothing has run in this tab yet"):
        client.predict(api_name="/timeline")
    client.predict(handle_file(carphone), api_name="/open_video")
    client.predict(0, "person, window", "", api_name="/detect")
    *_, summary = client.submit("forward", 8, api_name="/propagate").result(timeout=300)
    assert summary["frames"] == 8
    with pytest.raises(Exception, match="Frame 50 was not processed"):
        client.predict(50, api_name="/fix_frame")
    image, table, _, direction, said = client.predict(5, api_name="/fix_frame")
    ids = [row[0] for row in table["data"]]
    assert image and ids, "the run's objects on frame 5"
    assert direction == "forward" and "frames 0-4 of the run are kept" in said
    rows = client.predict(ids[0], 20.0, 30.0, True, api_name="/refine_object")
    assert ids[0] in [row[0] for row in rows]
    *_, zip_path, _, summary = client.submit("forward", 6, api_name="/propagate").result(timeout=300)
    assert summary["status"] == "complete" and summary["frames"] == 11
    assert frames_in_zip(zip_path) == list(range(11))
    manifest = manifest_in_zip(zip_path)
    assert manifest["continued_from"]["frame"] == 5 and manifest["edits"][0]["obj_id"] == ids[0]
    # each object's frames, for API clients: in the summary, and the run's shape from /timeline
    facts = client.predict(api_name="/timeline")
    assert facts["continued_from"] == {"frame": 5, "kept": [0, 4]} and facts["frame_range"] == [0, 10]
    assert (facts["status"], facts["covers"], facts["start_frame"], facts["stride"]) == ("complete", [0, 10], 5, 1)
    assert facts["objects"] == summary["objects"] and ids[0] in [o["id"] for o in facts["objects"]]
    for obj in facts["objects"]:
        assert all(b >= a for a, b in obj["ranges"]) and obj["frames"] == sum(b - a + 1 for a, b in obj["ranges"])


def test_a_run_that_breaks_leaves_the_page_saying_how_it_ended(test_model_dir, carphone, monkeypatch, gpu_call_dies):
    """The page's Propagate handler, in-process: a GPU call that dies mid-run (ZeroGPU's 'GPU task
    aborted') ends the run with its frames kept: the status line says how it ended and what to do,
    and the files are offered; an API client gets the files and the same summary."""
    import gradio as gr

    monkeypatch.setenv("SAM3_MODEL", test_model_dir)
    monkeypatch.setenv("SAM3_DEVICE", "cpu")
    import app

    page = gr.Request(headers={"x-gradio-user": "app"}, session_hash="page")
    app.service.open_video("page", carphone)
    app.service.detect("page", 0, "person", None)
    items = list(app.propagate("forward", 30, 1, page, lambda *a, **k: None))
    _, status, overlay, zip_path, files, summary = items[-1]
    assert status.startswith("stopped by the end of the GPU call: ") and "the files for frames 0-" in status
    assert overlay and zip_path and files and summary["status"] == "stopped"
    client = gr.Request(headers={"x-gradio-user": "api"}, session_hash="client")
    app.service.open_video("client", carphone)
    app.service.detect("client", 0, "person", None)
    *_, last = app.propagate("forward", 30, 1, client, lambda *a, **k: None)
    assert last[-1]["status"] == "stopped" and last[-1]["stopped_by"] == "the end of the GPU call"


def test_a_page_that_opens_with_no_run_to_follow_changes_nothing(test_model_dir, carphone, monkeypatch):
    """The page's load chain follows the tab's run after a reload (`follow_run`). With none going on
    it must answer with skips: Gradio empties every output of a generator that yields nothing (seen
    in Chromium: a textbox's text gone), and the chain can end after the visitor has opened a video,
    whose first frame then vanished from the page."""
    import gradio as gr

    monkeypatch.setenv("SAM3_MODEL", test_model_dir)
    monkeypatch.setenv("SAM3_DEVICE", "cpu")
    import app

    page = gr.Request(headers={"x-gradio-user": "app"}, session_hash="fresh-tab")
    app.service.open_video("fresh-tab", carphone)  # opened before the load chain's last step ends
    assert list(app.follow_run(page, lambda *a, **k: None)) == [(gr.skip(),) * 6]
