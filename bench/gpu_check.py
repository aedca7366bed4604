"""GPU check of both backends on a full-size, randomly initialised SAM3 (no gated weights needed).

Run on a CUDA machine from a checkout (the lent device runs `bench/gpu_check.sh`):

    python bench/gpu_check.py --video tests/data/bigbuckbunny.mp4 --out OUT_DIR

For each backend it builds the real architecture with random weights, loads it through the same
code as the real model, runs detect + forward propagation through `sam3_video.pipeline.run`, and
times the library's own loop on the same weights and clip for comparison. It writes
OUT_DIR/gpu_check.json. Random weights make the masks meaningless: what is measured is speed,
memory, frame coverage and that the adapters run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

from sam3_video.types import RunOptions  # noqa: E402

THRESHOLDS = (None, 0.3, 0.1, 0.02)  # random weights: lower the cut until something is detected


def gpu_mem() -> dict:
    return {"peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def reset_mem() -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def pick_threshold(backend, video, prompt, frame) -> float | None:
    from sam3_video.session import VideoSession

    with VideoSession(video, backend) as s:
        for t in THRESHOLDS:
            if len(s.detect(frame, prompt, t)):
                return t
    return THRESHOLDS[-1]


def run_ours(backend, video, prompt, out_dir, max_frames, threshold, outputs) -> dict:
    from sam3_video.pipeline import run
    from sam3_video.results import read_results

    reset_mem()
    t0 = time.perf_counter()
    opts = RunOptions.of(prompts=(prompt,), start_frame=0, direction="forward", max_frames=max_frames, threshold=threshold)
    summary = run(video, opts, out_dir, backend=backend, outputs=outputs)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    frames = [r.frame_index for r in read_results(out_dir)]
    files = {}
    if outputs:
        from sam3_video.video import probe

        overlay = os.path.join(out_dir, "overlay.mp4")
        files = {"outputs": outputs, "overlay_frames": probe(overlay).num_frames if os.path.exists(overlay) else None,
                 "annotations_zip_mb": round(os.path.getsize(os.path.join(out_dir, "annotations.zip")) / 2**20, 1)
                 if os.path.exists(os.path.join(out_dir, "annotations.zip")) else None}
    return {**files,
        "frames": summary.frames_done, "expected": summary.frames_expected, "status": summary.status,
        "covered_exactly": frames == list(range(summary.frames_expected)),
        "objects_per_label": summary.objects_per_label, "wall_s": round(wall, 2),
        "fps": round(summary.frames_done / wall, 2), "threshold": threshold, **gpu_mem(),
    }


def bare_transformers(model_dir, video, prompt, max_frames, threshold) -> dict:
    """What a user would write with transformers: decode everything, one session, iterate."""
    import av
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    reset_mem()
    t0 = time.perf_counter()
    model = Sam3VideoModel.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    proc = Sam3VideoProcessor.from_pretrained(model_dir)
    t_load = time.perf_counter() - t0
    if threshold is not None:
        model.score_threshold_detection = min(model.score_threshold_detection, threshold)
        model.new_det_thresh = threshold
    t0 = time.perf_counter()
    with av.open(video) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(max_frames), c.decode(video=0))]
    session = proc.init_video_session(video=frames, inference_device="cuda", dtype=torch.bfloat16)
    proc.add_text_prompt(session, prompt)
    n = 0
    for out in model.propagate_in_video_iterator(session, start_frame_idx=0, max_frame_num_to_track=max_frames - 1):
        proc.postprocess_outputs(session, out)["masks"].cpu()
        n += 1
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    del model, session
    return {"frames": n, "wall_s": round(wall, 2), "fps": round(n / wall, 2), "load_s": round(t_load, 1), **gpu_mem()}


def bare_official(predictor, video, prompt, max_frames) -> dict:
    """Meta's own loop: start_session on the mp4, add_prompt, propagate forward."""
    reset_mem()
    t0 = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        sid = predictor.handle_request({"type": "start_session", "resource_path": video})["session_id"]
        predictor.handle_request({"type": "add_prompt", "session_id": sid, "frame_index": 0, "text": prompt})
        n = 0
        for item in predictor.handle_stream_request({"type": "propagate_in_video", "session_id": sid,
                                                     "propagation_direction": "forward", "start_frame_index": 0,
                                                     "max_frame_num_to_track": max_frames - 1}):
            n += 1
        predictor.handle_request({"type": "close_session", "session_id": sid})
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"frames": n, "wall_s": round(wall, 2), "fps": round(n / wall, 2), **gpu_mem()}


