"""Defaults, each with its reason, and the environment overrides, read once here."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


#: Hugging Face ZeroGPU: the platform sets SPACES_ZERO_GPU, and a GPU is attached only inside
#: `spaces.GPU` calls, each in a forked worker process, for the duration the call asks for.
ON_ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true")
#: A Hugging Face Space (any hardware): the platform sets SPACE_ID ("owner/name"). Its visitors are not
#: its owner: what only the owner can fix is said in the log and the README, not on the page.
ON_SPACE = bool(os.environ.get("SPACE_ID", "").strip())


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
    # The tracker steps all propagated objects in one batched pass (backends/batched_tracker.py)
    # instead of transformers' one object at a time: about 730 fewer torch ops per extra object
    # per frame (bench/results/ops-cpu.md), same masks. 0 runs transformers' loop.
    batch_tracker: bool = _env("SAM3_BATCH_TRACKER", "1").lower() not in ("0", "false", "no", "off")
    # SAM3's mask NMS, hole filling and sprinkle removal as torch ops on the masks' device
    # (backends/postprocess.py), Meta's semantics; 0: the hub kernel or OpenCV on the host, which
    # copies every frame's masks to the host.
    device_cleanup: bool = _env("SAM3_DEVICE_CLEANUP", "1").lower() not in ("0", "false", "no", "off")
    # The most objects one session tracks at once (0: the model's own limit only). Each tracked
    # object holds memory for the frames the tracker reads and costs tracker work on every frame;
    # on ZeroGPU the default is what fits a 48 GB slice (objects_for_memory), elsewhere no cap.
    max_objects: int = int(_env("SAM3_MAX_OBJECTS", "0"))
    # The image encoder (the 32-layer ViT) through backends/lean_vit.py: the same arithmetic in about
    # a third of transformers' torch ops (rotary tables kept, one qkv product, window order kept
    # between windowed layers); bitwise the same output on the CPU. 0 runs transformers' forward.
    lean_encoder: bool = _env("SAM3_LEAN_ENCODER", "1").lower() not in ("0", "false", "no", "off")
    # SAM3's frame planning (detections, association, occlusion rules) through backends/frame_reads.py:
    # transformers' plan from two reads of the device a frame instead of 23 to 67 (each a stall of
    # the host on a GPU). 0 runs transformers' methods.
    few_reads: bool = _env("SAM3_FEW_READS", "1").lower() not in ("0", "false", "no", "off")


def objects_for_memory(card_gb: float = 48.0, base_gb: float = 31.0, per_object_gb: float = 0.26,
                       margin_gb: float = 2.0) -> int:
    """How many tracked objects fit a card of `card_gb`, from bf16 arithmetic (docs/benchmarks-engine.md):
    `base_gb` the peak at 1-2 objects (31 GB measured on an H200, issue 26; bench/gpu_objects.py
    measures it again with the slope per object), `per_object_gb` the tracker memory one object
    keeps (mask memory, its position encoding and low-res mask, 1.5 MB a frame, for up to 130
    frames: 0.19 GB) plus its share of one tracker pass (high-res masks, memory encoder input,
    memory attention: about 0.06 GB)."""
    return max(1, int((card_gb - base_gb - margin_gb) / per_object_gb))


if ON_ZERO_GPU and not os.environ.get("SAM3_MAX_OBJECTS", "").strip():
    DEFAULTS = Defaults(max_objects=objects_for_memory())
else:
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
    # A tab that goes away may be reloading: its workspace and run wait this long for it to come
    # back before they are closed (0: at once).
    reload_grace_s: float = float(_env("SAM3_RELOAD_GRACE_S", "120"))
    # Model calls running at once (one GPU: 1; 0: no limit); more visitors wait in Gradio's queue ...
    # On ZeroGPU every visitor's call gets a GPU of its own: no limit.
    gpu_concurrency: int = int(_env("SAM3_GPU_CONCURRENCY", "0" if ON_ZERO_GPU else "1"))
    # ... which turns visitors away with a message beyond this many waiting.
    queue_size: int = int(_env("SAM3_QUEUE_SIZE", "16"))
    # What a run writes besides results.jsonl: all, or some of overlay and the formats (a Space
    # on a small CPU may leave out the labelme frames, say).
    outputs: str = _env("SAM3_APP_OUTPUTS", "all")

    @property
    def sweep_every_s(self) -> int:
        """How often expired workspaces and Gradio's cached copies of their files are deleted."""
        return int(max(1, min(600, self.session_ttl_s / 2)))


