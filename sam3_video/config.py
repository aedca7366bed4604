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


DEFAULTS = Defaults()
