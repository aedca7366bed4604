"""End to end on the CPU: our pipeline against the loop a user would write with transformers.

Same small SAM3 (bench/.cache), same clip, same prompt, same model thresholds; each run in a
process of its own (peak RSS is per run), model loading excluded from the wall time:

  bare     what transformers' docs show, plus drawing and writing: decode every frame with
           PyAV into a list, one Sam3VideoProcessor session on it, the text prompt,
           `propagate_in_video_iterator`, `postprocess_outputs`, masks blended and outlined with
           cv2, frames written with imageio (libx264)
  overlay  `sam3_video.pipeline.run(..., outputs=["overlay"])`: the same product (an overlay video),
           plus results.jsonl
  all      the same run with every output (overlay, COCO, YouTube-VIS, MOT, MOTS, labelme, DAVIS)

The masks of `bare` and `overlay` are compared frame by frame (pixel counts per frame), so the
ratio compares equal work. Ratio = ours wall / bare wall; the issue's target is < 1.

    python bench/end_to_end.py                          # bikes.mp4, 250 frames; writes bench/results/end-to-end-cpu.md
    python bench/end_to_end.py --max-frames 40 --out /tmp/quick.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import child_result, emit, machine, save_report, small_model  # noqa: E402

PROMPT = "car, light"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare(model_dir: str, clip: str, out_dir: str, max_frames: int | None) -> dict:
    import av
    import cv2
    import imageio.v2 as imageio
    import numpy as np
    import torch
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    model = Sam3VideoModel.from_pretrained(model_dir).eval()
    proc = Sam3VideoProcessor.from_pretrained(model_dir)
    t0 = time.perf_counter()
    with av.open(clip) as container:
        fps = float(container.streams.video[0].average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frames = frames[:max_frames] if max_frames else frames
    session = proc.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    proc.add_text_prompt(session, [p.strip() for p in PROMPT.split(",")])
    writer = imageio.get_writer(os.path.join(out_dir, "bare.mp4"), fps=fps, codec="libx264", quality=8,
                                macro_block_size=1)
    areas = []
    colors = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180)]
    with torch.inference_mode():
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0,
                                                     max_frame_num_to_track=len(frames) - 1):
            post = proc.postprocess_outputs(session, out)
            masks = post["masks"].cpu().numpy().astype(bool)
            ids = post["object_ids"].tolist()
            image = frames[out.frame_idx].copy()
            for k, mask in enumerate(masks):
                color = colors[ids[k] % len(colors)]
                tint = image.copy()
                tint[mask] = color
                image = cv2.addWeighted(tint, 0.45, image, 0.55, 0)
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(image, contours, -1, color, 2)
            writer.append_data(image)
            areas.append((out.frame_idx, sorted(int(m.sum()) for m in masks)))
    writer.close()
    wall = time.perf_counter() - t0
    return {"frames": len(areas), "wall_s": wall, "areas": areas}


def ours(model_dir: str, clip: str, out_dir: str, max_frames: int | None, outputs: list[str]) -> dict:
    from sam3_video.backends import load_backend
    from sam3_video.pipeline import run
    from sam3_video.results import read_results
    from sam3_video.types import RunOptions

    backend = load_backend(model_dir, "transformers", "cpu", "float32")
    t0 = time.perf_counter()
    summary = run(clip, RunOptions.of((PROMPT,), 0, "forward", max_frames), out_dir, backend=backend, outputs=outputs)
    wall = time.perf_counter() - t0
    areas = [(r.frame_index, sorted(int(m.sum()) for m in r.masks)) for r in read_results(out_dir)]
    return {"frames": summary.frames_done, "wall_s": wall, "areas": areas}


def child(kind: str, model_dir: str, clip: str, max_frames: int | None) -> None:
    import torch

    with tempfile.TemporaryDirectory() as out_dir:
        if kind == "bare":
            row = bare(model_dir, clip, out_dir, max_frames)
        else:
            row = ours(model_dir, clip, out_dir, max_frames, ["overlay"] if kind == "overlay" else ["all"])
    row.update(kind=kind, peak_rss_mib=peak_rss_mib(), threads=torch.get_num_threads())
    emit(row)


def run_child(kind: str, model_dir: str, clip: str, max_frames: int | None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, "--model", model_dir, "--clip", clip]
    return child_result(cmd + (["--max-frames", str(max_frames)] if max_frames else []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=os.path.join(REPO, "tests", "data", "bikes.mp4"))
    p.add_argument("--model", default=None, help="model folder (default: the small one in bench/.cache/)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2, help="runs of each kind, alternating; the best counts")
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "end-to-end-cpu.md"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    model_dir = args.model or small_model()
    if args.child:
        child(args.child, model_dir, args.clip, args.max_frames)
        return
    runs: dict[str, list[dict]] = {"bare": [], "overlay": [], "all": []}
    for _ in range(args.repeats):
        for kind in runs:
            runs[kind].append(run_child(kind, model_dir, args.clip, args.max_frames))
            print(kind, f"{runs[kind][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    best = {kind: min(rows, key=lambda r: r["wall_s"]) for kind, rows in runs.items()}
    same = best["bare"]["areas"] == best["overlay"]["areas"]
    base = best["bare"]["wall_s"]
    lines = [f"# End to end (CPU), {datetime.date.today().isoformat()}", "",
             f"- machine: {machine()}; torch threads: {best['bare']['threads']}",
             f"- clip: {os.path.basename(args.clip)}, {best['bare']['frames']} frames, prompt '{PROMPT}', "
             f"small random SAM3 ({os.path.basename(model_dir)}); best of {args.repeats} runs each, model loading "
             "excluded; command: `python bench/end_to_end.py`",
             f"- masks of bare and ours, frame by frame: {'identical pixel counts' if same else 'DIFFERENT'}", "",
             "| run | wall s | frames/s | ÷ bare | peak RSS MiB | every run's wall s |", "|---|---|---|---|---|---|"]
    for kind, row in best.items():
        every = ", ".join(f"{r['wall_s']:.1f}" for r in runs[kind])
        lines.append(f"| {kind} | {row['wall_s']:.1f} | {row['frames'] / row['wall_s']:.2f} | "
                     f"{row['wall_s'] / base:.2f} | {row['peak_rss_mib']:.0f} | {every} |")
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
