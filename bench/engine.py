"""Engine benchmark: where the time and memory of `sam3_video.pipeline.run` (the CLI's path) go.

Runs the shared clips (carphone, bikes, bigbuckbunny) and a 10x longer bikes (built here with the
bundled ffmpeg, `-stream_loop 9 -c copy`, 2500 frames) through `pipeline.run` with the small local
SAM3 (`make-test-model`, built into bench/.cache/ once per version of testmodel.py), forward from
frame 0, on the CPU.

Per stage, measured by wrapping functions in this script only (exclusive times, nested calls
subtracted; time.perf_counter):
  decode      VideoReader.__getitem__ (PyAV decode + RGB conversion)
  preprocess  _LazyFrames.__getitem__ minus the decode inside it (resize/normalise to a tensor)
  model       TransformersSession._step minus the frame fetches it triggers (Sam3VideoModel call)
  post        TransformersSession._to_result (postprocess_outputs, masks to source size, numpy)
  write       ResultsWriter.write (COCO RLE + JSON line)
  other       the rest of run(): probe, demux index, manifest, progress
Each clip runs in its own subprocess, so peak RSS (ru_maxrss) is per clip; the child also reports
the size of the per-video structures at the last frame, to show which one grows with length.
On a small shared machine other processes wreck CPU timings (two 2-thread torch processes on 2
cores run many times slower), so each clip waits for an idle CPU, measures the CPU others used meanwhile
("others' CPU" column) and reruns (--retries) when they used more than 0.1 core.

    python bench/engine.py                    # everything, writes bench/results/engine-cpu.md
    python bench/engine.py --max-frames 50 --long-frames 500 --out /tmp/x.md   # quicker
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CLIPS = [("carphone", "carphone_pristine.mp4", "person, window"), ("bikes", "bikes.mp4", "car, light"),
         ("bigbuckbunny", "bigbuckbunny.mp4", "rabbit, tree")]
STAGES = ("decode", "preprocess", "model", "post", "write", "other")
MiB = 1024 * 1024


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def tensor_bytes(obj, seen: set) -> int:
    """Bytes of the tensors / arrays reachable through dicts, lists and sets (each storage once)."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        key = obj.untyped_storage().data_ptr()
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, np.ndarray):
        return 0 if id(obj) in seen or seen.add(id(obj)) else obj.nbytes
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


