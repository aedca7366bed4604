"""Two decorators between Gradio and the package, kept out of app.py's layout.

`user_errors` turns a `Sam3VideoError` (a sentence for the user) into `gr.Error`, for plain and
generator handlers. `gpu(duration)` is `spaces.GPU(duration=...)` on Hugging Face ZeroGPU (where a
GPU is attached only inside such calls; `duration` may be a callable sized per call) and does
nothing elsewhere.
"""

from __future__ import annotations

import functools
import inspect
import os

import gradio as gr

from .errors import Sam3VideoError


def gpu(duration_s):
    if not os.environ.get("SPACES_ZERO_GPU"):
        return lambda fn: fn
    import spaces

    return spaces.GPU(duration=duration_s)


def user_errors(fn):
    """Sam3VideoError -> gr.Error with its sentence; anything else is left to Gradio."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Sam3VideoError as err:
                raise gr.Error(str(err)) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Sam3VideoError as err:
            raise gr.Error(str(err)) from None

    return wrapper
