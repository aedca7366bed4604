"""Issue 26 on a GPU: fps and peak memory with 1, 4 and 16 objects, precision, compiled encoder.

Prepared, not yet run on a GPU (`--smoke-cpu` checks it end to end on the CPU with the small
model). Estimated at about 6 minutes on an H100/H200. One command on the lent machine:

    GPU_SCRIPT=gpu_objects bash bench/gpu_check.sh          # writes $OUT/gpu_objects.json/.md

A full-size SAM3 with random weights (`make_test_model(full_size=True)`), bf16 unless said. Stages,
each saved to OUT/gpu_objects.json as soon as it ends (a stage that fails records its error):

  objects    N in 1, 4, 16 objects added by box on frame 0 (forced: the detector's threshold is
             set out of reach), --frames frames forward, after 3 frames of warm-up:
             ours      the engine as shipped (batched tracker, clean-up on the device)
             loop      the same engine with transformers' per-object tracker loop, the clean-up
                       on the host, transformers' image encoder forward and frame planning
                       (SAM3_BATCH_TRACKER=0 SAM3_DEVICE_CLEANUP=0 SAM3_LEAN_ENCODER=0
                       SAM3_FEW_READS=0: the engine before issue 26, but for the one-read hand-off);
                       masks compared with ours (IoU per object per frame)
             meta      Meta's predictor on the same frames with the text prompt (where `sam3`
                       imports with CUDA); its object count is what it finds, not forced
             fps, peak memory (torch.cuda.max_memory_allocated) and the slope of peak memory
             per object, the figure SAM3_MAX_OBJECTS' ZeroGPU default should be sized from
  precision  4 objects: bf16 weights (today) vs fp32 weights + TF32 + bf16 autocast, both
             against an fp32 run (TF32 off): fps and mask IoU
  compile    the detector's image encoder under torch.compile (--compile-mode) against eager on
             the same frame: cosine of the features (>= 0.999 to pass) and ms per call
  profile    1 and 16 objects, ours: per stage of bench/ops.py (encoder, detector, tracker, memory,
             clean-up, planning, hand-off), ms a frame and the peak memory each stage adds above
             what was allocated when it began (where the 31 GB peak at 1-2 objects comes from),
             with a device sync at each stage boundary; and torch.profiler's top kernels over 3
             frames (OUT/gpu_profile_N.txt)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402

def _sync(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _peak(device) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if str(device).startswith("cuda") else None


def _reset(device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _load(model_dir, device, dtype, batched=True, on_device=True, lean=True):
    """A fresh TransformersBackend (not the process cache) with the tracker / clean-up switches;
    `lean` False: transformers' image encoder forward and frame planning too."""
    from sam3_video.backends import postprocess
    from sam3_video.backends.transformers import TransformersBackend

    backend = TransformersBackend(model_dir, device, dtype)
    backend.model.tracker_model.batch_objects = batched
    backend.model.detector_model.vision_encoder.backbone.lean_forward = lean
    backend.model.few_reads = lean
    backend.on_device_cleanup = on_device  # installed by run_engine (transformers' module is shared)
    backend.default_thresholds = (2.0, 2.0)  # nothing detected: the objects are the boxes added
    with torch.no_grad():  # random weights: the tracker says "object" for the boxes, as a trained one
        backend.model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(5.0)  # would (bench/ops.py)
    return backend


def run_engine(backend, video, n, frames, autocast=False) -> dict:
    """n objects added by box on frame 0, `frames` frames forward after 3 warm-up frames."""
    from ops import grid_boxes

    from sam3_video.backends import postprocess
    from sam3_video.video import probe

    backend.postprocessing = postprocess.install(backend.on_device_cleanup)
    info = probe(video)
    device = backend.device
    session = backend.open(video, info)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    try:
        with ctx:
            session.detect(0, ["person"])
            for box in grid_boxes(n, info.width, info.height):
                session.add_object(0, "thing", box=box)
            list(session.propagate(range(0, 4), reverse=False))
            _sync(device)
            _reset(device)
            t0 = time.perf_counter()
            results = list(session.propagate(range(4, 4 + frames), reverse=False))
            _sync(device)
            wall = time.perf_counter() - t0
    finally:
        session.close()
    return {"objects": n, "frames": len(results), "fps": round(len(results) / wall, 2), "peak_gib": _peak(device),
            "tracked": int(np.mean([len(r) for r in results])), "masks": [r.masks for r in results]}


