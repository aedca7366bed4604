"""The app under ZeroGPU's process model on a real GPU: `spaces`' zero-mode code with its own CUDA
start-up in every worker (no CPU stand-ins), the full-size SAM3 architecture with random weights.

    python bench/zerogpu_check.py --video tests/data/bigbuckbunny.mp4 --out OUT_DIR

Starts the device-API stand-in (tests/zerogpu/device_api.py) with this machine's GPU UUID, then
app.py under tests/zerogpu/start_app.py (without --cpu): the model loads in the main thread as
CUDA placeholders, spaces packs it at launch and each worker moves it onto the GPU. Drives the
visitor's flow with gradio_client, once with a new worker per call and once with warm workers:
open, detect, a click, propagate, Stop (fresh workers only), the one-shot endpoint. Records each
step's wall time, what each call asked for, how long a worker took to start (/schedule to
/allow) and to work (/allow to /release), whether /release came after the run's files were final,
and whether the app log has "Low-level CUDA init" or "GPU task aborted". Writes
OUT_DIR/zerogpu_check.json and .md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from tests.zerogpu.device_api import DeviceApi  # noqa: E402


def gpu_uuid() -> str:
    out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.split()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model_dir: str, work: str, idle: bool, outputs: str, cpu: bool, log: str) -> tuple:
    api = DeviceApi(idle=idle, uuid="cpu" if cpu else gpu_uuid(), log_path=os.path.join(work, "device-api.jsonl")).start()
    port = free_port()
    os.makedirs(os.path.join(work, "tmp"), exist_ok=True)
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": api.url,
           "ZEROGPU_OFFLOAD_DIR": os.path.join(work, "offload"), "TMPDIR": os.path.join(work, "tmp"),
           "SAM3_MODEL": model_dir, "SAM3_APP_OUTPUTS": outputs, "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **({"SAM3_DEVICE": "cpu"} if cpu else {})}
    t0 = time.time()
    launcher = ["tests/zerogpu/start_app.py", *(["--cpu"] if cpu else []), "app.py", "--port", str(port)]
    proc = subprocess.Popen([sys.executable, *launcher], cwd=REPO,
                            env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(open(log).read()[-4000:])
            time.sleep(0.5)
    return api, proc, log, f"http://127.0.0.1:{port}/", round(time.time() - t0, 1)


def calls_of(api, since: int) -> list[dict]:
    """Each GPU call since `since`: asked seconds, worker start (schedule -> allow), work (allow -> release)."""
    calls, current = [], None
    for c in api.calls[since:]:
        if c["path"] == "/schedule":
            current = {"asked_s": int(c["params"]["durationSeconds"]), "t": c["t"]}
            calls.append(current)
        elif c["path"] == "/allow" and current:
            current["worker_start_s"] = round(c["t"] - current["t"], 2)
            current["allow_t"] = c["t"]
        elif c["path"] == "/release" and current:
            current["work_s"] = round(c["t"] - current.get("allow_t", current["t"]), 2)
            current["release_t"] = c["t"]
    return calls


def released_after_final(calls: list[dict], zip_path: str) -> bool:
    with zipfile.ZipFile(zip_path) as z:
        visitor = os.path.dirname(os.path.dirname(json.loads(z.read("annotations/manifest.json"))["video"]["path"]))
    run_json = max(glob.glob(os.path.join(visitor, "run-*", "run.json")), key=os.path.getmtime)
    return calls[-1]["release_t"] >= os.path.getmtime(run_json)


def flow(url: str, api, video: str, frames: int, stop: bool) -> dict:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    steps = {}

    def step(name, fn):
        since, t = len(api.calls), time.time()
        value = fn()
        steps[name] = {"wall_s": round(time.time() - t, 2), "calls": calls_of(api, since)}
        print(name, json.dumps(steps[name], default=str), flush=True)  # as it goes: a cut-off run still tells
        return value

    facts, *_ = step("open_video", lambda: client.predict(handle_file(video), api_name="/open_video"))
    width, height = (int(v) for v in next(w for w in facts.replace(",", " ").split() if "x" in w).split("x"))
    _, table, _ = step("detect", lambda: client.predict(0, "rabbit", "0.1", api_name="/detect"))
    ids = [row[0] for row in table["data"]]
    steps["detect"]["objects"] = len(ids)
    if ids:
        step("refine", lambda: client.predict(ids[0], width / 2, height / 2, True, api_name="/refine_object"))
    job = None

    def propagate():
        nonlocal job
        job = client.submit("forward", frames, api_name="/propagate")
        return job.result(timeout=600)

    *_, zip_path, _, summary = step("propagate", propagate)
    steps["propagate"].update(summary=summary, updates=len(job.outputs()),
                              fps=round(frames / steps["propagate"]["wall_s"], 2),
                              released_after_final=released_after_final(steps["propagate"]["calls"], zip_path))
    if stop:
        def stopped():
            j = client.submit("forward", None, api_name="/propagate")
            while not j.done():
                p = j.status().progress_data
                if p and (p[0].index or 0) >= 10:
                    break
                time.sleep(0.1)
            client.predict(api_name="/stop")
            return j.result(timeout=600)

        *_, zip_path, _, summary = step("stop", stopped)
        steps["stop"].update(summary=summary, released_after_final=released_after_final(steps["stop"]["calls"], zip_path))
    _, zip_path, summary = step("one_shot", lambda: client.predict(handle_file(video), "rabbit", 60, "both", 5, "0.1",
                                                                   api_name="/segment_video"))
    steps["one_shot"].update(summary=summary, released_after_final=released_after_final(steps["one_shot"]["calls"],
                                                                                        zip_path))
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=os.path.join(REPO, "tests", "data", "bigbuckbunny.mp4"))
    ap.add_argument("--out", default=os.environ.get("OUT", "zerogpu_out"))
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--modes", default="fresh,warm", help="fresh (a new worker per call), warm (reused workers)")
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="check the script itself on a CPU: the small model, spaces' CPU stand-ins (tests/zerogpu)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    video = os.path.abspath(args.video)
    import torch

    from sam3_video.testmodel import make_test_model

    report = {"gpu": "CPU (smoke test of the script)" if args.smoke_cpu else torch.cuda.get_device_name(0),
              "torch": torch.__version__, "video": os.path.basename(video), "frames": args.frames}
    work = tempfile.mkdtemp(prefix="zerogpu-check-")
    t = time.time()
    model_dir = make_test_model(os.path.join(work, "sam3-random"), full_size=not args.smoke_cpu)
    report["build_model_s"] = round(time.time() - t, 1)
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        outputs = "all"
    except Exception:  # the lent machine has no ffmpeg: every output but the overlay video
        outputs = "coco,ytvis,mot,mots,labelme,davis"
    report["outputs"] = outputs
    for mode in args.modes.split(","):
        idle = mode == "warm"
        folder = os.path.join(work, mode)
        os.makedirs(folder)
        log = os.path.join(args.out, f"app-{mode}.log")  # written there as it goes: a cut-off run still tells
        api, proc, log, url, started = start(model_dir, folder, idle, outputs, args.smoke_cpu, log)
        try:
            report[mode] = {"app_start_s": started, **flow(url, api, video, args.frames, stop=not idle)}
        except Exception as err:
            report[mode] = {"app_start_s": started, "error": f"{type(err).__name__}: {err}"}
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            api.close()
        text = open(log, encoding="utf-8", errors="replace").read()
        report[mode]["log_low_level_cuda_init"] = "Low-level CUDA init" in text
        report[mode]["log_gpu_task_aborted"] = "GPU task aborted" in text
        with open(os.path.join(args.out, "zerogpu_check.json"), "w") as f:
            json.dump(report, f, indent=2, default=str)


if __name__ == "__main__":
    main()
