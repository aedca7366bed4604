"""Errors a person can act on.

Every error raised on purpose by this package is a `Sam3VideoError` whose message is one or two
plain sentences: what was wrong and what to do. The doors (CLI, app, batch) show that message and
never a traceback.
"""

from __future__ import annotations


class Sam3VideoError(Exception):
    """Base class: `str(err)` is the sentence to show to the user."""


class ModelUnavailableError(Sam3VideoError):
    """The model could not be found, downloaded or loaded."""


class VideoReadError(Sam3VideoError):
    """The input is not a video this package can decode."""


class BadRequestError(Sam3VideoError):
    """Prompts, frame numbers or options that do not fit the video or the backend."""


class BackendUnavailableError(Sam3VideoError):
    """The chosen backend cannot run here (missing package, no CUDA, ...)."""


class VideoWriteError(Sam3VideoError):
    """The output video could not be encoded or written (ffmpeg failed, disk full, bad path)."""


class OutOfMemoryError(Sam3VideoError):
    """The GPU (or the CPU) ran out of memory inside the model; the frames done are kept."""


OUT_OF_MEMORY_ADVICE = ("Track fewer objects (raise the threshold or remove some), use a shorter frame range or a "
                        "smaller video, or wait until the GPU is free, then run again.")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation failure: torch's (CUDA or CPU allocator) or Python's own."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
