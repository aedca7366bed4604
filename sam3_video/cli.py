"""The command line: `python -m sam3_video segment|make-test-model ...`.

Only parses arguments, shows progress and turns errors into one sentence and an exit code:
0 done, 1 unexpected failure, 2 something the user can fix, 130 stopped with Ctrl-C (the frames
done so far are saved).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .backends import BACKENDS
from .config import DEFAULTS
from .errors import Sam3VideoError
from .export import OUTPUTS
from .runfolder import ANNOTATIONS_ZIP, OVERLAY, RESULTS
from .types import DIRECTIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sam3_video", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show library warnings and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="detect phrases on a frame and track them through a video")
    seg.add_argument("video", help="video file (mp4, mov, webm, mkv, avi, ...)")
    seg.add_argument("--prompt", "-p", default=None,
                     help='one or more phrases, comma-separated: "car, person" (required unless --continue-from)')
    seg.add_argument("--out", "-o", required=True, help="output folder (created if missing)")
    _run_arguments(seg)
    seg.add_argument("--remove", default="", metavar="IDS",
                     help="object ids to drop after detection (false positives), comma-separated: 3,7")
    seg.add_argument("--continue-from", default=None, metavar="RUN_DIR",
                     help="continue the run in RUN_DIR (stopped, or wrong from some frame on) from --start-frame "
                          "(default: the last frame it did) into a new --out: its frames before that one are "
                          "kept, its objects there keep their ids (minus --remove), phrases default to its own")

    bt = sub.add_parser("batch", help="segment many videos on Ray (this machine, or a cluster with --address)")
    bt.add_argument("input", help="a folder of videos, a glob ('clips/*.mp4') or a .csv/.jsonl manifest")
    bt.add_argument("--prompt", "-p", default=None, help="phrases for every video (a manifest may set its own)")
    bt.add_argument("--out", "-o", required=True, help="output folder: one subfolder per video")
    _run_arguments(bt)
    bt.add_argument("--gpus-per-task", type=float, default=1.0, help="GPUs each worker holds (default 1)")
    bt.add_argument("--workers", type=int, default=None,
                    help="workers at once (default: one per GPU, or CPUs/2 on each node)")
    bt.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    bt.add_argument("--no-ship-code", dest="ship_code", action="store_false",
                    help="workers import the sam3_video installed on their node instead of the driver's copy "
                         "(checked: a node with other code stops the batch before any work)")

    mk = sub.add_parser("make-test-model", help="build a small random SAM3 in the real model's format")
    mk.add_argument("dir", help="folder to write the model into")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--full-depth", action="store_true",
                    help="the real model's layer counts at the small widths (for counting ops per frame on a CPU)")
    return parser


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """The model and run options that segment and batch share."""
    p.add_argument("--model", default=DEFAULTS.model, help="hub id or local folder (default: %(default)s; env SAM3_MODEL)")
    p.add_argument("--backend", default=DEFAULTS.backend, choices=BACKENDS)
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cuda, cuda:N or cpu (default: %(default)s)")
    p.add_argument("--dtype", default=DEFAULTS.dtype, choices=("auto", "float32", "bfloat16"))
    p.add_argument("--start-frame", type=int, default=None, help="frame to detect on, or to continue from (0-based, default 0)")
    p.add_argument("--direction", default=None, choices=DIRECTIONS,
                   help="default forward; with --continue-from, the way that run went through the start frame")
    p.add_argument("--max-frames", type=int, default=None, help="frames per direction, start frame included")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--stride", type=int, default=None, metavar="N",
                          help="do every Nth frame from the start frame (default 1: every frame): a long video in "
                               "less time; results keep the video's own frame numbers, the overlay plays at fps/N")
    sampling.add_argument("--target-fps", type=float, default=None, metavar="F",
                          help="instead of --stride: the stride that brings the video's frame rate nearest to F "
                               "frames a second (round(fps / F), at least 1)")
    p.add_argument("--threshold", type=float, default=None, help="score a detection needs to become an object (0-1)")
    p.add_argument("--outputs", default="all",
                   help=f"comma-separated: {', '.join(OUTPUTS)}, or all (default); "
                        "results.jsonl and run.json are always written")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _quiet_libraries(debug: bool) -> None:
    if debug:
        return
    import warnings

    warnings.filterwarnings("ignore")
    # the package's own warnings (damaged packets skipped, ...) are details for --debug; what the
    # user must know reaches them as the one error sentence
    logging.getLogger("sam3_video").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _segment(args) -> int:
    from tqdm import tqdm

    from . import continuation
    from .backends import load_backend
    from .pipeline import run
    from .types import RunOptions

    start = args.start_frame
    if args.continue_from:
        start = continuation.last_frame(args.continue_from) if start is None else start
        if start is None:
            raise Sam3VideoError(f"'{args.continue_from}' holds no finished frame of a run to continue from; "
                                 "give the output folder of an earlier run.")
    elif not args.prompt:
        raise Sam3VideoError("Say what to find with --prompt, e.g. --prompt 'car, person'.")
    stride = 1 if args.stride is None else args.stride  # checked against the video by the run
    if args.target_fps is not None:
        from .types import stride_for_fps
        from .video import probe

        stride = stride_for_fps(probe(args.video), args.target_fps)
    options = RunOptions.of(
        prompts=(args.prompt,) if args.prompt else (),
        stride=stride,
        start_frame=start or 0,
        continue_from=args.continue_from,
        direction=args.direction,  # None: forward, or the way the continued run went (pipeline.run)
        max_frames=args.max_frames,
        threshold=args.threshold,
        removed=_ids(args.remove),
    )
    backend = load_backend(args.model, args.backend, args.device, args.dtype)
    bar = None
    interrupts = 0

    def on_session(session) -> None:
        def on_sigint(signum, frame):
            nonlocal interrupts
            interrupts += 1
            if interrupts > 1:
                raise KeyboardInterrupt
            print("\nstopping after this frame; the frames done so far are kept (Ctrl-C again to quit now)", file=sys.stderr)
            session.stop()

        signal.signal(signal.SIGINT, on_sigint)

    def on_progress(p) -> None:
        nonlocal bar
        if args.quiet:
            return
        if p.written is not None:  # the model is done; the files are being finished
            if bar is None or bar.desc != "write files":
                if bar is not None:
                    bar.close()
                bar = tqdm(total=p.done, unit="frame", desc="write files", dynamic_ncols=True)
            bar.update(p.written - bar.n)
            return
        if bar is None:
            bar = tqdm(total=p.total, unit="frame", desc="propagate", dynamic_ncols=True)
        bar.update(p.done - bar.n)
        bar.set_postfix(objects=len(p.result) if p.result is not None else 0)

    try:
        summary = run(args.video, options, args.out, backend=backend, on_progress=on_progress, on_session=on_session,
                      outputs=[args.outputs])
    finally:
        if bar is not None:
            bar.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    labels = ", ".join(f"{label}: {n}" for label, n in summary.objects_per_label.items()) or "no objects"
    print(
        f"{summary.status}: {summary.frames_done}/{summary.frames_expected} frames in {summary.elapsed_s:.1f} s "
        f"({labels}) -> {summary.out_dir}"
    )
    if summary.notice:
        print(f"note: {summary.notice}")
    for name in (OVERLAY, ANNOTATIONS_ZIP, RESULTS):
        if os.path.exists(os.path.join(summary.out_dir, name)):
            print(f"  {os.path.join(summary.out_dir, name)}")
    return 0 if summary.complete else 130


def _batch(args) -> int:
    from tqdm import tqdm

    from .batch import collect_jobs, run_batch, summary_table

    jobs = collect_jobs(args.input, args.prompt, args.out, start_frame=args.start_frame, direction=args.direction,
                        max_frames=args.max_frames, threshold=args.threshold,
                        stride=1 if args.stride is None else args.stride, target_fps=args.target_fps)
    bar = None if args.quiet else tqdm(total=len(jobs), unit="video", desc="batch", dynamic_ncols=True)

    def on_progress(state) -> None:  # a cluster.ClusterProgress
        if bar is not None:
            bar.set_postfix_str(f"{state.frames_done} frames, {len(state.running)} running", refresh=False)
            bar.update(state.videos_done - bar.n)
            if state.report is not None and state.report.status == "failed":
                bar.write(f"failed: {state.report.video}: {state.report.error}")

    try:
        reports = run_batch(jobs, args.out, args.model, args.backend, args.device, args.dtype, [args.outputs],
                            args.address, args.gpus_per_task, args.workers, on_progress, args.ship_code)
    finally:
        if bar is not None:
            bar.close()
    print(summary_table(reports))
    return 0 if all(r.status in ("complete", "skipped") for r in reports) else 1


def _ids(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise Sam3VideoError(f"--remove takes object ids separated by commas, like 3,7; got '{text}'.") from None


def _make_test_model(args) -> int:
    from .testmodel import make_test_model

    path = make_test_model(args.dir, seed=args.seed, full_depth=args.full_depth)
    print(f"small random SAM3 written to {path}; use it with --model {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_libraries(args.debug)
    try:
        if args.command == "segment":
            return _segment(args)
        if args.command == "batch":
            return _batch(args)
        return _make_test_model(args)
    except Sam3VideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped; the frames done so far are in the output folder", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"error: unexpected failure ({type(err).__name__}: {err}). Run again with --debug for details.", file=sys.stderr)
        return 1
