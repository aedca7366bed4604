"""Speed on a GPU: our pipeline against the bare library loop, 1, 5 and 20 objects (issue 7, bench 4).

One command from a fresh checkout on a CUDA machine (the lent device runs `bench/gpu_bench.sh`,
which installs the carried wheels first). Not yet run on a GPU: estimated at about 5 minutes on an
H100/H200 at the defaults, plus the compile warm-up of the compiled run (`--skip compile` leaves
it out):

    python bench/gpu_bench.py --video tests/data/bigbuckbunny.mp4 --out OUT_DIR

A full-size SAM3 with random weights (`make_test_model(full_size=True)`), loaded through the
same code as the real one, bf16. For each object count N the model's own cap is set to N and
the detection threshold to 0, so random weights give exactly N objects (the bare loop gets the
same settings on its own copy of the weights):

  bare      transformers as its docs show it: decode every frame (PyAV), one session, the text
            prompt, `propagate_in_video_iterator`, `postprocess_outputs`, masks to the CPU
  ours      `sam3_video.pipeline.run` (results.jsonl; the overlay too where imageio-ffmpeg is
            installed), decode and preprocessing ahead in a thread (the CUDA default)
  ours, no prefetch   the same with SAM3_PREFETCH_FRAMES=0
  ours, compiled      5 objects with SAM3_COMPILE set to each of --compile-modes: a 3-frame
                      warm-up run compiles (timed apart), then the timed run; masks compared with
                      the uncompiled run's

Masks are compared frame by frame between bare and ours (IoU per object id). Meta's `sam3`
package, where it imports, runs once (ours against its own predictor loop). Writes
OUT_DIR/gpu_bench.json and OUT_DIR/gpu_bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gpu_check import bare_official, gpu_mem, reset_mem, run_ours, stage  # noqa: E402

COUNTS = (1, 5, 20)


def bare_transformers(model, proc, video: str, prompt: str, max_frames: int, ours_dir: str, device="cuda",
                      dtype=torch.bfloat16) -> dict:
    """The loop a user writes, on `model` (objects capped and threshold set by the caller); its
    masks are compared with ours (results.jsonl in `ours_dir`) frame by frame."""
    import av

    from sam3_video.results import read_results

    reset_mem()
    t0 = time.perf_counter()
    with av.open(video) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(max_frames), c.decode(video=0))]
    session = proc.init_video_session(video=frames, inference_device=device, dtype=dtype)
    proc.add_text_prompt(session, prompt)
    outs = []
    with torch.inference_mode():
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0, max_frame_num_to_track=max_frames - 1):
            post = proc.postprocess_outputs(session, out)
            outs.append((out.frame_idx, post["object_ids"].tolist(), post["masks"].cpu()))
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    memory = gpu_mem()
    theirs = {frame: (ids, masks) for frame, ids, masks in outs}
    objects = []  # their objects on each of our frames

    def pairs():  # one frame of masks at a time
        for r in read_results(ours_dir):
            their = theirs.get(r.frame_index, ([], None))
            objects.append(len(their[0]))
            yield ([i - 1 for i in r.obj_ids.tolist()], r.masks), their  # ours count from 1

    same_ids, ious = compare(pairs())
    return {"frames": len(outs), "wall_s": round(wall, 2), "fps": round(len(outs) / wall, 2), **memory,
            "objects_per_frame_mean": round(float(np.mean(objects)), 2) if objects else 0,
            "frames_with_same_ids": same_ids, **iou_summary(ious)}


def compare(pairs) -> tuple[int, list[float]]:
    """(frames with the same ids, IoU of each same-id pair of masks) over `pairs`, one per frame:
    ((ids, masks), (other ids, other masks)), each masks indexed like its ids."""
    same, ious = 0, []
    for (ids, masks), (other_ids, other_masks) in pairs:
        same += sorted(ids) == sorted(other_ids)
        for k, obj in enumerate(ids):
            if obj in other_ids:
                a, b = np.asarray(masks[k], bool), np.asarray(other_masks[other_ids.index(obj)], bool)
                union = np.logical_or(a, b).sum()
                ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
    return same, ious


def iou_summary(ious: list[float]) -> dict:
    return {"mask_iou_mean": round(float(np.mean(ious)), 4) if ious else None,
            "mask_iou_min": round(float(np.min(ious)), 4) if ious else None}


def agreement(dir_a: str, dir_b: str) -> dict:
    """How far two runs' results agree: frames with the same ids, mean and least IoU of same-id masks."""
    from sam3_video.results import read_results

    theirs = {r.frame_index: (r.obj_ids.tolist(), r.masks) for r in read_results(dir_b)}
    frames = 0

    def pairs():  # one frame of masks at a time; a frame `dir_b` lacks counts as different
        nonlocal frames
        for r in read_results(dir_a):
            frames += 1
            if r.frame_index in theirs:
                yield (r.obj_ids.tolist(), r.masks), theirs[r.frame_index]

    same, ious = compare(pairs())
    return {"frames_with_same_ids": f"{same}/{frames}", **iou_summary(ious)}


