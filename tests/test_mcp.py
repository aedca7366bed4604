"""The app as an MCP server, through the `mcp` package's client over streamable HTTP against the
launched app (small SAM3, real clip): an agent lists the one tool, calls it with a video in a data
URI, gets the URLs of the overlay video and annotations.zip and downloads them from the app; two
agents at once get their own runs; a mistake is our sentence as the tool's error."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import zipfile

import requests

from sam3_video.video import probe

FILE_URL = re.compile(r"https?://[^\s'\"]+/gradio_api/file=[^\s'\"]+")
ARGUMENTS = ["video", "prompts", "start_frame", "direction", "max_frames", "threshold", "stride"]


def with_agent(app_url: str, work):
    """Run `await work(session)` in an initialised MCP client session with the app's MCP server."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with streamable_http_client(app_url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)

    return asyncio.run(main())


def data_uri(path: str) -> str:
    with open(path, "rb") as f:
        return "data:video/mp4;base64," + base64.b64encode(f.read()).decode()


def texts(result) -> str:
    return "\n".join(item.text for item in result.content if item.type == "text")


def downloaded(result, tmp_path) -> tuple[str, zipfile.ZipFile]:
    """The overlay video (saved under tmp_path) and annotations.zip that a tool answer names,
    downloaded from the app as an agent would."""
    urls = FILE_URL.findall(texts(result))
    overlay = [u for u in urls if u.endswith("/overlay.mp4")]
    archive = [u for u in urls if u.endswith("/annotations.zip")]
    assert len(overlay) == 1 and len(archive) == 1, texts(result)
    video = requests.get(overlay[0], timeout=60)
    video.raise_for_status()
    path = tmp_path / "overlay.mp4"
    path.write_bytes(video.content)
    zipped = requests.get(archive[0], timeout=60)
    zipped.raise_for_status()
    return str(path), zipfile.ZipFile(io.BytesIO(zipped.content))


def test_the_agent_sees_the_one_shot_tool_with_its_arguments(app_url):
    async def work(session):
        listed = await session.list_tools()
        page_step = await session.call_tool("detect", {"index": 0, "prompts": "person"})
        return listed, page_step

    listed, page_step = with_agent(app_url, work)
    assert [tool.name for tool in listed.tools] == ["segment_video"]
    tool = listed.tools[0]
    schema = tool.inputSchema
    assert list(schema["properties"]) == ARGUMENTS and schema["required"] == ["video", "prompts"]
    assert all(schema["properties"][name].get("description") for name in ARGUMENTS)
    assert schema["properties"]["direction"]["enum"] == ["forward", "backward", "both"]
    assert "data:video/mp4;base64" in schema["properties"]["video"]["description"]
    assert "overlay video" in tool.description and "annotations.zip" in tool.description
    # the page's steps are not tools (they share one session across agents), yet stay in the API
    assert page_step.isError and "Unknown tool" in texts(page_step)
    endpoints = requests.get(app_url + "gradio_api/info", timeout=60).json()["named_endpoints"]
    assert {"/open_video", "/detect", "/propagate", "/results", "/segment_video"} <= set(endpoints)


def test_an_agent_segments_a_clip_and_downloads_the_files(app_url, carphone, tmp_path):
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    async def work(session):
        arguments = {"video": data_uri(carphone), "prompts": "person, window", "start_frame": 60,
                     "direction": "both", "max_frames": 3, "threshold": "", "stride": 2}
        return await session.call_tool("segment_video", arguments, progress_callback=on_progress)

    result = with_agent(app_url, work)
    assert not result.isError, texts(result)
    assert "'status': 'complete'" in texts(result) and "'frames': 5" in texts(result)
    assert any(message and "Step" in message for message in progress), progress
    overlay, archive = downloaded(result, tmp_path)
    info = probe(overlay)
    assert (info.num_frames, info.width, info.height, info.codec) == (5, 176, 144, "h264")
    names = archive.namelist()
    assert {"annotations/coco_instances.json", "annotations/mot.txt", "annotations/cvat_video.xml"} <= set(names)
    coco = json.loads(archive.read("annotations/coco_instances.json"))
    assert coco["annotations"] and {c["name"] for c in coco["categories"]} <= {"person", "window"}
    done = json.loads(archive.read("annotations/ytvis_dataset.json"))["videos"][0]["frame_indices"]
    assert done == [56, 58, 60, 62, 64]  # every other frame, the video's own numbers
    assert json.loads(archive.read("annotations/manifest.json"))["prompts"] == ["person", "window"]


def test_each_mcp_call_gets_a_workspace_of_its_own():
    import gradio as gr

    from sam3_video.web.gradio_glue import one_call_key

    def request(user):
        req = gr.Request(headers={"x-gradio-user": user})
        req.session_hash = "shared"
        return req

    mcp_keys = {one_call_key(request("mcp")) for _ in range(2)}
    assert len(mcp_keys) == 2 and "shared" not in mcp_keys
    assert one_call_key(request("api")) == one_call_key(request("app")) == "shared"


def test_two_agents_at_once_get_their_own_runs(app_url, carphone, tmp_path):
    """Gradio's MCP server calls the app through one gradio_client session for every agent; each
    one-shot call still gets a workspace of its own: the second agent calls while the first one's
    run is going on (it has reported progress); with one workspace for both, the second call was
    refused ("A run is still going on", 2 tries out of 2)."""
    asks = {"a": ("person", 10), "b": ("window", 80)}
    frames = 6

    async def work(session):
        running = asyncio.Event()

        async def on_progress(done, total, message):
            if message and "Step" in message:  # the run has started (Gradio's message for our progress)
                running.set()

        def call(name, **kw):
            prompt, start = asks[name]
            return session.call_tool("segment_video", {"video": data_uri(carphone), "prompts": prompt,
                                                       "start_frame": start, "direction": "forward",
                                                       "max_frames": frames}, **kw)

        first = asyncio.create_task(call("a", progress_callback=on_progress))
        await asyncio.wait([first, asyncio.create_task(running.wait())], return_when=asyncio.FIRST_COMPLETED)
        assert not first.done(), texts(first.result())
        second = await call("b")
        return await first, second

    results = dict(zip(asks, with_agent(app_url, work)))
    for name, (prompt, start) in asks.items():
        assert not results[name].isError, texts(results[name])
        (tmp_path / name).mkdir()
        overlay, archive = downloaded(results[name], tmp_path / name)
        assert probe(overlay).num_frames == frames
        assert json.loads(archive.read("annotations/manifest.json"))["prompts"] == [prompt]
        done = json.loads(archive.read("annotations/ytvis_dataset.json"))["videos"][0]["frame_indices"]
        assert done == list(range(start, start + frames))


def test_a_mistake_is_the_tool_error_in_our_words(app_url, carphone):
    async def work(session):
        video = data_uri(carphone)
        empty = await session.call_tool("segment_video", {"video": video, "prompts": " , "})
        threshold = await session.call_tool("segment_video", {"video": video, "prompts": "person",
                                                              "threshold": "high"})
        path = await session.call_tool("segment_video", {"video": carphone, "prompts": "person"})
        return empty, threshold, path

    empty, threshold, path = with_agent(app_url, work)
    assert empty.isError and texts(empty) == ("The prompt is empty. Type one or more phrases separated by commas, "
                                              "e.g. 'car, person'.")
    assert threshold.isError and "The threshold 'high' is not a number" in texts(threshold)
    # a path on the agent's disk is not a video the server can read: Gradio asks for a URL
    assert path.isError and "provide a url" in texts(path)
