"""What the page shows of a frame: the frame drawn with its objects (the overlay video's colours),
at most PREVIEW_SIDE pixels on its long side, and one row per object for the table."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..render import PREVIEW_SIDE, legend, render, shrink
from ..types import FrameResult, VideoInfo


class ObjectRow(NamedTuple):
    id: int
    label: str
    score: float
    colour: str  # '#rrggbb', the object's colour in the frame and the video


class Preview(NamedTuple):
    """A frame for the page, its objects, and a sentence about what just happened."""

    image: np.ndarray
    objects: list[ObjectRow]
    said: str = ""


def object_rows(result: FrameResult) -> list[ObjectRow]:
    return [ObjectRow(*row) for row in legend(result)]


def draw(image: np.ndarray, result: FrameResult | None) -> np.ndarray:
    """`image` with `result` drawn on it (when given), shrunk for the page."""
    return shrink(render(image, result) if result is not None else image)


def to_video_pixels(info: VideoInfo, x: float, y: float) -> tuple[float, float]:
    """A click on the (possibly shrunk) preview -> video pixels."""
    scale = max(1.0, max(info.width, info.height) / PREVIEW_SIDE)
    return float(x) * scale, float(y) * scale