def mask_agreement(a: list, b: list) -> dict:
    """Worst and mean IoU per object per frame between two runs' masks."""
    ious = []
    for ma, mb in zip(a, b):
        for x, y in zip(ma, mb):
            union = np.logical_or(x, y).sum()
            ious.append(np.logical_and(x, y).sum() / union if union else 1.0)
    return {"min_iou": round(float(min(ious)), 4) if ious else None, "mean_iou": round(float(np.mean(ious)), 4) if ious else None}


def stage_objects(args, model_dir, video) -> dict:
    out = {}
    ours = _load(model_dir, args.device, args.dtype)
    loop = _load(model_dir, args.device, args.dtype, batched=False, on_device=False, lean=False)
    for n in args.objects:
        a = run_engine(ours, video, n, args.frames)
        b = run_engine(loop, video, n, args.frames)
        out[n] = {"ours": {k: v for k, v in a.items() if k != "masks"}, "loop": {k: v for k, v in b.items() if k != "masks"},
                  "masks_ours_vs_loop": mask_agreement(a["masks"], b["masks"])}
    peaks = [(n, out[n]["ours"]["peak_gib"]) for n in args.objects if out[n]["ours"]["peak_gib"] is not None]
    if len(peaks) >= 2:
        out["peak_gib_per_object"] = round((peaks[-1][1] - peaks[0][1]) / (peaks[-1][0] - peaks[0][0]), 3)
    try:  # Meta's predictor, where it imports with CUDA
        from gpu_check import bare_official
        from sam3.model_builder import build_sam3_video_predictor

        out["meta"] = bare_official(build_sam3_video_predictor(), video, "person", args.frames + 4)
    except Exception as err:  # noqa: BLE001 - recorded, the other stages go on
        out["meta"] = {"error": f"{type(err).__name__}: {err}"[:300]}
    return out


def stage_precision(args, model_dir, video) -> dict:
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    n = args.objects[min(1, len(args.objects) - 1)]
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref = run_engine(_load(model_dir, args.device, "float32"), video, n, args.frames)
    cast = run_engine(_load(model_dir, args.device, "bfloat16"), video, n, args.frames)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    auto = run_engine(_load(model_dir, args.device, "float32"), video, n, args.frames,
                      autocast=str(args.device).startswith("cuda"))
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return {"objects": n, "fp32_fps": ref["fps"], "bf16_cast": {"fps": cast["fps"], **mask_agreement(cast["masks"], ref["masks"])},
            "fp32_tf32_autocast": {"fps": auto["fps"], **mask_agreement(auto["masks"], ref["masks"])}}


def stage_compile(args, model_dir, video) -> dict:
    backend = _load(model_dir, args.device, args.dtype)
    encoder = backend.model.detector_model.vision_encoder
    size = backend.model.config.detector_config.vision_config.backbone_config.image_size
    pixels = torch.randn(1, 3, size, size, device=args.device, dtype=backend.torch_dtype)

    def timed(fn, reps=5):
        with torch.inference_mode():
            fn(pixels)
            _sync(args.device)
            t0 = time.perf_counter()
            for _ in range(reps):
                out = fn(pixels)
            _sync(args.device)
        return out, (time.perf_counter() - t0) / reps * 1000

    eager, eager_ms = timed(encoder)
    t0 = time.perf_counter()
    compiled_fn = torch.compile(encoder, fullgraph=True, mode=args.compile_mode,
                                backend="inductor" if str(args.device).startswith("cuda") else "aot_eager")
    compiled, _ = timed(compiled_fn, reps=1)
    compile_s = time.perf_counter() - t0
    compiled, compiled_ms = timed(compiled_fn)
    a, b = eager.last_hidden_state.float().flatten(), compiled.last_hidden_state.float().flatten()
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return {"mode": args.compile_mode, "eager_ms": round(eager_ms, 2), "compiled_ms": round(compiled_ms, 2),
            "compile_s": round(compile_s, 1), "cosine": round(cosine, 6), "passes": cosine >= 0.999}