def compiled_runs(report: dict, backend, args, outputs: list, work: str, n: int = 5) -> None:
    """Our pipeline with the image encoder compiled in each of --compile-modes (bench 4's
    torch.compile / CUDA graphs check), against the uncompiled run of `n` objects."""
    from sam3_video.backends.transformers import compile_backbone

    encoder = backend.model.detector_model.vision_encoder
    backend.model.max_num_objects = n
    backend.model.score_threshold_detection = backend.model.new_det_thresh = 0.0
    for mode in [m for m in args.compile_modes.split(",") if m]:
        torch._dynamo.reset()
        compile_backbone(backend.model, mode)
        stage(report, f"compile_warmup_{mode}", run_ours, backend, args.video, args.prompt,
              os.path.join(work, f"warm-{mode}"), 3, 0.0, [])
        run = stage(report, f"ours_compiled_{mode}_{n}", run_ours, backend, args.video, args.prompt,
                    os.path.join(work, f"compiled-{mode}"), args.max_frames, 0.0, outputs)
        if "fps" in run:
            run["vs_uncompiled"] = agreement(os.path.join(work, f"compiled-{mode}"), os.path.join(work, f"ours-{n}"))
            print("  vs uncompiled", run["vs_uncompiled"], flush=True)
        encoder._compiled_call_impl = None  # back to eager (nn.Module.compile's switch)


