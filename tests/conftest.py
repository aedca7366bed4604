"""Shared fixtures: the small random SAM3 is built once per test run, loaded through the same code
as the real model, and the real clips come from tests/data/."""

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

#: CI sets SAM3_NO_SKIPS: there a skipped test fails, except the ones marked `gpu` (they need a CUDA
#: GPU, which CI does not have: what it deliberately leaves out, by name).
NO_SKIPS = bool(os.environ.get("SAM3_NO_SKIPS"))
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one, in CI too")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        _fail_skip(report, "skipped, but SAM3_NO_SKIPS is set (CI runs every test but the gpu ones)")


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report):
    if NO_SKIPS and report.skipped:  # a whole module skipped at collection
        _fail_skip(report, "skipped at collection, but SAM3_NO_SKIPS is set")


def _fail_skip(report, why: str) -> None:
    reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    report.longrepr = f"{why}: {reason}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, which the browser tests drive through Playwright (.ci/run installs it)."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


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


@pytest.fixture()
def service(test_model_dir, backend, tmp_path):
    """The web app's service on the small SAM3 (CPU), in-process, its workspaces under tmp_path
    (`backend` first: the model is loaded once per test run)."""
    from sam3_video.web.service import Service

    return Service(model=test_model_dir, device="cpu", root=str(tmp_path / "root"))


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


@pytest.fixture(scope="session")
def edit_model(edit_backend) -> str:
    """A model name that loads `edit_backend` (in the loaded-backend cache under its own key), for
    code that names its model, as the app's service does: Service(model=edit_model, backend="transformers", device="cpu")."""
    from sam3_video import backends

    name = "sam3-small-edit"
    backends._LOADED[backends.resolve(name, "transformers", "cpu", "float32")] = edit_backend
    return name


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


@pytest.fixture()
def gpu_call_dies(monkeypatch):
    """The app's GPU run step raises "GPU task aborted" after its third update, as spaces does when
    a ZeroGPU worker dies mid-call (here the step is closed first, so its frames are on disk when
    the error arrives, as they are when a worker's exception ends it)."""
    from sam3_video.web import gpu

    real = gpu.run_step

    def dies(request):
        steps = real(request)
        for k, update in enumerate(steps):
            if k == 3:
                steps.close()
                raise RuntimeError("GPU task aborted")
            yield update

    monkeypatch.setattr(gpu, "run_step", dies)


@pytest.fixture()
def gpu_call_killed(monkeypatch):
    """The app's GPU run step runs in a forked process, as on ZeroGPU, and the process is SIGKILLed
    once `gpu_call_killed.after` frames are in its folder (as the platform kills a worker that runs
    past its duration): its files are left as they were, cut off; the caller gets spaces' "GPU task
    aborted". Only the first call of each run is killed (`calls` counts them)."""
    import multiprocessing
    import signal

    from sam3_video.web import gpu

    real = gpu.run_step
    context = multiprocessing.get_context("fork")

    class Killed:
        after, calls = 5, 0

    def relay(request, queue):
        for update in real(request):
            queue.put(update)  # small: its frame drawn is in a file (web/handoff.py)
        queue.put(None)

    def killed(request):
        Killed.calls += 1
        queue = context.Queue()
        child = context.Process(target=relay, args=(request, queue), daemon=True)
        child.start()
        try:
            while True:
                update = queue.get(timeout=120)
                if update is None:
                    return
                yield update
                if Killed.calls == 1 and update.progress.done >= Killed.after:
                    os.kill(child.pid, signal.SIGKILL)
                    raise RuntimeError("GPU task aborted")
        finally:
            child.join(timeout=60)

    monkeypatch.setattr(gpu, "run_step", killed)
    return Killed


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


def wait_for_frames(job, n: int) -> None:
    """Return once a gradio_client job's progress reports at least `n` frames done (its progress
    updates, polled); fail if the run ends first."""
    import time

    while not job.done():
        progress = job.status().progress_data
        if progress and (progress[0].index or 0) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run ended before it reported {n} frames: {job.outputs()[-1:]}")


def answer_of(app, job, wait_s: float = 600):
    """A gradio_client job's answer; one that does not come fails with the end of the app's log
    (what the app was waiting on), not a bare TimeoutError."""
    from concurrent.futures import TimeoutError

    try:
        return job.result(timeout=wait_s)
    except TimeoutError:
        with open(app.log, encoding="utf-8", errors="replace") as f:
            raise AssertionError(f"no answer in {wait_s:g} s; the app's log ends:\n{f.read()[-6000:]}") from None


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


