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
    page.locator("#status").get_by_text("stopped by you:").wait_for(timeout=300_000)
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


# -- the page when a visitor errs, clicks, and waits ---------------------------------------------
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture()
def browser(chromium, tmp_path):
    """A headless Chromium; `browser.open(url, viewport)` gives a page at that size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=BROWSER_FLAGS)
        pages = []

        def open_page(url, viewport=DESKTOP):
            pg = b.new_page(viewport=viewport)
            pages.append(pg)
            pg.goto(url, wait_until="load")
            pg.locator("#prompts textarea").wait_for(timeout=60_000)
            return pg

        b.open = open_page
        yield b
        for k, pg in enumerate(pages):
            pg.screenshot(path=str(tmp_path / f"page{k}.png"), full_page=True)
        b.close()


def upload(page, path, facts="120 frames"):
    page.locator("#video-in input[type=file]").set_input_files(path)
    page.locator("#video-facts").get_by_text(facts).wait_for(timeout=60_000)
    page.wait_for_function("() => { const i = document.querySelector('#preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)


def detect(page, phrases="person, window"):
    page.locator("#prompts textarea").fill(phrases)
    page.locator("#detect").click()
    page.locator("#to-remove label").first.wait_for(timeout=120_000)


def toast(page, text):
    """Wait for the toast that says `text`, then close every toast (they sit over the page's corner)."""
    page.locator("[data-testid=toast-body]").filter(has_text=text).first.wait_for(timeout=120_000)
    assert page.locator("[data-testid=toast-body].error, .toast-close.error").count() == 0  # a warning, not an error
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
    page.wait_for_function("() => !document.querySelector('[data-testid=toast-body]')", timeout=30_000)


def assert_intact(page, objects=True):
    """The frame is shown, the table and the checkboxes (`objects`) are there, no output carries an
    error badge, and every input takes a click (nothing lies over it)."""
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=120_000)
    assert page.locator("#preview img").evaluate("i => i.complete && i.naturalWidth > 0")
    assert page.locator("[data-testid=status-tracker] .error").count() == 0
    if objects:
        assert page.locator("#objects tbody tr").count() > 0 and page.locator("#to-remove label").count() > 0
    inputs = ["#prompts textarea", "#detect", "#propagate", "#fix-frame", "#direction label", "#preview img",
              "#video-in", "input[type=range]"]
    for selector in inputs:
        page.locator(selector).first.click(trial=True, timeout=10_000)  # fails if anything covers it


def test_a_mistake_leaves_the_page_as_it_was(browser, app_url, carphone, tmp_path):
    page = browser.open(app_url)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    page.locator("#video-in input[type=file]").set_input_files(str(broken))
    # Gradio's player says "Video not playable" on its own (a toast of the browser's page, not ours)
    page.locator("[data-testid=toast-body]").filter(has_text="Could not read 'broken.mp4'").wait_for(timeout=120_000)
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=120_000)
    ours = page.locator("[data-testid=toast-body]").filter(has_not_text="Video not playable")
    assert ours.count() == 1, ours.all_inner_texts()
    page.evaluate("document.querySelectorAll('[data-testid=toast-close]').forEach(b => b.click())")
    page.wait_for_function("() => !document.querySelector('[data-testid=toast-body]')", timeout=30_000)
    badges = page.locator("[data-testid=status-tracker] .error")
    assert badges.count() == 0 or page.locator("#video-in [data-testid=status-tracker] .error").count() == badges.count()
    page.locator("input[type=range]").first.click(trial=True, timeout=10_000)
    page.locator("#fix-frame").click()  # no video yet
    toast(page, "Upload a video")
    assert page.locator("[data-testid=status-tracker] .error").count() == 0
    page.locator("#direction label").first.click(trial=True, timeout=10_000)
    page.locator("#video-in button[aria-label=Clear]").first.click()  # and the right file, as a person would
    upload(page, carphone)
    page.locator("#propagate").click()  # before Detect
    toast(page, "Press Detect first")
    assert_intact(page, objects=False)
    detect(page)
    rows = page.locator("#objects tbody tr").count()
    page.locator("#fix-frame").click()  # no run yet
    toast(page, "Nothing has run on this video yet")
    assert_intact(page)
    page.locator("#prompts textarea").fill(" , ")
    page.locator("#detect").click()
    toast(page, "The prompt is empty")
    assert_intact(page)
    assert page.locator("#objects tbody tr").count() == rows  # the detection on screen is kept

    page.get_by_text("Fix with clicks on the frame").click()
    page.get_by_label("Object to fix (0: the one clicked)").fill("999")
    image = page.locator("#preview img")
    box = image.bounding_box()
    image.click(position={"x": box["width"] / 2, "y": box["height"] / 2})
    toast(page, "Object 999 is not tracked")
    assert_intact(page)

    page.locator("#prompts textarea").fill("person")  # and the page goes on
    page.locator("#detect").click()
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=120_000)
    assert page.locator("[data-testid=toast-body]").count() == 0