def table(report: dict) -> str:
    rows = ["| backend | objects | bare fps | ours fps | ours ÷ bare | ours, no prefetch | peak GB bare / ours | "
            "mask IoU mean (min) | frames with the same ids |", "|---|---|---|---|---|---|---|---|---|"]
    for n in COUNTS:
        bare, ours, plain = (report.get(f"{k}_{n}", {}) for k in ("bare", "ours", "ours_no_prefetch"))
        if "fps" in bare and "fps" in ours:
            rows.append(f"| transformers | {n} ({bare.get('objects_per_frame_mean')}) | {bare['fps']} | {ours['fps']} | "
                        f"{ours['fps'] / bare['fps']:.2f} | {plain.get('fps', '-')} | "
                        f"{bare['peak_allocated_gb']} / {ours['peak_allocated_gb']} | "
                        f"{bare['mask_iou_mean']} ({bare['mask_iou_min']}) | {bare['frames_with_same_ids']}/{bare['frames']} |")
    ob, oo = report.get("official_bare", {}), report.get("official_ours", {})
    if "fps" in ob and "fps" in oo:
        rows.append(f"| sam3 (Meta) | as detected | {ob['fps']} | {oo['fps']} | {oo['fps'] / ob['fps']:.2f} | - | "
                    f"{ob['peak_allocated_gb']} / {oo['peak_allocated_gb']} | - | - |")
    compiled = [k for k in report if k.startswith("ours_compiled_") and "fps" in report[k]]
    if compiled:
        rows += ["", "| SAM3_COMPILE | objects | fps | ÷ uncompiled ours | compile warm-up s | mask IoU vs uncompiled mean (min) | same ids |",
                 "|---|---|---|---|---|---|---|"]
        for key in compiled:
            mode, n = key[len("ours_compiled_"):].rsplit("_", 1)
            run, plain, agree = report[key], report.get(f"ours_{n}", {}), report[key].get("vs_uncompiled", {})
            ratio = f"{run['fps'] / plain['fps']:.2f}" if "fps" in plain else "-"
            rows.append(f"| {mode} | {n} | {run['fps']} | {ratio} | {report.get(f'compile_warmup_{mode}', {}).get('stage_s')} | "
                        f"{agree.get('mask_iou_mean')} ({agree.get('mask_iou_min')}) | {agree.get('frames_with_same_ids')} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=os.path.join(HERE, "..", "tests", "data", "bigbuckbunny.mp4"))
    ap.add_argument("--prompt", default="rabbit")
    ap.add_argument("--max-frames", type=int, default=100)
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--skip", default="", help="comma-separated: official, no-prefetch, compile")
    ap.add_argument("--compile-modes", default="default",
                    help="SAM3_COMPILE modes to time on 5 objects (comma-separated; reduce-overhead is CUDA graphs)")
    ap.add_argument("--smoke-cpu", action="store_true",
                    help="check the script itself on a CPU: the small model, float32, 'GPU memory' 0")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    skip = set(args.skip.split(","))
    device, dtype = ("cpu", torch.float32) if args.smoke_cpu else ("cuda", torch.bfloat16)
    if args.smoke_cpu:
        import gpu_check

        for module in (gpu_check, sys.modules[__name__]):
            module.reset_mem, module.gpu_mem = (lambda: None), (lambda: {"peak_allocated_gb": 0.0})
        torch.cuda.synchronize = lambda *a: None
        torch.cuda.get_device_name = lambda *a: "CPU (smoke test of the script)"
        torch.cuda.empty_cache = lambda: None
        skip.add("official")
    import transformers
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    from sam3_video.backends import load_backend
    from sam3_video.testmodel import make_test_model
    from sam3_video.video import probe

    info = probe(args.video)
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": transformers.__version__,
              "video": f"{os.path.basename(args.video)} {info.width}x{info.height}", "max_frames": args.max_frames}
    work = tempfile.mkdtemp(prefix="gpu-bench-")
    outputs = []
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        outputs = ["overlay"]
    except Exception as err:  # the lent machine has no imageio-ffmpeg: results.jsonl only
        report["overlay_skipped"] = f"{type(err).__name__}: {err}"
    report["ours_outputs"] = ["results.jsonl", *outputs]
    model_dir = os.path.join(work, "sam3-random")
    stage(report, "build", lambda: {"dir": make_test_model(model_dir, full_size=not args.smoke_cpu, device=device)})
    backend = load_backend(model_dir, "transformers", device, "bfloat16" if device == "cuda" else "float32")
    bare_model = Sam3VideoModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    proc = Sam3VideoProcessor.from_pretrained(model_dir)
    report["prefetch_default"] = backend.prefetch_frames
    for n in COUNTS:
        for m in (backend.model, bare_model):
            m.max_num_objects = n
            m.score_threshold_detection = m.new_det_thresh = 0.0
        ours_dir = os.path.join(work, f"ours-{n}")
        stage(report, f"ours_{n}", run_ours, backend, args.video, args.prompt, ours_dir, args.max_frames, 0.0, outputs)
        stage(report, f"bare_{n}", bare_transformers, bare_model, proc, args.video, args.prompt, args.max_frames, ours_dir,
              device, dtype)
        if "no-prefetch" not in skip:
            backend.prefetch_frames = 0
            stage(report, f"ours_no_prefetch_{n}", run_ours, backend, args.video, args.prompt,
                  os.path.join(work, f"plain-{n}"), args.max_frames, 0.0, outputs)
            backend.prefetch_frames = report["prefetch_default"]
    if "compile" not in skip:
        compiled_runs(report, backend, args, outputs, work)
    del backend, bare_model
    from sam3_video import backends

    backends._LOADED.clear()
    torch.cuda.empty_cache()
    if "official" not in skip:
        try:
            from sam3_video.backends.official import OfficialBackend

            official = OfficialBackend("facebook/sam3", "cuda", random_weights=True)
            stage(report, "official_ours", run_ours, official, args.video, args.prompt,
                  os.path.join(work, "official"), args.max_frames, None, outputs)
            stage(report, "official_bare", bare_official, official.predictor, args.video, args.prompt, args.max_frames)
        except Exception as err:  # not installed here
            report["official"] = f"{type(err).__name__}: {err}"
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    text = f"# GPU bench: {report['gpu']}, {report['video']}, {args.max_frames} frames\n\n" + table(report)
    with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