def _start(cmd: list[str], log_dir, env: dict, port: int, own_group: bool = False) -> tuple:
    """Start `cmd` (an app on `port` of 127.0.0.1) in the repository; return (url, process, log path)."""
    import socket
    import subprocess
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log_path = os.path.join(str(log_dir), "app.log")
    log = open(log_path, "w")
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen(cmd, cwd=repo, env=full_env, stdout=log, stderr=log, start_new_session=own_group)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return f"http://127.0.0.1:{port}/", proc, log_path
        except OSError:
            assert proc.poll() is None, open(log_path).read()
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start in 180 s:\n" + open(log_path).read())


def launch_app(log_dir, env: dict) -> tuple:
    """Start `python app.py` on a free port of 127.0.0.1; return (url, process, log path)."""
    import sys

    port = _free_port()
    return _start([sys.executable, "app.py", "--port", str(port)], log_dir, env, port)


class ZeroApp:
    """`app.py` under spaces' ZeroGPU code (tests/zerogpu), with a stand-in device API that
    records every call; the app and its GPU worker processes are one process group."""

    def __init__(self, log_dir, env: dict, idle: bool, **platform):
        import sys

        from tests.zerogpu.device_api import DeviceApi

        self.api = DeviceApi(idle=idle, log_path=os.path.join(str(log_dir), "device-api.jsonl"), **platform).start()
        port = _free_port()
        zero_env = {"SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": self.api.url,
                    "ZEROGPU_OFFLOAD_DIR": os.path.join(str(log_dir), "offload"), **env}
        self.url, self.proc, self.log = _start([sys.executable, "tests/zerogpu/start_app.py", "--cpu", "app.py",
                                                "--port", str(port)], log_dir, zero_env, port, own_group=True)

    def close(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # spaces' workers outlive a SIGTERM of the app
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.api.close()


#: What the ZeroGPU apps of the tests ask for a call (config.GpuBudget): the tests compute the
#: same figures for the work they ask for. The fresh-worker app caps a call at 6 s, so that a run
#: of the whole clip needs several calls.
ZERO_BUDGET = {"SAM3_GPU_START_S": "10", "SAM3_GPU_SECONDS_PER_FRAME": "0.5", "SAM3_GPU_SECONDS_PER_EDIT": "2",
               "SAM3_GPU_SECONDS_PER_KEPT_FRAME": "0.05", "SAM3_GPU_LEARN_PACE": "0"}


def _zero_app(test_model_dir, tmp_path_factory, idle: bool, cap_s: int):
    base = tmp_path_factory.mktemp("zerogpu-idle" if idle else "zerogpu-fresh")
    (base / "tmp").mkdir()
    # the warm app writes a run's files through two lanes (processes, sam3_video/lanes.py), the fresh one in-process
    app = ZeroApp(base, {"SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu", "SAM3_MAX_GPU_SECONDS": str(cap_s),
                         "TMPDIR": str(base / "tmp"), "SAM3_WRITER_PROCESSES": "2" if idle else "0", **ZERO_BUDGET},
                  idle)
    app.tmp, app.cap_s, app.idle = str(base / "tmp"), cap_s, idle
    return app


@pytest.fixture()
def zero_platform(test_model_dir, tmp_path_factory):
    """Start the app under ZeroGPU with today's hardware (x1.5) and the platform's refusals played
    by the device API: `zero_platform(env={...}, quota=..., queue_fail={...}, kill_overrun=...)`.
    The apps are closed after the test."""
    started = []

    def start(env: dict | None = None, idle: bool = False, **platform) -> ZeroApp:
        base = tmp_path_factory.mktemp("zerogpu-platform")
        (base / "tmp").mkdir()
        app = ZeroApp(base, {"SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu", "TMPDIR": str(base / "tmp"),
                             "ZG_HARDWARE": "blackwell", **(env or {})}, idle, **platform)
        app.tmp = str(base / "tmp")
        started.append(app)
        return app

    yield start
    for app in started:
        app.close()


@pytest.fixture(scope="session")
def zero_fresh(test_model_dir, tmp_path_factory):
    """The app under ZeroGPU, a newly forked worker for every call, 6 s of GPU at most per call."""
    app = _zero_app(test_model_dir, tmp_path_factory, idle=False, cap_s=6)
    yield app
    app.close()


@pytest.fixture(scope="session")
def zero_warm(test_model_dir, tmp_path_factory):
    """The app under ZeroGPU, warm workers reused, the default cap (120 s)."""
    app = _zero_app(test_model_dir, tmp_path_factory, idle=True, cap_s=120)
    yield app
    app.close()


@pytest.fixture(scope="session")
def app_url(test_model_dir, tmp_path_factory):
    """The app on the small SAM3 (CPU), shared by the API and browser tests."""
    url, proc, _ = launch_app(tmp_path_factory.mktemp("app"), {"SAM3_MODEL": test_model_dir, "SAM3_DEVICE": "cpu",
                                                               "SAM3_GPU_CONCURRENCY": "2"})
    yield url
    proc.terminate()
    proc.wait(timeout=30)
