"""What the page shows of a frame: the frame drawn with its objects (the overlay video's colours)
and the clicks made on it, at most PREVIEW_SIDE pixels on its long side, and one row per object
for the table."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np

from ..render import PREVIEW_SIDE, legend, render, shrink, text_color
from ..types import FrameResult, VideoInfo
from .clicks import Mark

#: Colours of the clicks drawn on the frame (RGB): a positive point (and "more like this") green, a
#: negative one (and "not like this") red, a new object's box and a box's first corner white; each
#: with a black rim, to be seen on any frame and over any mask colour.
MARK_COLOURS = {"positive": (0, 220, 0), "negative": (235, 0, 0), "example": (0, 220, 0),
                "counter-example": (235, 0, 0), "box": (255, 255, 255), "corner": (255, 255, 255)}


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


TABLE_HEADERS = ["id", "label", "score", "colour"]


def object_table(rows: Sequence[ObjectRow]):
    """The Objects table: one row per object, its colour cell painted in the object's colour (a
    swatch, the hex code on it in black or white). A pandas Styler: the page shows the colours,
    API clients get the same rows of plain values."""
    import pandas as pd

    frame = pd.DataFrame([[r.id, r.label, round(r.score, 3), r.colour] for r in rows], columns=TABLE_HEADERS)
    return frame.style.map(swatch, subset=["colour"]).format({"score": "{:.3f}"})


def swatch(colour: str) -> str:
    """The style of a table cell painted in `colour` ('#rrggbb'), its text black or white."""
    rgb = (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    return f"background-color: {colour}; color: {'#000' if text_color(rgb) == (0, 0, 0) else '#fff'}"


def draw(image: np.ndarray, result: FrameResult | None, marks: Sequence[Mark] = (),
         highlight: int | None = None) -> np.ndarray:
    """`image` (H, W, 3) uint8 with `result` drawn on it (when given) and the clicks `marks` (video
    pixels) on top, shrunk for the page; a new array. With `highlight` (an object id of `result`)
    that object stands out: the others are drawn faint, it is drawn last, boxed in white and black."""
    if result is not None and highlight is not None and int(highlight) in result.obj_ids.tolist():
        chosen = result.obj_ids == int(highlight)
        out = render(render(image, result.select(~chosen), alpha=0.15), result.select(chosen), alpha=0.6)
        mask = np.ascontiguousarray(result.masks[chosen][0])
        if mask.any():  # around its mask (none on a frame where it is missing)
            x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
            rim = max(1, round(max(image.shape[:2]) / 300))
            corners = (x - 2 * rim, y - 2 * rim), (x + w - 1 + 2 * rim, y + h - 1 + 2 * rim)
            cv2.rectangle(out, *corners, (0, 0, 0), 3 * rim)
            cv2.rectangle(out, *corners, (255, 255, 255), rim)
        result = None
        image = out
    out = shrink(render(image, result) if result is not None else image)
    if marks:
        out = out.copy() if out is image else out
        draw_marks(out, marks, out.shape[1] / image.shape[1])
    return out


def draw_marks(out: np.ndarray, marks: Sequence[Mark], scale: float = 1.0) -> None:
    """Draw `marks` (video pixels, times `scale` for `out`) into `out` in place: points as dots,
    a first corner as a cross, boxes as rectangles; sized from the image, so seen at any size."""
    h, w = out.shape[:2]
    r = max(3, round(max(h, w) / 90))  # a dot's radius: about 1 % of the frame's long side
    thick = max(1, r // 3)
    for kind, xy in marks:
        colour = MARK_COLOURS.get(kind, (255, 255, 255))
        p = [round(v * scale) for v in xy]
        if kind in ("positive", "negative"):
            cv2.circle(out, (p[0], p[1]), r + thick, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, (p[0], p[1]), r, colour, -1, cv2.LINE_AA)
            sign = [((p[0] - r + thick, p[1]), (p[0] + r - thick, p[1]))]
            if kind == "positive":
                sign.append(((p[0], p[1] - r + thick), (p[0], p[1] + r - thick)))
            for a, b in sign:
                cv2.line(out, a, b, (255, 255, 255), thick, cv2.LINE_AA)
        elif kind == "corner":
            for dx, dy in ((1, 0), (0, 1)):
                a, b = (p[0] - 2 * r * dx, p[1] - 2 * r * dy), (p[0] + 2 * r * dx, p[1] + 2 * r * dy)
                cv2.line(out, a, b, (0, 0, 0), thick + 2)
                cv2.line(out, a, b, colour, thick)
        else:
            cv2.rectangle(out, (p[0], p[1]), (p[2], p[3]), (0, 0, 0), thick + 2)
            cv2.rectangle(out, (p[0], p[1]), (p[2], p[3]), colour, thick)


def to_video_pixels(info: VideoInfo, x: float, y: float) -> tuple[float, float]:
    """A click on the (possibly shrunk) preview -> video pixels."""
    scale = max(1.0, max(info.width, info.height) / PREVIEW_SIDE)
    return float(x) * scale, float(y) * scale