def two_phrases_both_ways(backend, video, prompts, start, max_frames, threshold, max_objects) -> dict:
    """Several phrases, both directions, objects forced through a low threshold and a cap."""
    from sam3_video.session import VideoSession
    from sam3_video.types import frame_order

    backend.model.max_num_objects = max_objects
    reset_mem()
    t0 = time.perf_counter()
    with VideoSession(video, backend) as s:
        preview = s.detect(start, prompts, threshold)
        removed = int(preview.obj_ids[0]) if len(preview) else None
        if removed is not None:  # a false positive removed before propagating must stay removed
            s.remove_object(removed)
        results = list(s.propagate("both", max_frames=max_frames))
        expected = frame_order(s.info.num_frames, start, "both", max_frames)
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    label_of, stable = {}, True
    for r in results:
        for i, label in zip(r.obj_ids.tolist(), r.labels):
            stable &= label_of.setdefault(i, label) == label
    return {
        "preview_objects": len(preview), "preview_labels": sorted(set(preview.labels)),
        "frames": len(results), "order_as_expected": [r.frame_index for r in results] == expected,
        "objects_per_frame": [len(r) for r in results], "labels": sorted(set(label_of.values())),
        "ids": sorted(label_of), "id_keeps_label": stable, "removed_id": removed,
        "removed_stays_removed": removed is None or all(removed not in r.obj_ids.tolist() for r in results),
        "mask_shape_ok": all(r.masks.shape[1:] == s.info.size for r in results),
        "wall_s": round(wall, 2), "fps": round(len(results) / wall, 2), **gpu_mem(),
    }


def edits_on_gpu(backend, video, prompt, threshold) -> dict:
    """Clicks, a box and an example box on the detect frame, then 20 frames: runs on CUDA in bf16?"""
    from sam3_video.session import VideoSession

    reset_mem()
    t0 = time.perf_counter()
    with VideoSession(video, backend) as s:
        preview = s.detect(0, prompt, threshold)
        h, w = s.info.size
        out = {"detected": preview.obj_ids.tolist()}
        if len(preview):
            target = int(preview.obj_ids[0])
            before = preview.masks[0].copy()
            after = s.refine(0, target, [(w * 0.5, h * 0.5)], [1])
            out["refined_mask_changed"] = bool((after.masks[after.obj_ids.tolist().index(target)] != before).any()) \
                if target in after.obj_ids.tolist() else "object gone"
        new_id, r = s.add_object(0, "box object", box=(w * 0.1, h * 0.1, w * 0.4, h * 0.5))
        out["added_id"], out["added_present"] = new_id, new_id in r.obj_ids.tolist()
        r = s.exemplar(0, (w * 0.6, h * 0.2, w * 0.9, h * 0.8))
        out["after_exemplar"] = r.obj_ids.tolist()
        results = list(s.propagate("forward", max_frames=20))
        out["frames"] = [x.frame_index for x in results] == list(range(20))
        out["added_on_frames"] = sum(new_id in x.obj_ids.tolist() for x in results)
    torch.cuda.synchronize()
    return {**out, "wall_s": round(time.perf_counter() - t0, 2), **gpu_mem()}


def continue_on_gpu(backend, video, prompt, threshold, work) -> dict:
    """A 20-frame run, then frame 10 corrected (a click) and continued for 10 frames: on CUDA?"""
    from sam3_video.pipeline import run
    from sam3_video.results import read_results
    from sam3_video.types import Edit, RunOptions

    reset_mem()
    t0 = time.perf_counter()
    first, second = os.path.join(work, "continue-1"), os.path.join(work, "continue-2")
    run(video, RunOptions.of((prompt,), 0, "forward", 20, threshold), first, backend, outputs=[])
    earlier = {r.frame_index: r for r in read_results(first)}
    seed = earlier[10]
    h, w = seed.size
    edits = (Edit("refine", int(seed.obj_ids[0]), ((w * 0.5, h * 0.5),), (1,)),) if len(seed) else ()
    summary = run(video, RunOptions.of((prompt,), 10, "forward", 10, threshold, edits=edits, continue_from=first),
                  second, backend, outputs=[])
    after = {r.frame_index: r for r in read_results(second)}
    torch.cuda.synchronize()
    return {"status": summary.status, "frames": sorted(after) == list(range(20)), "seed_ids": seed.obj_ids.tolist(),
            "kept_equal": all((after[i].masks == earlier[i].masks).all() for i in range(10)),
            "ids_on_11": after[11].obj_ids.tolist(), "wall_s": round(time.perf_counter() - t0, 2), **gpu_mem()}


