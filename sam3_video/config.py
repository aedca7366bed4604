"""Defaults, each with its reason, and the environment overrides, read once here."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Defaults:
    # The real model: gated on the hub (accept the licence, set HF_TOKEN) or a local copy.
    model: str = _env("SAM3_MODEL", "facebook/sam3")
    # auto: transformers unless the model is an official checkpoint (.pt); see backends/__init__.py.
    backend: str = _env("SAM3_BACKEND", "auto")
    # auto: CUDA when torch sees a GPU, else the CPU (slow, but it works).
    device: str = _env("SAM3_DEVICE", "auto")
    # auto: bfloat16 on CUDA (half the memory of float32), float32 on the CPU (exact, portable).
    dtype: str = _env("SAM3_DTYPE", "auto")
    # Decoded source frames kept for random access; bounds memory on long or large videos.
    frame_cache_mb: int = int(_env("SAM3_FRAME_CACHE_MB", "256"))
    # Frames decoded and preprocessed by a thread of their own while the model works on an
    # earlier one (0: in the model's thread). auto: 2 on CUDA; 0 on the CPU, where the thread
    # takes cores from the model (bikes, 2 cores: 30.6 s without, 35.5 s with; docs/benchmarks.md).
    prefetch_frames: str = _env("SAM3_PREFETCH_FRAMES", "auto")
    # torch.compile of the detector's image encoder, half the model's weights (transformers
    # backend): off, or a torch.compile mode (default, reduce-overhead: CUDA graphs, max-autotune).
    # off until a GPU run shows a gain with equal masks: bench/gpu_bench.py measures each mode;
    # on this CPU the small model gained nothing (3.9 ms a call both ways) after 36 s of compiling.
    compile: str = _env("SAM3_COMPILE", "off")


DEFAULTS = Defaults()


@dataclass(frozen=True)
class AppLimits:
    """What one visitor of the web app may ask for; checked before any heavy work."""

    # Uploads above this are refused by Gradio itself (launch(max_file_size=...)).
    max_upload_mb: int = int(_env("SAM3_MAX_UPLOAD_MB", "1024"))
    # Longer videos are refused with a sentence: a public GPU is shared, a run holds it.
    max_video_seconds: float = float(_env("SAM3_MAX_VIDEO_SECONDS", "600"))
    max_video_frames: int = int(_env("SAM3_MAX_VIDEO_FRAMES", "18000"))
    # A visitor's files and state are deleted this long after their last action (and at tab close).
    session_ttl_s: float = float(_env("SAM3_SESSION_TTL_S", "3600"))
    # Model calls running at once (one GPU: 1); more visitors wait in Gradio's queue ...
    gpu_concurrency: int = int(_env("SAM3_GPU_CONCURRENCY", "1"))
    # ... which turns visitors away with a message beyond this many waiting.
    queue_size: int = int(_env("SAM3_QUEUE_SIZE", "16"))

    @property
    def sweep_every_s(self) -> int:
        """How often expired workspaces and Gradio's cached copies of their files are deleted."""
        return int(max(1, min(600, self.session_ttl_s / 2)))


LIMITS = AppLimits()
