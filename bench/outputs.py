"""Outputs benchmark: the non-model work of a run (decode, draw, encode, export) against bare ffmpeg.

On bikes.mp4 (640x272, 250 frames; --clip for another), in one process and one run:
  baseline   the bundled ffmpeg (imageio-ffmpeg's binary) decoding the clip and encoding it with
             the same x264 settings as our overlay (libx264 veryfast crf 20, yuv420p, +faststart)
  ours       what `pipeline.run` does after the model, on the small SAM3's real results for the
             clip ("car, light", computed once and cached in bench/.cache/): decode each frame
             (VideoReader), then the overlay (draw + H.264 encode + mux) and every annotation
             format, exactly through the pipeline's sinks
Stage times (each stage alone, sequentially) and the combined wall time are reported; the ratio
is combined wall / baseline wall, best of --repeats. Reading the cached results back (RLE
decode) is not pipeline work and is timed apart and subtracted.

    python bench/outputs.py                      # writes bench/results/outputs-cpu.md
    python bench/outputs.py --clip bigbuckbunny.mp4 --prompt "rabbit, tree" \
        --out bench/results/outputs-cpu-720p.md     # the same at 1280x720
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from engine import machine, save_report, small_model, wait_quiet  # noqa: E402

PROMPT = "car, light"  # --prompt; the phrases of the cached results and of the exports' categories


def cached_results(clip: str, prompt: str) -> str:
    """Folder with results.jsonl + run.json of the small SAM3 on `clip` (made once)."""
    from sam3_video.pipeline import run
    from sam3_video.types import RunOptions

    model = small_model()
    name = os.path.basename(clip) if prompt == PROMPT else f"{os.path.basename(clip)}-{prompt.replace(' ', '')}"
    folder = os.path.join(REPO, "bench", ".cache", f"results-{os.path.basename(model)}-{name}")
    if not os.path.isfile(os.path.join(folder, "run.json")):
        from sam3_video.backends import load_backend

        print("computing the small model's results once (minutes on a CPU) ...", file=sys.stderr, flush=True)
        run(clip, RunOptions.of((prompt,)), folder, backend=load_backend(model, "transformers", "cpu", "float32"),
            outputs=())
    return folder


def bare_ffmpeg(clip: str, out: str) -> float:
    import imageio_ffmpeg

    t0 = time.perf_counter()
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", clip, "-an", "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart", out],
                   check=True)
    return time.perf_counter() - t0


def feed(sinks, frames) -> None:
    """What pipeline.run does with each frame after the model: every sink writes it; then close."""
    for frame in frames:
        for sink in sinks:
            sink.write(frame)
    for sink in sinks:
        sink.close()


def ours(clip: str, prompt: str, records: list, out: str, stages: bool, read_s: float) -> dict[str, float]:
    """Seconds per stage (stages=True: each alone) or of the combined pass (stages=False), less
    `read_s`, the time one pass of turning `records` back into FrameResults takes."""
    from sam3_video.export import FORMATS, Annotations, Categories, ExportContext
    from sam3_video.overlay import OverlayWriter
    from sam3_video.render import render
    from sam3_video.results import EncodedFrame, ResultsWriter, frame_from_json
    from sam3_video.video import VideoReader, probe
    from sam3_video.video_out import H264Writer, mux_video

    info = probe(clip)
    h, w = info.size

    def results():
        return (frame_from_json(rec, h, w) for rec in records)

    t: dict[str, float] = {}
    with VideoReader(clip, info) as reader:
        if stages:
            t0 = time.perf_counter()
            frames = [reader[i] for i in range(len(records))]
            t["decode"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            drawn = [render(f, r) for f, r in zip(frames, results())]
            t["render"] = time.perf_counter() - t0 - read_s
            t0 = time.perf_counter()
            part = os.path.join(out, "part.mp4")
            with H264Writer(part, info.width, info.height, info.fps, faststart=False) as writer:  # as the pipeline
                for d in drawn:
                    writer.write(d)
            mux_video([part], os.path.join(out, "overlay.mp4"))
            t["encode"] = time.perf_counter() - t0
            del drawn
            t0 = time.perf_counter()
            sinks = [ResultsWriter(out), Annotations(out, ["all"], ExportContext(info, Categories([prompt])))]
            feed(sinks, (EncodedFrame(r, lambda f=f: f) for f, r in zip(frames, results())))
            t["export"] = time.perf_counter() - t0 - read_s
            # each format alone (what formats share is precomputed and timed as "shared": RLE, areas,
            # boxes, the id image, the frame's JPEG)
            t0 = time.perf_counter()
            encoded = [EncodedFrame(r, lambda f=f: f) for f, r in zip(frames, results())]
            for e in encoded:
                e.rles, e.areas, e.boxes, e.id_image, e.overlaps, e.jpeg
            t["shared"] = time.perf_counter() - t0 - read_s
            for name in FORMATS:
                folder = os.path.join(out, name)
                os.makedirs(folder)
                t0 = time.perf_counter()
                feed([FORMATS[name](folder, ExportContext(info, Categories([prompt])))], encoded)
                t[name] = time.perf_counter() - t0
            return t
        for name, formats in (("combined", ["all"]), ("overlay only", [])):
            folder = os.path.join(out, name.replace(" ", "-"))
            os.makedirs(folder)
            t0 = time.perf_counter()
            sinks = [ResultsWriter(folder), OverlayWriter(folder, info, 0, reader.__getitem__)]
            if formats:
                sinks.append(Annotations(folder, formats, ExportContext(info, Categories([prompt]))))
            feed(sinks, (EncodedFrame(r, lambda i=r.frame_index: reader[i]) for r in results()))
            t[name] = time.perf_counter() - t0 - read_s
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default=os.path.join(REPO, "tests", "data"))
    p.add_argument("--clip", default="bikes.mp4", help="a clip of --media")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "outputs-cpu.md"))
    p.add_argument("--wait-quiet", type=float, default=600)
    args = p.parse_args()
    import json

    from sam3_video.results import frame_from_json
    from sam3_video.video import probe

    clip = os.path.join(args.media, args.clip)
    folder = cached_results(clip, args.prompt)
    with open(os.path.join(folder, "results.jsonl"), encoding="utf-8") as f:
        records = sorted((json.loads(line) for line in f), key=lambda rec: rec["frame_index"])
    info = probe(clip)
    h, w = info.size
    t0 = time.perf_counter()
    for rec in records:
        frame_from_json(rec, h, w)
    read_s = time.perf_counter() - t0
    n, objects = len(records), sum(len(rec["objects"]) for rec in records)
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        wait_quiet(args.wait_quiet)
        with tempfile.TemporaryDirectory() as tmp:
            timings = {"bare": bare_ffmpeg(clip, os.path.join(tmp, "bare.mp4"))}
            with tempfile.TemporaryDirectory() as o1:
                timings.update(ours(clip, args.prompt, records, o1, True, read_s))
            with tempfile.TemporaryDirectory() as o2:
                timings.update(ours(clip, args.prompt, records, o2, False, read_s))
        print({k: round(v, 3) for k, v in timings.items()}, file=sys.stderr, flush=True)
        best = {k: min(v, best.get(k, v)) for k, v in timings.items()}
    ms = {k: 1000 * v / n for k, v in best.items()}
    ratio = best["combined"] / best["bare"]
    from sam3_video.export import FORMATS
    lines = [
        f"# Outputs benchmark (CPU), {datetime.date.today().isoformat()}", "",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- clip: {args.clip}, {w}x{h}, {n} frames; results of the small random SAM3 for \"{args.prompt}\": "
        f"{objects} object masks in all ({objects / n:.1f} a frame)",
        f"- command: `python bench/outputs.py {shlex.join(sys.argv[1:])}`; best of {args.repeats}", "",
        "| | ms per frame |", "|---|---|",
        f"| bare ffmpeg decode + libx264 encode (baseline) | {ms['bare']:.2f} |",
        f"| decode (VideoReader, PyAV) | {ms['decode']:.2f} |",
        f"| render (masks, outlines, boxes, labels) | {ms['render']:.2f} |",
        f"| encode + mux (H264Writer, mux_video) | {ms['encode']:.2f} |",
        f"| export: results.jsonl + {', '.join(FORMATS)} (every format), manifest, zip | {ms['export']:.2f} |",
        f"| **ours combined** (the pipeline's sinks, one pass, encode overlapping in ffmpeg) | **{ms['combined']:.2f}** |",
        f"| ours, overlay + results.jsonl only (`--outputs overlay`) | {ms['overlay only']:.2f} |",
        "",
        f"Ratio ours combined / bare ffmpeg: **{ratio:.2f}** (target <= 1.5); overlay + results.jsonl only: "
        f"**{best['overlay only'] / best['bare']:.2f}**.", "",
        "Export by format, each alone, ms per frame (RLE, areas, boxes, the one-object-per-pixel id image and the "
        "frame's JPEG are computed once per frame for all formats: 'shared'):", "",
        "| shared | " + " | ".join(FORMATS) + " |", "|---" * (len(FORMATS) + 1) + "|",
        f"| {ms['shared']:.2f} | " + " | ".join(f"{ms[name]:.2f}" for name in FORMATS) + " |", "",
        f"Reading the cached results back (not pipeline work, excluded): {1000 * read_s / n:.2f} ms a frame.", "",
    ]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