def frame_pixels(page):
    """The frame image as the page shows it, once loaded: (src, RGB array)."""
    import io

    import numpy as np
    from PIL import Image

    page.wait_for_function("() => { const i = document.querySelector('#preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    src = page.locator("#preview img").get_attribute("src")
    body = page.request.get(src).body() if not src.startswith("data:") else __import__("base64").b64decode(
        src.split(",", 1)[1])
    return src, np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(int)


def test_a_click_leaves_a_mark_and_each_edit_says_what_it_did(browser, app_url, carphone):
    page = browser.open(app_url)
    upload(page, carphone)
    detect(page)
    page.get_by_text("Fix with clicks on the frame").click()
    page.get_by_label("new object (box)").check()
    page.get_by_label("Label of a new object").fill("mirror")
    before_src, before = frame_pixels(page)
    image = page.locator("#preview img")
    box = image.bounding_box()
    image.click(position={"x": box["width"] * 0.55, "y": box["height"] * 0.15})
    page.locator("#clicked").get_by_text("first corner").wait_for(timeout=120_000)
    page.wait_for_function(f"() => document.querySelector('#preview img').src !== {before_src!r}", timeout=60_000)
    _, marked = frame_pixels(page)
    h, w = before.shape[:2]
    changed = (abs(marked - before).max(axis=2) > 80).nonzero()  # the page gets a lossy WebP: small changes everywhere
    assert len(changed[0]), "the first corner is drawn on the frame"
    assert abs(changed[0].mean() - 0.15 * h) < 0.06 * h and abs(changed[1].mean() - 0.55 * w) < 0.06 * w
    image.click(position={"x": box["width"] * 0.95, "y": box["height"] * 0.7})
    said = page.locator("#clicked").get_by_text("added a new 'mirror' object")
    said.wait_for(timeout=120_000)
    assert "id #" in said.inner_text() or "found nothing" in said.inner_text()
    page.get_by_role("button", name="Undo all clicks").click()
    page.wait_for_function("() => document.querySelector('#clicked').innerText.trim() === ''", timeout=120_000)


def in_view(page, selector) -> bool:
    return page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x900", "390x844"])
def test_progress_is_in_view_when_propagate_is_pressed(browser, app_url, carphone, viewport):
    page = browser.open(app_url, viewport)
    upload(page, carphone)
    detect(page)
    page.get_by_label("Frame limit per direction (0: all)").fill("6")
    page.locator("#propagate").click()  # Playwright scrolls it into view first, as a person would
    page.locator("#status").get_by_text("warming up").or_(page.locator("#status").get_by_text("forward")).first.wait_for(
        timeout=120_000)
    # in view once the page settles (an image being swapped for the next frame has no height for a moment)
    shown = "() => ['#status', '#preview img', '#stop'].every(s => { const e = document.querySelector(s);" \
            " const r = e && e.getBoundingClientRect(); return r && r.height > 0 && r.top >= 0 && r.bottom <= innerHeight; })"
    try:
        page.wait_for_function(shown, timeout=10_000)
    except Exception:
        rects = page.evaluate("() => ['#status', '#preview img', '#stop'].map(s => { const e = document.querySelector(s);"
                              " const r = e && e.getBoundingClientRect(); return [s, r && [r.top, r.bottom]]; })"
                              " .concat([['viewport', innerHeight], ['scrollY', scrollY]])")
        raise AssertionError(f"progress, frame and Stop are not all in view: {rects}") from None
    overlay = page.locator("#view .eta-bar, #view .progress-text, #view .loading").filter(visible=True)
    assert overlay.count() == 0, [overlay.nth(k).evaluate("e => e.outerHTML.slice(0, 300) + ' IN ' + e.closest('[id]').id") for k in range(overlay.count())]
    page.locator("#status").get_by_text("complete:").wait_for(timeout=300_000)
    assert in_view(page, "#status")


@pytest.mark.parametrize("served", ["plain", "zerogpu"], indirect=True)
def test_propagate_fix_propagate_and_propagate_again(browser, served, carphone):
    """Each press of Propagate starts a run, also after a run continued from a fixed frame."""
    page = browser.open(served)
    upload(page, carphone)
    detect(page)
    limit = page.get_by_label("Frame limit per direction (0: all)")
    limit.fill("4")
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 4 frames (0-3)").wait_for(timeout=300_000)
    page.get_by_label("number input for Frame").fill("2")
    page.get_by_label("number input for Frame").press("Enter")
    page.locator("#fix-frame").click()
    page.locator("#status").get_by_text("Propagate forward continues from it").wait_for(timeout=120_000)
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 6 frames (0-5)").wait_for(timeout=300_000)
    limit.fill("5")
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 7 frames (0-6)").wait_for(timeout=300_000)
    limit.fill("3")
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 5 frames (0-4)").wait_for(timeout=300_000)


def _frames_done(page) -> int:
    """The frames done so far, from the status line's 'forward K/N'."""
    import re

    found = re.search(r"forward (\d+)/\d+", page.locator("#status").inner_text())
    return int(found.group(1)) if found else -1


@pytest.mark.parametrize("served", ["plain", "zerogpu"], indirect=True)
def test_a_reload_mid_run_comes_back_to_the_run(browser, served, carphone):
    """The tab's video, phrases, detection and run come back after a reload; the run went on
    meanwhile, is followed to where it is, and Stop still reaches it."""
    page = browser.open(served)
    upload(page, carphone)
    detect(page, "person, window")
    rows = page.locator("#objects tbody tr").count()
    page.get_by_label("forward", exact=True).check()  # all 120 frames: the run outlasts the reload
    page.locator("#propagate").click()
    page.wait_for_function("() => /forward [1-9]\\d*\\/120/.test(document.querySelector('#status').innerText)",
                           timeout=300_000)
    before = _frames_done(page)
    page.reload(wait_until="load")
    page.locator("#video-facts").get_by_text("120 frames").wait_for(timeout=60_000)
    assert page.locator("#prompts textarea").input_value() == "person, window"
    assert page.locator("#objects tbody tr").count() == rows
    page.wait_for_function(f"() => {{ const m = /forward (\\d+)\\/120/.exec(document.querySelector('#status').innerText);"
                           f" return m && +m[1] > {before}; }}", timeout=300_000)  # followed again, further on
    assert page.locator("#video-in video").count() == 1  # the video is back in its player
    page.locator("#stop").click()
    page.locator("#status").get_by_text("stopped by you:").wait_for(timeout=300_000)
    assert page.locator("#annotations a[href]").count() == 1
    stopped_at = int(page.locator("#status").inner_text().split("stopped by you: ")[1].split(" of ")[0])
    assert before < stopped_at < 120


@pytest.fixture(scope="module")
def nomodel_url(tmp_path_factory):
    """The app when its model cannot load (the real hub id, offline)."""
    from tests.conftest import launch_app

    url, proc, _ = launch_app(tmp_path_factory.mktemp("nomodel"), {"SAM3_MODEL": "facebook/sam3", "HF_HUB_OFFLINE": "1"})
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_without_a_model_the_page_says_so_and_detect_is_off(browser, nomodel_url, carphone):
    page = browser.open(nomodel_url)
    banner = page.locator("#model-banner")
    banner.get_by_text("The model is not available.").wait_for(timeout=60_000)
    assert "facebook/sam3" in banner.inner_text() and in_view(page, "#model-banner")
    assert page.locator("#detect").is_disabled()
    upload(page, carphone)  # the video still opens: its frames need no model
    assert page.locator("#detect").is_disabled()


def test_each_example_fills_the_video_and_its_phrases(browser, app_url):
    page = browser.open(app_url)
    for k, (facts, phrases) in enumerate((("250 frames", "car, light"), ("120 frames", "person, phone"),
                                          ("132 frames", "rabbit, tree"))):
        page.locator("#examples tbody tr").nth(k).click()
        page.locator("#video-facts").get_by_text(facts).wait_for(timeout=60_000)
        assert page.locator("#prompts textarea").input_value() == phrases


# -- the run's timeline ----------------------------------------------------------------------------
def no_horizontal_overflow(page) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth,"
                           " document.querySelector('#timeline').scrollWidth, document.querySelector('#timeline').clientWidth]")
    assert widths[0] <= widths[1] and widths[2] <= widths[3], widths


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280x900", "390x844"])
def test_the_timeline_takes_you_to_a_frame_and_shows_where_a_run_was_continued(browser, app_url, carphone, viewport):
    """After a run, a row per object; a click on a row moves the slider there and shows the run's
    result on that frame, ready for Fix this frame; the continued run marks where it continued."""
    page = browser.open(app_url, viewport)
    upload(page, carphone)
    detect(page)
    page.get_by_label("forward", exact=True).check()
    page.get_by_label("Frame limit per direction (0: all)").fill("8")
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 8 frames (0-7)").wait_for(timeout=300_000)
    rows = page.locator("#timeline .tl-row[data-id]")
    page.wait_for_function("() => /complete: 8 frames done/.test(document.querySelector('#timeline').innerText)",
                           timeout=60_000)
    page.wait_for_function("() => document.querySelector('#objects thead').innerText.includes('missing')",
                           timeout=60_000)  # the objects table is the run's
    ids = [i.strip() for i in page.locator("#objects [role=gridcell][data-col='0']").all_inner_texts()]
    assert rows.count() == len(ids) > 0
    assert [rows.nth(k).get_attribute("data-id") for k in range(rows.count())] == ids
    rows.first.scroll_into_view_if_needed()
    assert in_view(page, "#timeline .tl-row[data-id]")
    no_horizontal_overflow(page)

    before, _ = frame_pixels(page)
    track = rows.nth(0).locator(".tl-track")
    box = track.bounding_box()
    track.click(position={"x": box["width"] * 5.5 / 8, "y": box["height"] / 2})  # frame 5's column
    page.wait_for_function("() => document.querySelector('#timeline .tl-row.tl-selected') !== null", timeout=60_000)
    assert page.get_by_label("number input for Frame").input_value() == "5"
    assert page.locator("#timeline .tl-row.tl-selected").get_attribute("data-id") == ids[0]
    page.wait_for_function(f"() => document.querySelector('#preview img').src !== {before!r}", timeout=60_000)
    assert page.locator("#timeline .tl-cursor").count() == rows.count()
    rows.nth(rows.count() - 1).press("Enter")  # from the keyboard: the object's first frame
    last = page.locator("#objects [role=gridcell][data-col='3']").nth(rows.count() - 1).inner_text().strip()
    page.wait_for_function(f"() => document.querySelector('#timeline .tl-row.tl-selected').dataset.id === '{ids[-1]}'",
                           timeout=60_000)
    assert page.get_by_label("number input for Frame").input_value() == (last if last != "-" else "0")
    track.click(position={"x": box["width"] * 5.5 / 8, "y": box["height"] / 2})  # and back to frame 5
    page.wait_for_function(f"() => document.querySelector('#timeline .tl-row.tl-selected').dataset.id === '{ids[0]}'",
                           timeout=60_000)
    assert page.get_by_label("number input for Frame").input_value() == "5"
    page.locator("#fix-frame").click()  # the frame picked is the one Fix this frame takes
    page.locator("#status").get_by_text("Frame 5 of the last run").wait_for(timeout=120_000)

    page.locator("#propagate").click()  # continues from frame 5: frames 0-4 kept, 5-12 new
    page.locator("#status").get_by_text("complete: 13 frames (0-12)").wait_for(timeout=300_000)
    page.wait_for_function("() => document.querySelector('#timeline').innerText.includes("
                           "'continued from frame 5 (frames 0-4 kept from the earlier run)')", timeout=60_000)
    assert page.locator("#timeline .tl-axis .tl-continued").count() == 1
    no_horizontal_overflow(page)