def one(args) -> dict:
    """Child: run one clip through pipeline.run with the stage wrappers; return the numbers."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from sam3_video import pipeline, video
    from sam3_video.backends import load_backend
    from sam3_video.backends import transformers as tb
    from sam3_video.results import ResultsWriter
    from sam3_video.types import RunOptions

    totals = dict.fromkeys(STAGES[:-1], 0.0)
    stack: list[float] = []  # time spent in wrapped callees of each open wrapped call
    steps: list[float] = []  # model seconds of each step

    def timed(cls, attr, stage):
        inner = getattr(cls, attr)

        def wrapper(*a, **k):
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                elapsed = time.perf_counter() - t0
                own = elapsed - stack.pop()
                totals[stage] += own
                if stage == "model":
                    steps.append(own)
                if stack:
                    stack[-1] += elapsed

        setattr(cls, attr, wrapper)

    timed(video.VideoReader, "__getitem__", "decode")
    timed(tb._LazyFrames, "__getitem__", "preprocess")
    timed(tb.TransformersSession, "_step", "model")
    timed(tb.TransformersSession, "_to_result", "post")
    timed(ResultsWriter, "write", "write")

    t0 = time.perf_counter()
    backend = load_backend(args.model, "transformers", "cpu", "float32")
    load_s = time.perf_counter() - t0
    rss_loaded = rss_kib()
    sizes: dict[str, float] = {}
    holder: dict = {}

    def on_progress(p) -> None:  # what the session holds at the last frame
        if p.done != p.total:
            return
        s = holder["session"]._session
        st = s.state
        per_frame = ("obj_id_to_tracker_score_frame_wise", "frames_tracked_per_obj", "suppressed_obj_ids",
                     "unmatched_frame_inds", "overlap_pair_to_frame_inds")
        sizes.update({
            "output_dict_per_obj": tensor_bytes(st.output_dict_per_obj, set()) / MiB,
            "output_dict_frames": sum(len(d["non_cond_frame_outputs"]) + len(d["cond_frame_outputs"])
                                      for d in st.output_dict_per_obj.values()),
            "vision_feature_cache": tensor_bytes(st.cache._vision_features, set()) / MiB,
            "lazy_frame_cache": tensor_bytes(dict(st.processed_frames._cache), set()) / MiB,
            "reader_frame_cache": tensor_bytes(dict(s.reader._cache), set()) / MiB,
            "reader_frames_cached": len(s.reader._cache),
            "per_frame_metadata_entries": sum(len(x) if hasattr(x, "__len__") else 1
                                              for n in per_frame for x in getattr(st, n).values()),
        })

    options = RunOptions.of(prompts=(args.prompt,), direction="forward", start_frame=0, max_frames=args.max_frames)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = pipeline.run(args.one, options, out, backend=backend, on_progress=on_progress,
                               on_session=lambda s: holder.update(session=s),
                               outputs=())  # the engine alone; bench/outputs.py measures overlay and exports
        wall = time.perf_counter() - t0
        results_mb = os.path.getsize(os.path.join(out, "results.jsonl")) / MiB
    info = holder["session"].info
    totals["other"] = wall - sum(totals.values())
    k = len(steps) // 10  # model ms/frame over the 2nd and the last tenth of the frames
    growth = [1000 * sum(steps[k:2 * k]) / k, 1000 * sum(steps[-k:]) / k] if k else []
    return dict(frames=summary.frames_done, status=summary.status, wall_s=wall, load_s=load_s, totals=totals,
                size=f"{info.width}x{info.height}", objects=summary.objects_per_label, results_mib=results_mb,
                rss_loaded_mib=rss_loaded / 1024, peak_rss_mib=rss_kib() / 1024, sizes=sizes, model_growth=growth,
                threads=torch.get_num_threads())


def small_model() -> str:
    """The small random SAM3 in bench/.cache/, rebuilt whenever testmodel.py changes."""
    from sam3_video import testmodel

    with open(testmodel.__file__, "rb") as f:
        version = hashlib.sha1(f.read()).hexdigest()[:10]
    model = os.path.join(REPO, "bench", ".cache", f"test-model-{version}")
    if not os.path.isfile(os.path.join(model, "config.json")):
        testmodel.make_test_model(model)
    return model


def make_long(src: str, tmp: str, loops: int = 10) -> str:
    import imageio_ffmpeg

    from sam3_video.video import probe

    dst = os.path.join(tmp, f"bikes_x{loops}.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", src,
                    "-c", "copy", dst], check=True)
    n, expect = probe(dst).num_frames, loops * probe(src).num_frames
    if n != expect:
        raise SystemExit(f"{dst} has {n} frames, expected {expect}")
    return dst


def busy_s() -> float:
    """CPU seconds all processes of this machine have used (from /proc/stat), for contention checks."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit_s: float, window_s: float = 5.0) -> None:
    """Wait (up to limit_s) until other processes use under 0.2 cores: on 2 cores they skew everything."""
    deadline, warned = time.time() + limit_s, False
    while time.time() < deadline:
        b0 = busy_s()
        time.sleep(window_s)
        if (busy_s() - b0) / window_s < 0.2:
            return
        if not warned:
            print("waiting for other processes to leave the CPU ...", file=sys.stderr, flush=True)
            warned = True


def emit(row: dict) -> None:
    """A benchmark child's result, read back by `child_result`."""
    print("RESULT " + json.dumps(row), flush=True)


def child_result(cmd: list[str], wait_s: float = 600) -> dict:
    """Run a benchmark child (`cmd`) once the CPU is quiet; return the row it `emit`ted."""
    wait_quiet(wait_s)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_child(cmd: list[str], wait_s: float) -> dict:
    wait_quiet(wait_s)
    busy, mine, t0 = busy_s(), resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = after.ru_utime + after.ru_stime - mine.ru_utime - mine.ru_stime
    r["others_cpu"] = max(0.0, busy_s() - busy - own) / (time.perf_counter() - t0)  # cores used by others
    return r


def machine() -> str:
    def sh(cmd):
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()

    cpu = sh("lscpu | grep 'Model name'").split(":", 1)[-1].strip()
    mem = sh("free -g | awk '/Mem:/ {print $2}'")
    return f"{sh('nproc')} CPU cores ({cpu}), {mem} GiB RAM, {platform.system()} {platform.release()}"


