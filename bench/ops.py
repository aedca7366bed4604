"""Torch ops and host-device syncs per propagated frame, by stage, with 1, 4 and 16 objects tracked.

On a GPU each op is a kernel launch from Python and each sync a stall of the host: the overhead
that keeps a 1008 px SAM3 frame far above its few milliseconds of arithmetic. Neither needs a GPU
to count: this runs the engine (`TransformersSession`, the CLI's and the app's path) on the CPU
with the full-depth narrow SAM3 (`make_test_model(full_depth=True, score_spread=False)`: the real
layer counts, ViT 32 / DETR 6+6 with 200 queries / memory attention 4, at the small model's widths,
so the same ops as the real model per frame), and counts with `sam3_video.opcount.OpCounter`
(a TorchDispatchMode; its docstring says what counts as a sync and why).

Objects are forced: detect on frame 0 of carphone (the random scores find nothing), then N objects
added by box (`add_object`, a grid of boxes; the tracker's object-score bias is set to +5 so that it
says "object" for them and their masks are not empty, as a trained tracker's are), then `--warm` frames propagated uncounted and
`--frames` frames counted; the figures are per frame (a frame's hand-off included).

Stages (innermost wins; each is what runs inside the named functions):
  frames     _LazyFrames.__getitem__: decode + preprocess of the frame
  encoder    the detector's image encoder + the tracker's neck
  detector   run_detection and the merge of its prompts (its mask NMS counts as clean-up)
  tracker    run_tracker_propagation: the tracker's pass over the objects (hole filling: clean-up)
  memory     _tracker_update_memories: the memory encoder over the objects
  clean-up   nms_masks, fill_holes_in_mask_scores (mask NMS, hole filling, sprinkle removal)
  planning   the rest of Sam3VideoModel.forward (association, hot-start rules, outputs)
  session    the rest of TransformersSession._step (our bookkeeping)
  hand-off   TransformersSession._to_result (postprocess_outputs, masks to the host)

    python bench/ops.py --label before          # adds a column set to bench/results/ops-cpu.json/.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
FULL_DEPTH = "full-depth narrow SAM3 (make_test_model(seed=1, full_depth=True, score_spread=False)), phrase 'person'"
SMALL = "small random SAM3 (make_test_model()), which detects"
STAGES = ("frames", "encoder", "detector", "tracker", "memory", "clean-up", "planning", "session", "hand-off")
RESULTS = os.path.join(REPO, "bench", "results", "ops-cpu")


def full_depth_model() -> str:
    """The full-depth narrow SAM3 in bench/.cache/, rebuilt whenever testmodel.py changes."""
    import hashlib

    from sam3_video import testmodel

    with open(testmodel.__file__, "rb") as f:
        version = hashlib.sha1(f.read()).hexdigest()[:10]
    model = os.path.join(REPO, "bench", ".cache", f"full-depth-{version}")
    if not os.path.isfile(os.path.join(model, "config.json")):
        testmodel.make_test_model(model, seed=1, full_depth=True, score_spread=False)
    return model


def grid_boxes(n: int, width: int, height: int) -> list[tuple[float, float, float, float]]:
    """n boxes (x0, y0, x1, y1) on a grid over the frame, each a cell shrunk by a quarter."""
    if n <= 0:
        return []
    cols = int(n ** 0.5 + 0.999)
    rows = (n + cols - 1) // cols
    w, h = width / cols, height / rows
    return [((c + 0.125) * w, (r + 0.125) * h, (c + 0.875) * w, (r + 0.875) * h)
            for r in range(rows) for c in range(cols)][:n]


def stage_all(counter, backend) -> None:
    """Attribute ops to STAGES by wrapping the functions that run each."""
    from transformers.models.sam3_video import modeling_sam3_video as m

    from sam3_video.backends import postprocess
    from sam3_video.backends import transformers as tb

    model = backend.model
    counter.wrap(tb._LazyFrames, "__getitem__", "frames")
    counter.wrap(model.detector_model, "get_vision_features", "encoder")
    counter.wrap(model, "get_vision_features_for_tracker", "encoder")
    for attr in ("run_detection", "_merge_detections_from_prompts"):
        counter.wrap(model, attr, "detector")
    for attr in ("run_tracker_propagation", "_tracker_add_new_objects"):
        counter.wrap(model, attr, "tracker")
    counter.wrap(model, "_tracker_update_memories", "memory")
    for attr in ("nms_masks", "fill_holes_in_mask_scores"):
        counter.wrap(m, attr, "clean-up")
    for attr in ("__init__", "run") if hasattr(postprocess, "NmsRounds") else ():  # the detector's own NMS
        counter.wrap(postprocess.NmsRounds, attr, "clean-up")                      # (frame_reads)
    counter.wrap(model, "forward", "planning")
    counter.wrap(tb.TransformersSession, "_step", "session")
    counter.wrap(tb.TransformersSession, "_to_result", "hand-off")


def count(backend, video: str, objects: int, warm: int, frames: int, where: bool = False,
          phrases: tuple[str, ...] = ("person",)) -> dict:
    """Ops and syncs per frame by stage with `objects` objects added by box on frame 0 (after
    detecting `phrases` there)."""
    import torch

    from sam3_video.opcount import OpCounter
    from sam3_video.video import probe

    info = probe(video)
    session = backend.open(video, info)
    try:
        first = session.detect(0, list(phrases))
        for box in grid_boxes(objects, info.width, info.height):
            session.add_object(0, "thing", box=box)
        list(session.propagate(range(0, 1 + warm), reverse=False))
        indices = list(range(1 + warm, 1 + warm + frames))
        with torch.inference_mode(), OpCounter(where=where) as counter:
            stage_all(counter, backend)
            results = list(session.propagate(indices, reverse=False))
    finally:
        session.close()
    tracked = [len(r) for r in results]
    n = len(results)
    return {
        "objects": objects, "phrases": list(phrases), "detected_on_frame_0": len(first), "tracked_per_frame": tracked,
        "ops": {s: counter.ops.get(s, 0) / n for s in STAGES if counter.ops.get(s)},
        "ops_total": sum(counter.ops.values()) / n,
        "syncs": {s: counter.syncs.get(s, 0) / n for s in STAGES if counter.syncs.get(s)},
        "syncs_total": sum(counter.syncs.values()) / n,
        "sync_sites": {f"{stage}: {kind}": c / n for (stage, kind), c in sorted(counter.sync_sites.items())},
        "sync_lines": {f"{kind} at {line}": c / n for (kind, line), c in sorted(counter.sync_lines.items())},
    }


def machine() -> str:
    import torch

    return (f"CPU dev machine ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def render(data: dict) -> str:
    """The markdown results file from every label measured so far."""
    lines = ["# Ops and syncs per frame by stage (CPU count)", "",
             "Written by `bench/ops.py` (the method is in its docstring), on carphone: phrases detected on",
             "frame 0, then objects added by box there; figures are per propagated frame, averaged over the",
             "counted frames. Counts, not timings: they do not depend on the machine, but each run names it.", ""]
    for label, run in data.items():
        lines += [f"## {label}", "", f"{run['date']}, {run['machine']}; model: {run.get('model', FULL_DEPTH)}; "
                  f"{run['note']}".rstrip("; "), ""]
        lines += ["| objects added | tracked | " + " | ".join(STAGES) + " | ops total | syncs |",
                  "|---:|---:|" + "---:|" * (len(STAGES) + 2)]
        for r in run["runs"]:
            cells = [f"{r['ops'].get(s, 0):.0f}" for s in STAGES]
            tracked = sum(r["tracked_per_frame"]) / max(1, len(r["tracked_per_frame"]))
            lines.append(f"| {r['objects']} | {tracked:g} | " + " | ".join(cells) + f" | {r['ops_total']:.0f} | {r['syncs_total']:.1f} |")
        one = next((r for r in run["runs"] if r["objects"] == 1), None)
        if one:
            for r in run["runs"]:
                if r["objects"] > 1:
                    per = (r["ops"].get("tracker", 0) + r["ops"].get("memory", 0) - one["ops"].get("tracker", 0)
                           - one["ops"].get("memory", 0)) / (r["objects"] - 1)
                    lines.append(f"\n{r['objects']} objects: {r['ops_total'] / one['ops_total']:.2f}x the ops of 1 "
                                 f"object; tracker + memory {per:.0f} ops per extra object.")
        lines += ["", "Syncs per frame by site (stage: kind), at the largest object count:", ""]
        last = run["runs"][-1]
        lines += [f"- {site}: {c:g}" for site, c in last["sync_sites"].items()] or ["- none"]
        if last.get("sync_lines"):
            lines += ["", "By source line:", ""] + [f"- {site}: {c:g}" for site, c in last["sync_lines"].items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--label", required=True, help="name of this measurement (e.g. before, batched tracker)")
    p.add_argument("--note", default="", help="one line on what the code was")
    p.add_argument("--model", default=None, help="model folder (default: the full-depth one in bench/.cache/)")
    p.add_argument("--small", action="store_true", help="the small random SAM3 (bench/engine.py), which detects")
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--warm", type=int, default=3)
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--where", action="store_true", help="also list the source line of each sync")
    p.add_argument("--phrases", nargs="+", default=["person"],
                   help="detected on frame 0 (the small model, unlike the full-depth one, finds objects)")
    p.add_argument("--no-bias", action="store_true", help="leave the tracker's object-score bias as it is")
    p.add_argument("--out", default=RESULTS, help="results path without extension (.json and .md are written)")
    args = p.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from sam3_video.backends import load_backend

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if args.small:
        from engine import small_model

        args.model = small_model()
    model = args.model or full_depth_model()
    backend = load_backend(model, backend="transformers", device="cpu")
    backend.device = torch.device("cpu")  # a device object: `.to(device)` is then no host copy (opcount)
    if not args.no_bias:
        with torch.no_grad():  # the tracker says "object" for the added boxes, as a trained one would
            backend.model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(5.0)
    video = os.path.join(REPO, "tests", "data", "carphone_pristine.mp4")
    runs = []
    for n in args.objects:
        runs.append(count(backend, video, n, args.warm, args.frames, args.where, tuple(args.phrases)))
        r = runs[-1]
        print(f"{n} objects: {r['ops_total']:.0f} ops, {r['syncs_total']:.1f} syncs per frame; tracked {r['tracked_per_frame']}",
              flush=True)
    data = {}
    if os.path.isfile(args.out + ".json"):
        with open(args.out + ".json") as f:
            data = json.load(f)
    described = SMALL if args.small else FULL_DEPTH if not args.model else args.model
    if args.small or args.phrases != ["person"]:
        described = f"{described.split(', phrase')[0]}, phrases {', '.join(repr(p) for p in args.phrases)}"
    data[args.label] = {"date": datetime.date.today().isoformat(), "machine": machine(), "note": args.note,
                        "model": described, "runs": runs}
    with open(args.out + ".json", "w") as f:
        json.dump(data, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(render(data))
    print(f"wrote {args.out}.md")


if __name__ == "__main__":
    main()
