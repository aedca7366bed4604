"""Outline benchmark: the labelme and CVAT writers' exact polygons (sam3_video/export/outlines.py).

Two kinds of masks, ms per frame (best of --repeats):
  carphone   the small random SAM3's results on tests/data/carphone_pristine.mp4 (176x144,
             "person, window", made once and cached in bench/.cache/ as bench/outputs.py does):
             what the test suite's runs export, ragged masks with ~90 holes and ~8 parts each
  720p/1080p synthetic realistic masks: --objects smooth objects a frame (unions of ellipses,
             some with a second or third part and a hole or two), moving a little each frame
Per kind: the outlines alone (labelme's polygons per part, CVAT's joined outline) and the
writers' `write` as the pipeline calls it (labelme: polygons + JSON + the frame's JPEG, made
beforehand as the pipeline's shared work; CVAT: outline + spill), the fill-back checked on
every mask (labelme's `shape_to_mask`, pycocotools' polygon fill as CVAT's import).

    python bench/outlines.py                         # writes bench/results/outlines-cpu.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from engine import busy_s, machine, save_report, wait_quiet  # noqa: E402
from outputs import cached_results  # noqa: E402

PROMPT = "person, window"


def carphone_frames(media: str) -> list:
    from sam3_video.results import frame_from_json

    folder = cached_results(os.path.join(media, "carphone_pristine.mp4"), PROMPT)
    with open(os.path.join(folder, "results.jsonl"), encoding="utf-8") as f:
        records = sorted((json.loads(line) for line in f), key=lambda rec: rec["frame_index"])
    return [frame_from_json(rec, 144, 176) for rec in records]


def synthetic_frames(width: int, height: int, objects: int, frames: int, seed: int = 0) -> list:
    """Smooth objects: each a union of 2-4 ellipses (a main part), two in five with one or two
    small parts beside it, half with one or two holes; every object shifts a few pixels a frame."""
    import cv2

    from sam3_video.types import FrameResult

    rng = np.random.default_rng(seed)
    scale = height / 720
    shapes = []
    for _ in range(objects):
        cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.85) * height
        size = rng.uniform(40, 160) * scale
        blobs = [(rng.normal(0, size / 3, 2), rng.uniform(0.4, 1.0, 2) * size, rng.uniform(0, 180))
                 for _ in range(rng.integers(2, 5))]
        parts = [(_away(rng, size * rng.uniform(1.4, 2.2)), rng.uniform(0.1, 0.3, 2) * size, rng.uniform(0, 180))
                 for _ in range(rng.integers(1, 3) if rng.random() < 0.4 else 0)]
        holes = [(rng.normal(0, size / 5, 2), rng.uniform(0.05, 0.15, 2) * size, rng.uniform(0, 180))
                 for _ in range(rng.integers(1, 3) if rng.random() < 0.5 else 0)]
        shapes.append((np.array([cx, cy]), rng.normal(0, 3 * scale, 2), blobs + parts, holes))
    out = []
    for f in range(frames):
        masks = np.zeros((objects, height, width), np.uint8)
        for k, (centre, speed, solid, holes) in enumerate(shapes):
            at = centre + f * speed
            for value, ellipses in ((1, solid), (0, holes)):
                for shift, axes, angle in ellipses:
                    c = tuple(int(v) for v in at + shift)
                    cv2.ellipse(masks[k], c, tuple(max(1, int(a)) for a in axes), angle, 0, 360, value, -1)
        ids = list(range(1, objects + 1))
        out.append(FrameResult(f, ids, ["thing"] * objects, np.full(objects, 0.9), np.zeros((objects, 4)),
                               masks.astype(bool)))
    return out


def _away(rng, distance: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return distance * np.array([np.cos(angle), np.sin(angle)])


def best_of(repeats: int, fn) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(frames: list, repeats: int) -> dict[str, float]:
    """ms per frame: outlines alone, then each writer's write; asserts every mask fills back."""
    from labelme.utils import shape_to_mask
    from pycocotools import mask as mask_utils

    from sam3_video.export import Categories, ExportContext
    from sam3_video.export.cvat import CvatWriter, cvat_outline
    from sam3_video.export.labelme import LabelmeWriter, mask_to_polygons
    from sam3_video.results import EncodedFrame
    from sam3_video.types import VideoInfo

    h, w = frames[0].masks.shape[1:]
    masks = [m for f in frames for m in f.masks if m.any()]
    inexact = {"labelme": 0, "cvat": 0}  # masks the outlines do not give back pixel for pixel
    for m in masks:
        drawn = np.zeros_like(m)
        for polygon in mask_to_polygons(m):
            drawn |= shape_to_mask((h, w), polygon, "polygon")
        inexact["labelme"] += not np.array_equal(drawn, m)
        outline = np.ravel(cvat_outline(m)).tolist()
        drawn = mask_utils.decode(mask_utils.frPyObjects([outline], h, w))[..., 0].astype(bool)
        inexact["cvat"] += not np.array_equal(drawn, m)
    n = len(frames)
    t = {"labelme outlines": best_of(repeats, lambda: [mask_to_polygons(m) for m in masks]),
         "cvat outline": best_of(repeats, lambda: [cvat_outline(m) for m in masks])}
    info = VideoInfo(path="/v/bench.mp4", width=w, height=h, num_frames=n, fps=25.0, duration=n / 25)
    encoded = [EncodedFrame(f, lambda: np.zeros((h, w, 3), np.uint8)) for f in frames]
    for e in encoded:  # the pipeline's shared per-frame work, done once for every writer
        e.rles, e.areas, e.jpeg
    for name, writer in (("labelme write", LabelmeWriter), ("cvat write", CvatWriter)):
        def run(writer=writer):
            with tempfile.TemporaryDirectory() as folder:
                sink = writer(folder, ExportContext(info, Categories(["person", "window", "thing"])))
                for e in encoded:
                    sink.write(e)
        t[name] = best_of(repeats, run)
    ms = {k: 1000 * v / n for k, v in t.items()}
    ms["objects"] = len(masks) / n
    ms["inexact"] = f"{inexact['labelme']}, {inexact['cvat']} of {len(masks)}"
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--media", default=os.path.join(REPO, "tests", "data"))
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--frames", type=int, default=20, help="synthetic frames per resolution")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "outlines-cpu.md"))
    p.add_argument("--wait-quiet", type=float, default=60)
    args = p.parse_args()
    kinds = {"carphone 176x144 (small SAM3)": carphone_frames(args.media)}
    for w, h in ((1280, 720), (1920, 1080)):
        kinds[f"{w}x{h} synthetic"] = synthetic_frames(w, h, args.objects, args.frames)
    wait_quiet(args.wait_quiet)
    load = [os.getloadavg()[0]]
    b0, t0 = busy_s(), time.perf_counter()
    rows = {name: measure(frames, args.repeats) for name, frames in kinds.items()}
    busy = (busy_s() - b0) / (time.perf_counter() - t0)
    load.append(os.getloadavg()[0])
    lines = [
        f"# Outline benchmark (CPU), {datetime.date.today().isoformat()}", "",
        f"- machine: {machine()}; Python {platform.python_version()}",
        f"- load: 1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end; all processes kept "
        f"{busy:.1f} of {os.cpu_count()} cores busy during the run (this one uses 1): other work shares the cores",
        f"- command: `python bench/outlines.py {shlex.join(sys.argv[1:])}`; best of {args.repeats}; every mask "
        "checked to fill back: 'not exact' counts the masks that labelme's `shape_to_mask` (labelme) and "
        "pycocotools' polygon fill (CVAT) do not give back pixel for pixel", "",
        "ms per frame:", "",
        "| masks | objects a frame | labelme polygons | CVAT outline | labelme write | CVAT write | not exact: labelme, CVAT |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ms in rows.items():
        lines.append(f"| {name} | {ms['objects']:.1f} | {ms['labelme outlines']:.2f} | {ms['cvat outline']:.2f} | "
                     f"{ms['labelme write']:.2f} | {ms['cvat write']:.2f} | {ms['inexact']} |")
    save_report(lines + [""], args.out)


if __name__ == "__main__":
    main()
