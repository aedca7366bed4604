"""Writers benchmark: what writing a run's files costs a frame, at 720p and 1080p, on realistic masks.

What `writing.FileWriter` does with each frame of a run after the model (the web app's Follower and
`pipeline.run` both drive it): the results record in, the overlay (draw + H.264) and every
annotation format out, frames decoded by its own reader. The masks are bench/outlines.py's
synthetic realistic ones (smooth objects of a few ellipses, some with a second part or a hole,
moving a little each frame; the small random SAM3's masks are ragged noise and flatter nobody).
The source video is a real clip scaled to each size (`--source`, e.g. ../shared/media's Big Buck
Bunny), or without one a moving gradient with noise (the hardest a H.264 encoder gets).

Reported, ms per frame (best of --repeats, --frames frames): each output alone in one process, with
the frame and mask decoding it needs (wall, and CPU of every process it used: the H.264 encoder
included); every output in one process; every output through lanes (processes of their own,
sam3_video/lanes.py), and every annotation format without the overlay through lanes: the figure
that says whether writing keeps up with a model at 30 frames a second (33.3 ms a frame) here.

    python bench/writers.py --source ../shared/media/bigbuckbunny.mp4   # writes bench/results/writers-cpu.md

Run from an older tree (this script, bench/outlines.py, engine.py and outputs.py copied into it) it
times that tree's way: before writing.py, the run's sinks fed each result with its masks in memory;
before lanes, one FileWriter (its sinks in threads on 2 cores or more), and no lane rows.
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


def source_video(path: str, width: int, height: int, frames: int, fps: float = 30.0, clip: str | None = None) -> None:
    """`clip`'s first frames scaled to width x height, or without one a moving gradient with texture
    (something an H.264 encoder and a JPEG have to work for)."""
    from sam3_video.video_out import H264Writer, ffmpeg_exe

    if clip:
        import subprocess

        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", clip, "-frames:v", str(frames), "-an",
                        "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                        "-pix_fmt", "yuv420p", path], check=True)
        return

    rng = np.random.default_rng(1)
    texture = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    with H264Writer(path, width, height, fps) as writer:
        for f in range(frames):
            base = (x * 0.6 + y * 0.3 + f * 3) % 196
            writer.write((base + np.roll(texture, f * 4, axis=1)).astype(np.uint8))


def write_all(folder: str, records: list, info, wanted: list[str], processes: int) -> tuple[float, float]:
    """Seconds to write every record through one FileWriter and close it, and the CPU seconds every
    process took meanwhile (this one, the lanes, the encoders)."""
    try:
        from sam3_video.writing import FileWriter
    except ImportError:  # a tree from before writing.py (the sinks on the model's thread): its own way
        return write_all_before(folder, records, info, wanted)
    cpu = _cpu_s()
    start = time.perf_counter()
    if has_lanes():
        writer = FileWriter(folder, wanted, info, ["thing"], 0, processes=processes)
    else:  # a tree from before lanes (writing.py's FileWriter, its sinks in threads on 2 cores or more)
        writer = FileWriter(folder, wanted, info, ["thing"], 0)
    for record in records:
        writer.write(record)
    error = writer.close(None)
    if error is not None:
        raise error
    return time.perf_counter() - start, _cpu_s() - cpu


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def write_all_before(folder: str, records: list, info, wanted: list[str]) -> tuple[float, float]:
    """The same through the sinks as `pipeline.run` fed them before writing.py (sam3-video at
    f9ebc42): each frame's result with its masks in memory, frames decoded by the run's reader."""
    from sam3_video.pipeline import open_outputs, write_all as feed
    from sam3_video.results import EncodedFrame, frame_from_json
    from sam3_video.video import VideoReader

    results = [frame_from_json(record, info.height, info.width) for record in records]  # what the model handed over
    cpu = _cpu_s()
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
    return time.perf_counter() - start, _cpu_s() - cpu


def measure(size: str, objects: int, frames: int, repeats: int, tmp: str, clip: str | None,
            lanes: int) -> dict[str, tuple[float, float]]:
    from sam3_video.export import FORMATS
    from sam3_video.results import EncodedFrame, frame_to_json
    from sam3_video.video import probe

    width, height = SIZES[size]
    video = os.path.join(tmp, f"{size}.mp4")
    source_video(video, width, height, frames, clip=clip)
    info = probe(video)
    frames = min(frames, info.num_frames)
    records = [frame_to_json(EncodedFrame(f)) for f in synthetic_frames(width, height, objects, frames)]
    runs = {name: ([name], 0) for name in ("overlay", *FORMATS)}
    runs["everything, one process"] = (["overlay", *FORMATS], 0)
    runs["every format (no overlay), one process"] = (list(FORMATS), 0)
    if has_lanes():
        runs[f"everything, {lanes} lanes"] = (["overlay", *FORMATS], lanes)
        runs[f"every format (no overlay), {lanes} lanes"] = (list(FORMATS), lanes)
    out = {}
    for label, (wanted, processes) in runs.items():
        best = (float("inf"), 0.0)
        for k in range(repeats):
            folder = tempfile.mkdtemp(dir=tmp)
            best = min(best, write_all(folder, records, info, wanted, processes))
        out[label] = (1000 * best[0] / frames, 1000 * best[1] / frames)
        print(f"{size} {label}: {out[label][0]:.1f} ms/frame, CPU {out[label][1]:.1f}", flush=True)
    return out


def has_lanes() -> bool:
    """Whether the tree under test shares its outputs out between processes (sam3_video/lanes.py)."""
    import importlib.util

    return importlib.util.find_spec("sam3_video.lanes") is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--source", help="a real clip to scale to each size (default: a synthetic one)")
    parser.add_argument("--lanes", type=int, default=os.cpu_count() or 1, help="writer processes (default: cores)")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results", "writers-cpu.md"))
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    wait_quiet(120)
    busy_before = busy_s()
    started = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            rows[size] = measure(size, args.objects, args.frames, args.repeats, tmp, args.source, args.lanes)
    wall = time.perf_counter() - started
    busy = (busy_s() - busy_before) / wall
    source = f"`{os.path.basename(args.source)}` scaled to each size" if args.source else "a synthetic gradient with noise"
    lines = [
        "# Writers: a run's files from its results, ms per frame",
        "",
        f"{datetime.date.today()}, {machine()}, Python {platform.python_version()}; "
        f"`{shlex.join(['python', 'bench/writers.py', *sys.argv[1:]])}`.",
        f"{args.objects} synthetic realistic objects a frame (bench/outlines.py's) over {source}, {args.frames} "
        f"frames, best of {args.repeats}; cores busy on average during the bench: {busy:.1f} (other work on the "
        "machine included). Wall ms a frame, then the CPU ms every process took (the H.264 encoder and the lanes "
        "included), then frames a second.",
        "",
        "| output | " + " | ".join(f"{size} wall | CPU | fps" for size in sizes) + " |",
        "|---|" + "---|---|---|" * len(sizes),
    ]
    for label in rows[sizes[0]]:
        lines.append(f"| {label} | " + " | ".join(
            f"{rows[size][label][0]:.1f} | {rows[size][label][1]:.1f} | {1000 / rows[size][label][0]:.1f}"
            for size in sizes) + " |")
    lines += ["", "A model at 30 frames a second leaves 33.3 ms a frame."]
    save_report(lines, args.out)


if __name__ == "__main__":
    main()
