"""Hostile-visitor probes against a launched app on 127.0.0.1 (issue 6, "file access").

Nothing but a visitor's own results may be served: no path traversal on any file route, no
symlink escape, no file of the server (or of another visitor's workspace) reached through a
FileData `path` in an API call, no upload above SAM3_MAX_UPLOAD_MB kept, and no secret (HF_TOKEN)
in a page, an API answer, an error or the log. Markup typed as a phrase stays text.

One app on the small model (its own GRADIO_TEMP_DIR and TMPDIR, so every file it writes can be
inspected) and one whose model cannot load (facebook/sam3 offline), both with a sentinel HF_TOKEN.
Requests go out through http.client so that `..` and %-escapes reach the server as written.
"""

from __future__ import annotations

import glob
import html
import http.client
import json
import os
import re
import shutil
import threading
import types
import urllib.parse

import pytest

from tests.conftest import BROWSER_FLAGS, launch_app

SENTINEL = "hf_SENTINELsecret123"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_PY = os.path.join(REPO, "app.py")
PASSWD = b"root:x:0:0"
APP_PY_MARK = b"sam3-video web app: layout and event wiring only"
XSS = ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>"]


def _start(name, base, env):
    log_dir = base / name
    log_dir.mkdir()
    full = {"HF_TOKEN": SENTINEL, "GRADIO_TEMP_DIR": str(log_dir / "gradio"), "TMPDIR": str(log_dir / "tmp"),
            "SAM3_MAX_UPLOAD_MB": "2", "SAM3_DEVICE": "cpu", **env}
    os.makedirs(full["TMPDIR"])
    url, proc, log = launch_app(log_dir, full)
    return types.SimpleNamespace(url=url, proc=proc, log=log, temp=full["GRADIO_TEMP_DIR"], tmp=full["TMPDIR"],
                                 port=int(url.rstrip("/").rsplit(":", 1)[1]))


