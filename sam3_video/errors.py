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
