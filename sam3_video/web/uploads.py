"""An upload, checked against the app's limits before any work, and the visitor's own link to it."""

from __future__ import annotations

import os
import shutil

from ..config import AppLimits
from ..errors import BadRequestError
from ..types import VideoInfo
from ..video import probe


def check_video(path: str, limits: AppLimits) -> VideoInfo:
    """The video's facts, or a sentence when it is missing, too large or too long for this server."""
    if not path:
        raise BadRequestError("Upload a video (or pick an example) first.")
    if not os.path.isfile(path):
        raise BadRequestError(f"The uploaded video is no longer on the server (uploads are kept for "
                              f"{limits.session_ttl_s / 60:.0f} minutes). Upload it again.")
    size_mb = os.path.getsize(path) / 2**20
    if size_mb > limits.max_upload_mb:
        raise BadRequestError(f"This file is {size_mb:.0f} MB; this server takes videos up to "
                              f"{limits.max_upload_mb} MB. Trim or compress it first.")
    info = probe(path)
    if info.duration > limits.max_video_seconds or info.num_frames > limits.max_video_frames:
        raise BadRequestError(
            f"This video is {info.duration:.0f} s long ({info.num_frames} frames); this server takes up to "
            f"{limits.max_video_seconds:.0f} s and {limits.max_video_frames} frames. Trim it, or run "
            "the CLI on your own machine for long videos."
        )
    return info


def keep_upload(folder: str, path: str) -> str:
    """The visitor's own link to (or copy of) the upload, in `folder`/video/: Gradio deletes its
    cached uploads on a clock of its own, and the workspace lives exactly as long as the visitor.
    The file keeps its name: the exports quote it."""
    videos = os.path.join(folder, "video")
    kept = os.path.join(videos, os.path.basename(path))
    if os.path.abspath(path) == kept:
        return kept
    shutil.rmtree(videos, ignore_errors=True)
    os.makedirs(videos)
    try:
        os.link(os.path.realpath(path), kept)  # the file itself, also when `path` is a symbolic link
    except OSError:  # another file system (or no hard links): copy
        shutil.copyfile(path, kept)
    return kept
