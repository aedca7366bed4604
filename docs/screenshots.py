"""The page's screenshots in docs/, taken the way a visitor sees it: headless Chromium at 1280x900
and at 390x844 (a phone), on a running app, after Detect and during a run, and after a run with
its timeline clicked.

    python app.py --port 7860 &          # SAM3_MODEL=... (the small random SAM3 will do: its masks are noise)
    python docs/screenshots.py [--url http://127.0.0.1:7860/] [--chromium /usr/bin/chromium]

Writes docs/page-1280x900.png and docs/page-390x844.png (the viewport, what is in view when
Propagate has been pressed), and docs/timeline.png (1280x900: a run fixed on a frame picked on
its timeline and continued, then an object's row clicked, the frame beside it).
"""

from __future__ import annotations

import argparse
import os
import shutil

from playwright.sync_api import sync_playwright

HERE = os.path.dirname(os.path.abspath(__file__))
CLIP = os.path.join(HERE, "..", "assets", "bikes.mp4")
SIZES = {"1280x900": {"width": 1280, "height": 900}, "390x844": {"width": 390, "height": 844}}


def start_run(browser, url: str, viewport: dict, clip: str, phrases: str, frames: int):
    """A new page that opens `clip`, detects `phrases` and propagates `frames` frames forward."""
    page = browser.new_page(viewport=viewport)
    page.goto(url, wait_until="load")
    page.locator("#video-in input[type=file]").set_input_files(clip)
    page.locator("#video-facts").get_by_text("frames").wait_for(timeout=120_000)
    page.locator("#prompts textarea").fill(phrases)
    page.locator("#detect").click()
    page.locator("#to-remove label").first.wait_for(timeout=300_000)
    page.get_by_label("Frame limit per direction (0: all)").fill(str(frames))
    page.get_by_label("forward", exact=True).check()
    page.locator("#propagate").click()
    return page


def shoot(browser, url: str, name: str, viewport: dict) -> str:
    page = start_run(browser, url, viewport, CLIP, "car, light", 40)
    page.wait_for_function("() => /forward [1-9]\\d*\\//.test(document.querySelector('#status').innerText)",
                           timeout=300_000)
    page.wait_for_function("() => { const i = document.querySelector('#preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    path = os.path.join(HERE, f"page-{name}.png")
    page.screenshot(path=path)
    page.locator("#stop").click()
    page.locator("#status").get_by_text("stopped by you").wait_for(timeout=300_000)
    page.close()
    return path


def shoot_timeline(browser, url: str) -> str:
    """A run of 20 frames of the car-phone clip, fixed at frame 5 (picked on its timeline) and
    continued for 20 frames, then an object's row clicked: the timeline, the frame beside it."""
    page = start_run(browser, url, SIZES["1280x900"], os.path.join(HERE, "..", "assets", "carphone_pristine.mp4"),
                     "person, window", 20)
    page.locator("#status").get_by_text("complete").wait_for(timeout=600_000)
    pick(page, 0, 5.5 / 20)
    page.locator("#fix-frame").click()
    page.locator("#status").get_by_text("Frame 5 of the last run").wait_for(timeout=300_000)
    page.locator("#propagate").click()
    page.locator("#status").get_by_text("complete: 25 frames").wait_for(timeout=600_000)
    page.wait_for_function("() => /continued from frame 5/.test(document.querySelector('#timeline').innerText)",
                           timeout=60_000)
    page.locator("#timeline").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, 200)")  # the timeline in the middle of the window
    pick(page, 1, 0.75)
    page.wait_for_function("() => !document.querySelector('.pending, .generating')", timeout=60_000)
    page.wait_for_function("() => { const i = document.querySelector('#preview img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    path = os.path.join(HERE, "timeline.png")
    page.screenshot(path=path)
    page.close()
    return path


def pick(page, row: int, x: float) -> None:
    """Click the timeline's `row`-th object at `x` (0 to 1) along its bar; wait for the frame."""
    track = page.locator("#timeline .tl-row[data-id]").nth(row).locator(".tl-track")
    box = track.bounding_box()
    before = page.locator("#preview img").get_attribute("src")
    track.click(position={"x": box["width"] * x, "y": box["height"] / 2})
    page.wait_for_function(f"() => document.querySelector('#preview img').src !== {before!r}", timeout=60_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--timeline-only", action="store_true", help="only docs/timeline.png")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        if not args.timeline_only:
            for name, viewport in SIZES.items():
                print(shoot(browser, args.url, name, viewport))
        print(shoot_timeline(browser, args.url))
        browser.close()


if __name__ == "__main__":
    main()