def save_report(lines: list[str], path: str) -> None:
    """Print a results page and write it to `path` (folders made as needed)."""
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def report(rows, wall, versions) -> str:
    head = " | ".join(STAGES) + " | total | frames/s | peak RSS MiB | others' CPU | model, 2nd / last tenth |"
    lines = [f"# Engine benchmark (CPU), {datetime.date.today().isoformat()}", "",
             f"- machine: {machine()}; torch threads: {rows[0][1]['threads']}",
             f"- versions: {versions}; model: small random SAM3 (`make-test-model`, 112 px), float32 on the CPU",
             f"- command: `{' '.join(['python', 'bench/engine.py', *sys.argv[1:]])}` ({wall:.0f} s wall in all)",
             "- path: `sam3_video.pipeline.run`, forward from frame 0; each clip in its own process", "",
             "ms per frame by stage (exclusive), throughput and peak RSS of the clip's process:", "",
             "| clip | size | frames | " + head, "|---" * (len(STAGES) + 8) + "|"]
    for name, r in rows:
        ms = [1000 * r["totals"][s] / r["frames"] for s in STAGES] + [1000 * r["wall_s"] / r["frames"]]
        growth = "{:.0f} / {:.0f}".format(*r["model_growth"]) if r["model_growth"] else ""
        lines.append(f"| {name} | {r['size']} | {r['frames']} | " + " | ".join(f"{v:.1f}" for v in ms)
                     + f" | {r['frames'] / r['wall_s']:.2f} | {r['peak_rss_mib']:.0f} | {r['others_cpu']:.2f} | {growth} |")
    lines += ["", "others' CPU: cores busy with other processes during the clip (0: the machine was quiet; on 2 cores "
              "anything above ~0.1 inflates the times). Last column: model ms/frame over the 2nd and the last tenth "
              "of the frames (the 1st holds the detect step and warm-up).", "", "Totals in seconds:", "",
              "| clip | " + " | ".join(STAGES) + " | run() wall | model load | results MiB |", "|---" * (len(STAGES) + 4) + "|"]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(f"{r['totals'][s]:.2f}" for s in STAGES)
                     + f" | {r['wall_s']:.1f} | {r['load_s']:.1f} | {r['results_mib']:.1f} |")
    frames, secs = sum(r["frames"] for _, r in rows), sum(r["wall_s"] for _, r in rows)
    lines += ["", f"Overall: {frames} frames in {secs:.1f} s of run() = {frames / secs:.2f} frames/s.", ""]
    by = dict(rows)
    if "bikes" in by and "bikes x10" in by:
        a, b = by["bikes"], by["bikes x10"]
        lines += [f"Peak RSS bikes x10 / bikes: {b['peak_rss_mib']:.0f} / {a['peak_rss_mib']:.0f} MiB = "
                  f"**{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}** ({b['frames']} vs {a['frames']} frames; target <= 1.2). "
                  f"RSS after loading the model: {a['rss_loaded_mib']:.0f} / {b['rss_loaded_mib']:.0f} MiB, so the run "
                  f"itself adds {a['peak_rss_mib'] - a['rss_loaded_mib']:.0f} vs {b['peak_rss_mib'] - b['rss_loaded_mib']:.0f} MiB.", ""]
    keys = list(rows[0][1]["sizes"])
    lines += ["What the session holds at the last frame (MiB of tensors/arrays, or counts):", "",
              "| clip | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in rows:
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in (r["sizes"].get(k, "") for k in keys)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Objects found: " + "; ".join(f"{n}: {r['objects']}" for n, r in rows)
              + " (random weights: the masks mean nothing, the work per object is real).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default=os.path.join(REPO, "tests", "data"),
                   help="folder with the clips (default: %(default)s)")
    p.add_argument("--model", default=None, help="model folder (default: build the small one in bench/.cache/)")
    p.add_argument("--max-frames", type=int, default=None, help="frame limit for the three short clips")
    p.add_argument("--long-frames", type=int, default=None, help="frame limit for bikes x10 (default: all 2500)")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "engine-cpu.md"))
    p.add_argument("--wait-quiet", type=float, default=1800, help="seconds to wait for an idle CPU before each clip")
    p.add_argument("--retries", type=int, default=2, help="reruns of a clip during which other processes used the CPU")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--prompt", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    import torch
    import transformers

    started = time.perf_counter()
    model = args.model or small_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(n, os.path.join(args.media, f), pr, args.max_frames) for n, f, pr in CLIPS]
        jobs.append(("bikes x10", make_long(os.path.join(args.media, "bikes.mp4"), tmp), "car, light", args.long_frames))
        for name, path, prompt, limit in jobs:
            cmd = [sys.executable, os.path.abspath(__file__), "--one", path, "--prompt", prompt, "--model", model]
            cmd += ["--max-frames", str(limit)] if limit else []
            best = None
            for attempt in range(args.retries + 1):  # a clip another process slowed down runs again
                r = run_child(cmd, args.wait_quiet)
                print(f"{name}: {r['frames']} frames in {r['wall_s']:.1f} s ({r['frames'] / r['wall_s']:.2f} frames/s), peak "
                      f"RSS {r['peak_rss_mib']:.0f} MiB, others' CPU {r['others_cpu']:.2f}", file=sys.stderr, flush=True)
                best = r if best is None or r["others_cpu"] < best["others_cpu"] else best
                if r["others_cpu"] <= 0.1:
                    break
            rows.append((name, best))
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}"
    text = report(rows, time.perf_counter() - started, versions)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
