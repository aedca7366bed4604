"""A real browser: headless Chromium (Debian's, driven by Playwright) uses the app like a person:
upload, type a phrase, detect, remove, draw a box on the frame, propagate, watch the result play,
download the files, stop a longer run, fix a frame of it and continue. Once on the app as it
runs on a workstation, once under ZeroGPU's process model (tests/zerogpu: a click on the frame
is a Gradio event that must not cross into a GPU worker)."""

from __future__ import annotations

import pytest

from tests.conftest import BROWSER_FLAGS


@pytest.fixture()
def page(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=BROWSER_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        yield page
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()


@pytest.fixture(params=["plain", "zerogpu"])
def served(request) -> str:
    return request.getfixturevalue("app_url") if request.param == "plain" else request.getfixturevalue("zero_fresh").url


def test_a_person_segments_a_clip(page, served, carphone, tmp_path):
    page.goto(served, wait_until="load")
    page.locator("#prompts textarea").wait_for(timeout=60_000)
    page.locator("#video-in input[type=file]").set_input_files(carphone)
    page.locator("#video-facts").get_by_text("120 frames").wait_for(timeout=60_000)
    page.locator("#prompts textarea").fill("person, window")
    page.get_by_label("Frame limit per direction (0: all)").fill("4")
    page.locator("#detect").click()
    page.locator("#to-remove label").first.wait_for(timeout=120_000)  # the detections' ids are listed
    page.locator("#to-remove label").last.click()  # the small model detects up to its cap: make room
    page.get_by_role("button", name="Remove selected").click()
    page.get_by_text("Fix with clicks on the frame").click()
    page.get_by_label("new object (box)").check()
    page.get_by_label("Label of a new object").fill("mirror")
    image = page.locator("#preview img")
    box = image.bounding_box()
    for fx, fy in ((0.55, 0.15), (0.95, 0.7)):  # two corners of a box, on the shown frame
        image.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        page.wait_for_timeout(300)
    page.locator("#clicked").get_by_text("added a new 'mirror' object").wait_for(timeout=120_000)
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete").wait_for(timeout=300_000)
    video = page.locator("#overlay video")
    video.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#overlay video');"
        " return v && v.readyState >= 1 && v.duration > 0; }", timeout=60_000)
    duration = video.evaluate("v => v.duration")
    assert duration == pytest.approx(4 / (30000 / 1001), abs=0.1)  # frames 0..3 of a 29.97 fps clip
    links = page.locator("#annotations a[href], #formats a[href]")
    assert links.count() >= 2
    for k in range(links.count()):
        response = page.request.get(links.nth(k).get_attribute("href"))
        assert response.status == 200 and len(response.body()) > 0
    body = page.request.get(page.locator("#annotations a[href]").first.get_attribute("href")).body()
    assert body[:2] == b"PK"  # annotations.zip

    # the rest of the clip, stopped once it runs: the frames done are kept and offered
    page.get_by_label("Frame limit per direction (0: all)").fill("0")
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("frames/s").first.wait_for(timeout=300_000)
    page.locator("#stop").click()
    page.locator("#status").get_by_text("stopped:").wait_for(timeout=300_000)
    page.get_by_label("Frame limit per direction (0: all)").fill("4")

    # fix frame 2 of that run and continue from it: frames 0-1 are kept, 2-5 are new
    page.get_by_label("number input for Frame").fill("2")
    page.get_by_label("number input for Frame").press("Enter")
    page.locator("#fix-frame").click()
    page.locator("#status").get_by_text("Propagate forward continues from it (frames 0-1 of the run are kept)").wait_for(
        timeout=120_000)
    page.locator("#to-remove label").first.wait_for(timeout=120_000)
    page.locator("#propagate").click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#overlay video');"
        " return v && v.readyState >= 1 && Math.abs(v.duration - 6 / (30000 / 1001)) < 0.1; }", timeout=300_000)
    page.screenshot(path=str(tmp_path / "done.png"), full_page=True)