LIMITS = AppLimits()

#: The web app is also an MCP server (Gradio's, at /gradio_api/mcp/) unless SAM3_MCP=0.
MCP_SERVER = _env("SAM3_MCP", "1").lower() not in ("0", "false", "no", "off")



@dataclass(frozen=True)
class GpuBudget:
    """How many seconds of GPU a call of the web app asks for (ZeroGPU's `duration`): sized from
    the work, and capped. ZeroGPU refuses a call that asks for more than the visitor has left (free
    accounts get a few minutes a day) and ends one that runs past what it asked for, so a run that
    needs more than `max_s` goes as several calls in a row, each continuing the last."""

    # Worker start (on ZeroGPU: fork, weights to the GPU), opening the video, one detection.
    start_s: float = float(_env("SAM3_GPU_START_S", "15"))
    # One propagated frame. Full-size SAM3 on a whole H200 ran 3.2-5.3 frames/s at 720p with 1-20
    # objects allowed (bench/results/gpu-bench-h200-40frames.md); a ZeroGPU slice is half a card.
    per_frame_s: float = float(_env("SAM3_GPU_SECONDS_PER_FRAME", "0.5"))
    # One frame of an earlier run that a continued run copies into its outputs (drawn, exported).
    per_kept_frame_s: float = float(_env("SAM3_GPU_SECONDS_PER_KEPT_FRAME", "0.05"))
    # One click or box replayed on a fresh session.
    per_edit_s: float = float(_env("SAM3_GPU_SECONDS_PER_EDIT", "2"))
    # The most one call may ask for; 0 means no cap. Default: 60 s on ZeroGPU, none elsewhere. The
    # platform multiplies what a call asks by 1.5 on today's hardware before it compares it with the
    # visitor's quota (2 min a day unauthenticated, 5 min on a free account): a 60 s call needs 90 s
    # left, so a visitor who is not logged in can start one, and a run goes on in calls of that size.
    max_s: float = float(_env("SAM3_MAX_GPU_SECONDS", "60" if ON_ZERO_GPU else "0"))
    # Ask from the pace of the calls so far (start-up and seconds per frame) once a call has shown
    # it, instead of the figures above (web/runloop.py `Sizer`).
    learn: bool = _env("SAM3_GPU_LEARN_PACE", "1").lower() not in ("0", "false", "no", "off")

    @property
    def enforced(self) -> bool:
        """Whether a call must end within what it asked for (on ZeroGPU, or with a cap set)."""
        return ON_ZERO_GPU or self.max_s > 0

    def _capped(self, seconds: float) -> int:
        seconds = max(1, math.ceil(seconds))
        return min(seconds, max(1, int(self.max_s))) if self.max_s > 0 else seconds

    def step(self, edits: int) -> int:
        """A detection (or a correction) replayed with `edits` clicks and boxes."""
        return self._capped(self.start_s + self.per_edit_s * edits)

    def run(self, frames: int, kept: int = 0, edits: int = 0) -> int:
        """Propagating `frames` new frames, after copying `kept` frames of an earlier run."""
        return self._capped(self.start_s + self.per_edit_s * edits + self.per_frame_s * frames
                            + self.per_kept_frame_s * kept)

    @staticmethod
    def margin_s(seconds: float) -> float:
        """How long before the end of its time a call stops its run: closing the outputs (the
        frames SAM3 holds back, the video encoder, the annotation files) takes this long at most."""
        return min(seconds / 4, 5 + seconds / 20)
