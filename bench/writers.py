"""Writers benchmark: what writing a run's files costs a frame, at 720p and 1080p, on realistic masks.

What `writing.FileWriter` does with each frame of a run after the model (the web app's Follower and
`pipeline.run` both drive it): the results record in, the overlay (draw + H.264) and every
annotation format out, frames decoded by its own reader. The masks are bench/outlines.py's
synthetic realistic ones (smooth objects of a few ellipses, some with a second part or a hole,
moving a little each frame; the small random SAM3's masks are ragged noise and flatter nobody),
on a source video of that size (a moving gradient with texture, encoded once).

Reported, ms per frame (best of --repeats, 60 frames): each output alone (with the frame decode
and mask decode it needs), every output through one FileWriter, and the same with the sinks in
threads (`FileWriter(..., parallel=True)`): the figure that says whether writing keeps up with a
model at 30 frames a second (33.3 ms a frame) on this machine.

    python bench/writers.py                       # writes bench/results/writers-cpu.md

Run from a tree before writing.py (this script, bench/outlines.py, engine.py and outputs.py copied
into it) it times that tree's way: the run's sinks fed each result with its masks in memory.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine import busy_s, machine, save_report, wait_quiet  # noqa: E402
from outlines import synthetic_frames  # noqa: E402

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def source_video(path: str, width: int, height: int, frames: int, fps: float = 30.0) -> None:
    """A moving gradient with texture: something an H.264 encoder and a JPEG have to work for."""
    from sam3_video.video_out import H264Writer

    rng = np.random.default_rng(1)
    texture = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    with H264Writer(path, width, height, fps) as writer:
        for f in range(frames):
            base = (x * 0.6 + y * 0.3 + f * 3) % 196
            writer.write((base + np.roll(texture, f * 4, axis=1)).astype(np.uint8))


def write_all(folder: str, records: list, info, wanted: list[str], parallel: bool) -> float:
    """Seconds to write every record through one FileWriter and close it."""
    try:
        from sam3_video.writing import FileWriter
    except ImportError:  # a tree from before writing.py (the sinks on the model's thread): its own way
        return write_all_before(folder, records, info, wanted)
    start = time.perf_counter()
    writer = FileWriter(folder, wanted, info, ["thing"], 0, parallel=parallel)
    for record in records:
        writer.write(record)
    error = writer.close(None)
    if error is not None:
        raise error
    return time.perf_counter() - start


def write_all_before(folder: str, records: list, info, wanted: list[str]) -> float:
    """The same through the sinks as `pipeline.run` fed them before writing.py (sam3-video at
    f9ebc42): each frame's result with its masks in memory, frames decoded by the run's reader."""
    from sam3_video.pipeline import open_outputs, write_all as feed
    from sam3_video.results import EncodedFrame, frame_from_json
    from sam3_video.video import VideoReader

    results = [frame_from_json(record, info.height, info.width) for record in records]  # what the model handed over
    start = time.perf_counter()
    with VideoReader(info.path, info) as reader:
        sinks, annotations = open_outputs(folder, wanted, info, ["thing"], 0, reader.__getitem__)
        for result in results:
            feed(sinks[1:] + ([annotations] if annotations else []),  # results.jsonl aside: the model's side
                 EncodedFrame(result, lambda i=result.frame_index: reader[i]))
        for sink in sinks:
            sink.close()
        if annotations is not None:
            annotations.close({})
    return time.perf_counter() - start


def measure(size: str, objects: int, frames: int, repeats: int, tmp: str) -> dict[str, float]:
    from sam3_video.export import FORMATS
    from sam3_video.results import EncodedFrame, frame_to_json
    from sam3_video.video import probe

    width, height = SIZES[size]
    video = os.path.join(tmp, f"{size}.mp4")
    source_video(video, width, height, frames)
    info = probe(video)
    records = [frame_to_json(EncodedFrame(f)) for f in synthetic_frames(width, height, objects, frames)]
    runs = {name: ([name], False) for name in ("overlay", *FORMATS)}
    runs["everything"] = (["overlay", *FORMATS], False)
    if not before():
        runs["everything, sinks in threads"] = (["overlay", *FORMATS], True)
    out = {}
    for label, (wanted, parallel) in runs.items():
        best = float("inf")
        for k in range(repeats):
            folder = tempfile.mkdtemp(dir=tmp)
            best = min(best, write_all(folder, records, info, wanted, parallel))
        out[label] = 1000 * best / frames
        print(f"{size} {label}: {out[label]:.1f} ms/frame", flush=True)
    return out


def before() -> bool:
    try:
        import sam3_video.writing  # noqa: F401
    except ImportError:
        return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "writers-cpu.md"))
    args = parser.parse_args()
    wait_quiet(60)
    busy_before = busy_s()
    started = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            rows[size] = measure(size, args.objects, args.frames, args.repeats, tmp)
    wall = time.perf_counter() - started
    busy = (busy_s() - busy_before) / wall
    lines = [
        "# Writers: a run's files from its results, ms per frame",
        "",
        f"{datetime.date.today()}, {machine()}, Python {platform.python_version()}; "
        f"`{shlex.join(['python', 'bench/writers.py', *sys.argv[1:]])}`.",
        f"{args.objects} synthetic realistic objects a frame (bench/outlines.py's), {args.frames} frames, best of "
        f"{args.repeats}; cores busy on average during the bench: {busy:.1f} (other work on the machine included).",
        "",
        "| output | " + " | ".join(SIZES) + " |",
        "|---|" + "---|" * len(SIZES),
    ]
    for label in rows["720p"]:
        lines.append(f"| {label} | " + " | ".join(f"{rows[size][label]:.1f}" for size in SIZES) + " |")
    lines += ["", "A model at 30 frames a second leaves 33.3 ms a frame."]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