def stage(report: dict, name: str, fn, *args):
    t0 = time.perf_counter()
    try:
        report[name] = fn(*args)
    except Exception as err:
        report[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
    report[name]["stage_s"] = round(time.perf_counter() - t0, 1)
    print(name, json.dumps({k: v for k, v in report[name].items() if k != "traceback"}), flush=True)
    return report[name]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bigbuckbunny.mp4"))
    ap.add_argument("--prompt", default="rabbit")
    ap.add_argument("--max-frames", type=int, default=132)
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--prompts2", default="rabbit, tree", help="phrases of the several-phrase check")
    ap.add_argument("--skip", default="", help="comma-separated: transformers,official,official-bare,bare")
    ap.add_argument("--outputs", default="all", help="what our runs write besides results.jsonl ('' for the engine alone)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import transformers

    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "transformers": transformers.__version__,
              "video": os.path.basename(args.video), "max_frames": args.max_frames, "prompt": args.prompt}
    from sam3_video.video import probe

    report["video_info"] = {k: v for k, v in vars(probe(args.video)).items() if k != "timestamps"}
    work = tempfile.mkdtemp(prefix="gpu-check-")
    skip = set(args.skip.split(","))
    outputs = [args.outputs] if args.outputs else []
    try:  # drawing and encoding need OpenCV and imageio-ffmpeg's binary on the machine
        import cv2  # noqa: F401
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as err:
        report["outputs_skipped"] = f"{type(err).__name__}: {err}"
        outputs = []

    if "transformers" not in skip:
        from sam3_video.backends import load_backend
        from sam3_video.testmodel import make_test_model

        model_dir = os.path.join(work, "sam3-random")
        stage(report, "build_full_random_model", lambda: {"dir": make_test_model(model_dir, full_size=True, device="cuda")})
        state = {}

        def load():
            reset_mem()
            state["b"] = load_backend(model_dir, "transformers", "cuda", "bfloat16")
            return {"params_m": round(sum(p.numel() for p in state["b"].model.parameters()) / 1e6, 1), **gpu_mem()}

        stage(report, "transformers_load", load)
        if "b" in state:
            th = pick_threshold(state["b"], args.video, args.prompt, 0)
            stage(report, "transformers_ours", run_ours, state["b"], args.video, args.prompt,
                  os.path.join(work, "out-tf"), args.max_frames, th, outputs)
            if outputs:
                stage(report, "transformers_ours_engine_only", run_ours, state["b"], args.video, args.prompt,
                      os.path.join(work, "out-tf-engine"), args.max_frames, th, [])
            stage(report, "transformers_edits", edits_on_gpu, state["b"], args.video, args.prompt, th)
            stage(report, "transformers_continue", continue_on_gpu, state["b"], args.video, args.prompt, th, work)
            state["b"].model.cpu()
            del state["b"]
            from sam3_video import backends

            backends._LOADED.clear()
            torch.cuda.empty_cache()
            if "bare" not in skip:
                stage(report, "transformers_bare", bare_transformers, model_dir, args.video, args.prompt,
                      args.max_frames, th)

    if "official" not in skip:
        from sam3_video.backends.official import OfficialBackend

        state = {}

        def load_official():
            reset_mem()
            state["b"] = OfficialBackend("facebook/sam3", "cuda", random_weights=True)
            return {"params_m": round(sum(p.numel() for p in state["b"].model.parameters()) / 1e6, 1), **gpu_mem()}

        stage(report, "official_load", load_official)
        if "b" in state and "official-bare" not in skip:
            th = pick_threshold(state["b"], args.video, args.prompt, 0)
            stage(report, "official_ours", run_ours, state["b"], args.video, args.prompt,
                  os.path.join(work, "out-official"), args.max_frames, th, outputs)
            stage(report, "official_bare", bare_official, state["b"].predictor, args.video, args.prompt, args.max_frames)
        if "b" in state:
            stage(report, "official_two_phrases_both", two_phrases_both_ways, state["b"], args.video,
                  args.prompts2, 60, 20, 0.0, 5)

    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=2, default=str)
    print("wrote", os.path.join(args.out, "gpu_check.json"))


if __name__ == "__main__":
    main()
