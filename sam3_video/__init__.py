"""sam3-video: find and track every instance of text-described objects through a video with SAM3.

    from sam3_video import VideoSession, load_backend
    backend = load_backend("facebook/sam3")          # or a local folder
    with VideoSession("clip.mp4", backend) as s:
        s.detect(0, "car, person")
        for result in s.propagate("forward"):       # FrameResult per frame
            ...
"""

from .errors import Sam3VideoError
from .types import FrameResult, RunOptions, VideoInfo
from .version import __version__


def __getattr__(name):  # heavy imports (torch, transformers) only when used
    if name == "VideoSession":
        from .session import VideoSession

        return VideoSession
    if name == "load_backend":
        from .backends import load_backend

        return load_backend
    if name == "run":
        from .pipeline import run

        return run
    raise AttributeError(name)


__all__ = ["__version__", "FrameResult", "RunOptions", "VideoInfo", "Sam3VideoError", "VideoSession", "load_backend", "run"]