@pytest.mark.parametrize("served", ["plain", "zerogpu"], indirect=True)
def test_the_timeline_grows_during_a_run(browser, served, carphone, request):
    """The timeline follows a run as its frames come (read from its results as they are written,
    under ZeroGPU from each GPU call's folder in turn), and says how the run ended."""
    page = browser.open(served)
    upload(page, carphone)
    detect(page)
    page.get_by_label("forward", exact=True).check()  # all 120 frames: long enough to watch
    page.locator("#propagate").click()
    done = "() => +(/running: (\\d+) frames? done/.exec(document.querySelector('#timeline').innerText) || [0, 0])[1]"
    page.locator("#timeline .tl-row[data-id]").first.wait_for(timeout=300_000)  # an object, while it runs
    seen = page.evaluate(f"({done})")
    assert seen > 0
    page.wait_for_function(f"() => ({done})() > {seen}", timeout=300_000)
    if request.node.callspec.params["served"] == "zerogpu":  # 6 s calls: the next call writes a folder of its own
        page.locator("#status").get_by_text("GPU call 2").first.wait_for(timeout=300_000)
        seen = page.evaluate(f"({done})")
        page.wait_for_function(f"() => ({done})() > {seen}", timeout=300_000)
        assert page.locator("#timeline .tl-row[data-id]").count() > 0
    page.locator("#stop").click()
    page.locator("#status").get_by_text("stopped by you:").wait_for(timeout=300_000)
    page.wait_for_function("() => /stopped: \\d+ frames done/.test(document.querySelector('#timeline').innerText)",
                           timeout=60_000)