@pytest.fixture(scope="module")
def apps(test_model_dir, tmp_path_factory):
    """Both apps, started at once (each takes ~20 s to import torch on a busy machine)."""
    base = tmp_path_factory.mktemp("security")
    out, errors = {}, []

    def start(name, env):
        try:
            out[name] = _start(name, base, env)
        except Exception as err:  # pragma: no cover
            errors.append(err)

    threads = [threading.Thread(target=start, args=("main", {"SAM3_MODEL": test_model_dir})),
               threading.Thread(target=start, args=("nomodel", {"SAM3_MODEL": "facebook/sam3", "HF_HUB_OFFLINE": "1"}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    yield out
    for app in out.values():
        app.proc.terminate()
        app.proc.wait(timeout=30)
    assert not errors, errors


@pytest.fixture(scope="module")
def app(apps):
    return apps["main"]


def get(app, raw_path: str, **kw) -> tuple[int, bytes]:
    """GET `raw_path` exactly as written (no client-side normalisation of '..' or escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    try:
        conn.request("GET", raw_path, **kw)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def call(app, api: str, data: list) -> tuple[str, object]:
    """The plain-HTTP API (/gradio_api/call): the last event's name and data."""
    import requests

    r = requests.post(f"{app.url}gradio_api/call/{api}", json={"data": data}, timeout=30)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    event, payload = None, None
    with requests.get(f"{app.url}gradio_api/call/{api}/{event_id}", stream=True, timeout=120) as s:
        for line in s.iter_lines(decode_unicode=True):
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = json.loads(line.split(":", 1)[1])
                if event in ("complete", "error"):
                    break
    return event, payload


def refused(status: int, body: bytes, *secrets: bytes) -> None:
    assert 400 <= status < 500, (status, body[:200])
    for secret in secrets:
        assert secret not in body


@pytest.fixture(scope="module")
def visitor_a(app, carphone):
    """A real (2-frame) job as visitor A; its URLs as Gradio gave them, and its files on disk."""
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, download_files=False)
    overlay, zip_file, summary = client.predict(handle_file(carphone), "person", 0, "forward", 2, "",
                                                api_name="/segment_video")
    assert summary["status"] == "complete" and summary["frames"] == 2
    roots = glob.glob(os.path.join(app.tmp, "sam3-video-app-*"))
    assert len(roots) == 1, roots
    on_disk = sorted(p for p in glob.glob(os.path.join(roots[0], "**", "*"), recursive=True) if os.path.isfile(p))
    assert any(p.endswith("overlay.mp4") for p in on_disk)
    overlay = overlay["video"] if "video" in overlay else overlay
    return types.SimpleNamespace(root=roots[0], files=on_disk, urls=[overlay["url"], zip_file["url"]],
                                 cached=[overlay["path"], zip_file["path"]])


def _content_mark(path: str) -> bytes:
    data = open(path, "rb").read()
    return data[len(data) // 2: len(data) // 2 + 48] if len(data) > 96 else data


TRAVERSALS = ["../../../../../../etc/passwd", "..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
              "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
              "%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd", "/etc/passwd", "%2Fetc%2Fpasswd",
              "....//....//....//etc/passwd", "..\\..\\..\\..\\etc\\passwd"]


def test_path_traversal_on_every_file_route(app, visitor_a):
    # 8 forms x 3 file routes + 4 forms x 3 static routes + proxies = 42 requests
    temp_escape = urllib.parse.quote(app.temp + "/../../../../../../etc/passwd")
    for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
        for target in TRAVERSALS + [temp_escape]:
            refused(*get(app, prefix + target), PASSWD)
    for prefix in ("/static/", "/assets/", "/svelte/"):
        for target in TRAVERSALS[:3] + ["%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"]:
            refused(*get(app, prefix + target), PASSWD)
    # the proxy and the URL form of file= fetch nothing local (SSRF)
    refused(*get(app, f"/gradio_api/proxy=http://127.0.0.1:{app.port}/config"), b"named_endpoints", b"components")
    refused(*get(app, f"/gradio_api/file=http://127.0.0.1:{app.port}/config"), b"components")
    refused(*get(app, "/gradio_api/file=file:///etc/passwd"), PASSWD)


def test_server_and_other_visitor_files_are_not_served(app, visitor_a):
    """The app's source, the service root and visitor A's files by their on-disk paths: refused to
    anyone (these requests carry no session at all). ~12 requests."""
    for target in ("app.py", APP_PY, "sam3_video/config.py", "../main/app.py", ".venv/pyvenv.cfg"):
        refused(*get(app, "/gradio_api/file=" + target), APP_PY_MARK, b"home = ")
    for target in (visitor_a.root, os.path.dirname(visitor_a.files[0]), app.temp, app.tmp):
        refused(*get(app, "/gradio_api/file=" + target))
    outside = [p for p in visitor_a.files if p.endswith((".mp4", ".zip", ".json"))][:4]
    assert outside
    for path in outside:
        refused(*get(app, "/gradio_api/file=" + urllib.parse.quote(path)), _content_mark(path))


def test_the_url_gradio_gave_a_is_served_and_unguessable(app, visitor_a):
    """Positive control: A's own result URLs work; their folder is a 64-hex hash (content + a
    per-install secret seed), so another visitor cannot guess them. 2 requests."""
    import requests

    for url, cached in zip(visitor_a.urls, visitor_a.cached):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and r.content == open(cached, "rb").read()
        assert re.search(r"/[0-9a-f]{64}/[^/]+$", url), url
    for path in glob.glob(os.path.join(app.temp, "*")):  # everything Gradio serves sits under such a hash
        if os.path.basename(path) == "vibe_edit_history":  # Gradio's, for `gradio --vibe` only: empty
            assert os.listdir(path) == []
            continue
        assert re.fullmatch(r"[0-9a-f]{64}", os.path.basename(path)) or not os.path.isdir(path), path
    r = requests.post(f"{app.url}gradio_api/vibe-edit", json={"prompt": "x"}, timeout=30)
    assert r.status_code in (403, 422), r.status_code  # the code editor that would snapshot app.py is off


def test_symlinks_out_of_served_folders_are_refused(app, visitor_a):
    """Symlinks (to /etc/passwd, to app.py) planted in Gradio's cache and in the service root. 4 requests."""
    planted = []
    for folder in (os.path.join(app.temp, "f" * 64), os.path.join(visitor_a.root, "planted")):
        os.makedirs(folder, exist_ok=True)
        for name, target in (("passwd.txt", "/etc/passwd"), ("app.py", APP_PY)):
            link = os.path.join(folder, name)
            os.symlink(target, link)
            planted.append(link)
    try:
        for link in planted:
            refused(*get(app, "/gradio_api/file=" + urllib.parse.quote(link)), PASSWD, APP_PY_MARK)
    finally:
        for link in planted:
            os.unlink(link)
        shutil.rmtree(os.path.join(visitor_a.root, "planted"), ignore_errors=True)


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": os.path.basename(path)}


def test_filedata_path_injection_is_refused(app, visitor_a, carphone):
    """open_video / segment_video with a FileData whose path was never uploaded. 8 calls + 1."""
    victim = next(p for p in visitor_a.files if p.endswith("overlay.mp4"))
    link = os.path.join(app.temp, "e" * 64, "passwd.mp4")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink("/etc/passwd", link)
    try:
        for path in ("/etc/passwd", "app.py", victim, link):
            for api, rest in (("open_video", []), ("segment_video", ["person", 0, "forward", 2, ""])):
                event, payload = call(app, api, [_file(path)] + rest)
                assert event == "error", (api, path, event, payload)
                text = json.dumps(payload).encode()
                assert PASSWD not in text and APP_PY_MARK not in text and b"frames" not in text
    finally:
        os.unlink(link)
    from gradio_client import Client, handle_file  # the server is healthy afterwards

    facts, _, _ = Client(app.url, verbose=False).predict(handle_file(carphone), api_name="/open_video")
    assert "120 frames" in facts


def test_upload_above_the_limit_is_refused_and_not_kept(app, tmp_path):
    """A 3 MB upload to a 2 MB server: 413 with a sentence, nothing left in the temp folders.
    Also a file name that tries to climb out of the upload folder. 3 requests."""
    import requests
    from gradio_client import Client, handle_file

    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * 2**20))

    def listing():
        return {p for root in (app.temp, app.tmp) for p in glob.glob(os.path.join(root, "**"), recursive=True)}

    before = listing()
    with open(big, "rb") as f:
        r = requests.post(f"{app.url}gradio_api/upload", files={"files": ("big.mp4", f)}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text, (r.status_code, r.text)
    with pytest.raises(Exception, match="413|maximum allowed size|maximum file size"):
        Client(app.url, verbose=False).predict(handle_file(str(big)), api_name="/open_video")
    assert listing() == before

    r = requests.post(f"{app.url}gradio_api/upload",
                      files={"files": ("../../../../climbed.txt", b"x")}, timeout=30)
    assert r.status_code == 200
    (stored,) = r.json()
    assert os.path.realpath(stored).startswith(os.path.realpath(app.temp) + os.sep)
    assert os.path.basename(stored) == "climbed.txt"
    found = glob.glob(os.path.join(os.path.dirname(app.temp), "**", "climbed.txt"), recursive=True)
    assert [os.path.realpath(p) for p in found] == [os.path.realpath(stored)]


def test_markup_in_phrases_stays_text(app, carphone):
    """Phrases made of HTML/JS come back as the same characters (data, not markup); error sentences
    that quote them are HTML-escaped, because Gradio renders a gr.Error message as HTML. 4 calls."""
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False)
    client.predict(handle_file(carphone), api_name="/open_video")
    _, table, choices = client.predict(0, ", ".join(XSS), "", api_name="/detect")
    labels = {row[1] for row in table["data"]}
    assert labels and labels <= set(XSS), labels
    with pytest.raises(Exception) as err:
        client.predict(0, "person", XSS[0], api_name="/detect")
    assert "not a number" in str(err.value) and html.escape(XSS[0], quote=False) in str(err.value)
    assert "<img" not in str(err.value)
    with pytest.raises(Exception) as err:
        client.predict(0, XSS[1] * 8, "", api_name="/detect")
    assert "characters long" in str(err.value) and "&lt;script&gt;" in str(err.value)
    assert "<script" not in str(err.value)


def _pages(app) -> dict[str, bytes]:
    out = {}
    for path in ("/", "/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/startup-events"):
        status, body = get(app, path)
        out[path] = body
    return out


def test_no_secret_anywhere(apps, carphone):
    """HF_TOKEN never shows: pages, config, API info, the model-missing error, the logs. ~14 requests."""
    from gradio_client import Client, handle_file

    broken = apps["nomodel"]
    client = Client(broken.url, verbose=False)
    banner = client.predict(api_name="/model_banner")
    assert "not available" in json.dumps(banner) and "facebook/sam3" in json.dumps(banner)
    client.predict(handle_file(carphone), api_name="/open_video")  # needs no model
    with pytest.raises(Exception) as err:
        client.predict(0, "person", "", api_name="/detect")
    message = str(err.value)
    assert "Could not load the SAM3 model" in message and SENTINEL not in message
    for app in apps.values():
        for path, body in _pages(app).items():
            assert SENTINEL.encode() not in body, path
            for local in (os.path.realpath(app.tmp), REPO):  # the service root, the app's folder
                assert local.encode() not in body, (path, local)
    for app in apps.values():
        log = open(app.log, encoding="utf-8", errors="replace").read()
        assert SENTINEL not in log


def test_model_path_not_in_pages(app, test_model_dir):
    """The local model folder is not named in the page, the config or the API description. 5 requests."""
    for path, body in _pages(app).items():
        assert test_model_dir.encode() not in body, path


def test_markup_shows_as_text_in_a_browser(app, carphone, chromium):
    """Headless Chromium: the phrases appear as text in the objects table, the threshold's error
    shows the markup as text, and no alert() fires anywhere."""
    from playwright.sync_api import sync_playwright

    flags = BROWSER_FLAGS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(app.url, wait_until="load")
            page.locator("#prompts textarea").wait_for(timeout=60_000)
            page.locator("#video-in input[type=file]").set_input_files(carphone)
            page.locator("#video-facts").get_by_text("120 frames").wait_for(timeout=60_000)
            page.locator("#prompts textarea").fill(", ".join(XSS))
            page.locator("#detect").click()
            page.locator("#to-remove label").first.wait_for(timeout=120_000)
            page.wait_for_function(  # a table cell holding the phrase as characters
                "t => [...document.querySelectorAll('span')].some(e => e.textContent.trim() === t && e.offsetParent)",
                arg=XSS[0], timeout=30_000)
            page.locator("#to-remove").get_by_text(XSS[1]).first.wait_for(timeout=30_000)  # a removal choice
            page.get_by_label("Detection threshold 0-1 (empty: the model's own)").fill(XSS[0])
            page.locator("#detect").click()
            toast = page.locator("[data-testid='toast-body']").filter(has_text="not a number")
            toast.first.wait_for(timeout=60_000)
            toast_text = toast.first.inner_text()
            images = page.locator("img[src='x']").count()
            page.wait_for_timeout(500)
        finally:
            browser.close()
    assert dialogs == []
    assert images == 0
    assert XSS[0] in toast_text, toast_text
