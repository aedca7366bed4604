"""One-shot jobs for the app and API clients: a video in; the overlay video, the annotations zip
and a summary out.

Each job writes into its own fresh folder under the app's work directory (see README, "Output").
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable

from .backends import load_backend
from .config import DEFAULTS
from .export import ZIP
from .overlay import OverlayWriter
from .pipeline import Progress, run
from .types import RunOptions


def segment_job(
    video: str,
    prompts: str,
    start_frame: int = 0,
    direction: str = "forward",
    max_frames: int | None = None,
    threshold: float | None = None,
    work_dir: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[str | None, str, dict]:
    """Run the pipeline on `video`; return (overlay.mp4 or None, annotations.zip, summary dict).

    Raises `Sam3VideoError` (a sentence for the user) for a bad video, prompt or model.
    """
    backend = load_backend(DEFAULTS.model, DEFAULTS.backend, DEFAULTS.device, DEFAULTS.dtype)
    out_dir = tempfile.mkdtemp(prefix="job-", dir=work_dir)
    options = RunOptions(
        prompts=(prompts,),
        start_frame=int(start_frame),
        direction=direction,  # type: ignore[arg-type]
        max_frames=int(max_frames) if max_frames else None,
        threshold=float(threshold) if threshold else None,
    )
    summary = run(video, options, out_dir, backend=backend, on_progress=on_progress)
    overlay = os.path.join(out_dir, OverlayWriter.name)
    return (overlay if os.path.exists(overlay) else None), os.path.join(out_dir, ZIP), {
        "status": summary.status,
        "frames": summary.frames_done,
        "frames_expected": summary.frames_expected,
        "objects_per_label": summary.objects_per_label,
        "seconds": round(summary.elapsed_s, 1),
    }