class StageClock:
    """bench/ops.py's stages (`ops.stage_all` wraps the functions with `wrap`), timed exclusive of
    nested stages, with the peak memory each adds above what was allocated when it began."""

    def __init__(self, device):
        self.cuda = str(device).startswith("cuda")
        self.ms: dict = {}
        self.peak_gib: dict = {}
        self.stack: list = []  # [name, started, allocated at start, peak seen so far]
        self.patches: list = []

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def wrap(self, owner, attr: str, name: str) -> None:
        import functools

        original = getattr(owner, attr)
        own = vars(owner).get(attr) if hasattr(owner, "__dict__") else original
        self.patches.append((owner, attr, own))
        clock = self

        @functools.wraps(original)
        def staged(*args, **kwargs):
            clock.enter(name)
            try:
                return original(*args, **kwargs)
            finally:
                clock.leave()

        setattr(owner, attr, staged)

    def enter(self, name: str) -> None:
        now = self._now()
        if self.stack:
            top = self.stack[-1]
            self.ms[top[0]] = self.ms.get(top[0], 0.0) + (now - top[1]) * 1000
            if self.cuda:
                top[3] = max(top[3], torch.cuda.max_memory_allocated())
        allocated = torch.cuda.memory_allocated() if self.cuda else 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.stack.append([name, self._now(), allocated, allocated])

    def leave(self) -> None:
        name, started, allocated, peak = self.stack.pop()
        now = self._now()
        self.ms[name] = self.ms.get(name, 0.0) + (now - started) * 1000
        if self.cuda:
            peak = max(peak, torch.cuda.max_memory_allocated())
            self.peak_gib[name] = round(max(self.peak_gib.get(name, 0.0), (peak - allocated) / 2**30), 3)
            torch.cuda.reset_peak_memory_stats()
        if self.stack:
            self.stack[-1][1] = self._now()
            self.stack[-1][3] = max(self.stack[-1][3], peak)

    def restore(self) -> None:
        for owner, attr, original in reversed(self.patches):
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)


def stage_profile(args, model_dir, video) -> dict:
    from ops import grid_boxes, stage_all

    from sam3_video.backends import postprocess
    from sam3_video.video import probe

    backend = _load(model_dir, args.device, args.dtype)
    backend.postprocessing = postprocess.install(True)
    info = probe(video)
    out = {}
    for n in (args.objects[0], args.objects[-1]):
        session = backend.open(video, info)
        try:
            session.detect(0, ["person"])
            for box in grid_boxes(n, info.width, info.height):
                session.add_object(0, "thing", box=box)
            list(session.propagate(range(0, 4), reverse=False))
            clock = StageClock(args.device)
            stage_all(clock, backend)
            try:
                frames = list(session.propagate(range(4, 14), reverse=False))
            finally:
                clock.restore()
            out[n] = {"ms_per_frame": {k: round(v / len(frames), 2) for k, v in clock.ms.items()},
                      "peak_gib_added": clock.peak_gib,
                      "allocated_gib_after": round(torch.cuda.memory_allocated() / 2**30, 2) if clock.cuda else None}
            if clock.cuda:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    list(session.propagate(range(14, 17), reverse=False))
                    torch.cuda.synchronize()
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=30)
                with open(os.path.join(args.out, f"gpu_profile_{n}.txt"), "w") as f:
                    f.write(table)
                events = prof.key_averages()
                out[n]["kernels_per_frame"] = round(sum(e.count for e in events if e.device_type.name == "CUDA") / 3)
        finally:
            session.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default=os.path.join(HERE, "..", "tests", "data", "bigbuckbunny.mp4"))
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--compile-mode", default="max-autotune-no-cudagraphs")
    p.add_argument("--skip", nargs="*", default=[], choices=["objects", "precision", "compile", "profile"])
    p.add_argument("--smoke-cpu", action="store_true", help="the small model on the CPU, 3 frames, 1 and 2 objects")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    from sam3_video.testmodel import make_test_model

    if args.smoke_cpu:
        args.device, args.dtype, args.frames, args.objects = "cpu", "float32", 3, [1, 2]
        args.compile_mode = "default"
    else:
        args.device, args.dtype = "cuda", "bfloat16"
    model_dir = make_test_model(tempfile.mkdtemp(), full_size=not args.smoke_cpu, device=args.device)
    report = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "CPU (smoke run)",
              "frames": args.frames, "stages": {}}
    path = os.path.join(args.out, "gpu_objects.json")
    stages = (("objects", stage_objects), ("profile", stage_profile), ("precision", stage_precision),
              ("compile", stage_compile))
    for name, fn in stages:
        if name in args.skip:
            continue
        t0 = time.perf_counter()
        try:
            report["stages"][name] = fn(args, model_dir, args.video)
        except Exception as err:  # noqa: BLE001 - recorded; the next stage still runs
            report["stages"][name] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()[-2000:]}
        report["stages"][name]["stage_s"] = round(time.perf_counter() - t0, 1)
        with open(path, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(name, json.dumps(report["stages"][name], default=str)[:1500], flush=True)
    print("wrote", path)


if __name__ == "__main__":
    main()
