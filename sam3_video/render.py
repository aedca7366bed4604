"""Overlay drawing: one frame and its `FrameResult` in, a new RGB frame out.

Pure functions with no state: `render` never paints into the caller's frame (which may be a
read-only frame shared with the reader's cache). Colours come from the object id through a fixed
palette, so an object keeps its colour in the video, the preview and the legend.

Speed: masks are blended and outlined only inside each mask's bounding rectangle, so the cost
grows with the area of the objects, not with (number of objects x frame size). The blend is one
`cv2.addWeighted` against a solid colour image, 2.5-5x faster than per-channel arithmetic
(docs/benchmarks-outputs.md).
"""

from __future__ import annotations

import unicodedata
from typing import Protocol, Sequence

import cv2
import numpy as np

from .rle import Crop
from .types import FrameResult

#: 20 RGB colours: 10 hues, each bright and dark, ordered so that ids one or two apart differ by
#: at least ~68 in CIELAB (a difference of ~10 is already plain to see).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (214, 255, 51), (214, 51, 255), (51, 255, 255), (255, 51, 51), (38, 158, 8),
    (38, 8, 158), (158, 98, 8), (51, 255, 133), (8, 68, 158), (255, 173, 51),
    (8, 158, 68), (51, 133, 255), (255, 51, 173), (128, 158, 8), (92, 51, 255),
    (158, 8, 98), (92, 255, 51), (8, 158, 158), (128, 8, 158), (158, 8, 8),
)  # fmt: skip

FONT = cv2.FONT_HERSHEY_SIMPLEX


class Objects(Protocol):
    """What `render` reads of a frame's objects besides their masks: a `FrameResult`, or a
    results.EncodedFrame with its `crops`."""

    @property
    def obj_ids(self) -> np.ndarray: ...
    @property
    def labels(self) -> list[str]: ...
    @property
    def scores(self) -> np.ndarray: ...
    @property
    def boxes_xyxy(self) -> np.ndarray: ...
    @property
    def size(self) -> tuple[int, int]: ...
    def __len__(self) -> int: ...
PREVIEW_SIDE = 1280  # previews (the app's frame, a run's live frame) are at most this many pixels on their long side


def shrink(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """`image` no larger than `side` pixels on its long side (a preview need not be 4K); smaller
    images are returned as they are."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def color_for(obj_id: int) -> tuple[int, int, int]:
    """The RGB colour of an object id: the same id gets the same colour everywhere."""
    return PALETTE[int(obj_id) % len(PALETTE)]


def hex_color(rgb: tuple[int, int, int]) -> str:
    """(255, 51, 51) -> '#ff3333'."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def legend(result: FrameResult) -> list[tuple[int, str, float, str]]:
    """One row per object, in the result's order: (id, label, score, '#rrggbb' colour)."""
    return [
        (int(i), label, float(score), hex_color(color_for(i)))
        for i, label, score in zip(result.obj_ids, result.labels, result.scores)
    ]


def line_width(height: int, width: int) -> int:
    """Outline and box thickness in pixels: 1 for small frames, 2 near 640 wide, 3 from 1080."""
    return int(np.clip(round(max(height, width) / 360), 1, 3))


def text_color(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light backgrounds, white on dark ones (by perceived luminance)."""
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def render(
    frame: np.ndarray,
    result: Objects,
    alpha: float = 0.45,
    outline: bool = True,
    boxes: bool = True,
    labels: bool = True,
    crops: Sequence[Crop] | None = None,
) -> np.ndarray:
    """Draw every object of `result` on a copy of `frame`.

    Args:
        frame: (H, W, 3) uint8 RGB; not modified, may be read-only.
        result: the objects of this frame; masks (n, H, W) bool at the frame's resolution,
            boxes (n, 4) xyxy in pixels of the frame. With `crops`, anything with the objects'
            obj_ids, labels, scores, boxes_xyxy and size (an `EncodedFrame`): its masks are not read.
        alpha: opacity of the mask fill, 0 (none) to 1 (solid colour).
        outline, boxes, labels: draw the mask contour, the box, the "label #id score" tag.
        crops: each mask inside its bounding rectangle when known (an `EncodedFrame.crops`, decoded
            from its run-length encoding inside the rectangle): spares a scan of every mask.

    Returns:
        A new (H, W, 3) uint8 RGB array. Masks are drawn from the lowest score to the highest,
        so the most confident object is on top where masks overlap; boxes and tags come after
        every mask (in the same order) so that no mask hides a tag.

    Raises:
        ValueError: if the frame is not (H, W, 3) uint8 or the masks are of another size.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be an (H, W, 3) uint8 RGB array, got {frame.dtype} {frame.shape}")
    height, width = frame.shape[:2]
    out = np.array(frame, dtype=np.uint8, order="C", copy=True)
    if len(result) == 0:
        return out
    if result.size != (height, width):
        raise ValueError(
            f"masks are {result.size[1]}x{result.size[0]} but the frame is {width}x{height}; "
            "render needs masks at the frame's resolution"
        )
    alpha = float(np.clip(alpha, 0.0, 1.0))
    thickness = line_width(height, width)
    order = np.argsort(result.scores, kind="stable")  # lowest score first, highest on top
    if crops is None:
        if not isinstance(result, FrameResult):
            raise TypeError("render needs a FrameResult (with masks) or the masks' crops")
        crops = [_crop(mask) for mask in result.masks]
    for k in order:
        _draw_mask(out, crops[k], color_for(result.obj_ids[k]), alpha, thickness if outline else 0)
    if boxes or labels:
        for k in order:
            color = color_for(result.obj_ids[k])
            x0, y0, x1, y1 = _box_pixels(result.boxes_xyxy[k], width, height)
            if boxes:
                cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
            if labels:
                text = f"{tag_label(result.labels[k])}#{int(result.obj_ids[k])} {float(result.scores[k]):.2f}"
                _draw_tag(out, text, x0, y0, color)
    return out


def tag_label(label: str) -> str:
    """The label as drawn on the video, followed by a space, or "" when it cannot be drawn.

    OpenCV's font has only ASCII: accents are dropped ("café" -> "cafe"), and a label in another
    script is left out of the tag (which keeps "#id score"); the legend, the app's table and every
    annotation file carry the label as typed."""
    letters = [c for c in unicodedata.normalize("NFKD", label) if not unicodedata.combining(c)]
    if not all(c.isascii() for c in letters):
        return ""
    folded = "".join(letters).strip()
    return f"{folded} " if folded else ""


def _crop(mask: np.ndarray) -> Crop:
    """A full-frame (H, W) bool mask inside its bounding rectangle."""
    return Crop.of_mask(mask, cv2.boundingRect(mask.view(np.uint8)))  # zero-copy: bool and uint8 share a layout


def _draw_mask(out: np.ndarray, crop: Crop, color: tuple[int, int, int], alpha: float, thickness: int) -> None:
    """Blend `color` into `out` (H, W, 3) where the mask (`crop`, inside its bounding rectangle) is
    set, then trace its contour."""
    h, w = crop.pixels.shape
    if w == 0 or h == 0:
        return
    region = crop.of(out)
    inside = np.ascontiguousarray(crop.pixels).view(np.uint8)
    if alpha > 0:  # colour * alpha + region * (1 - alpha), rounded, kept where the mask is
        tint = cv2.addWeighted(region, 1.0 - alpha, _solid(color, h, w), alpha, 0.0)
        cv2.copyTo(tint, inside, region)  # writes into the view of `out`
    if thickness:
        # the outer edge of each part only: outlining every hole of a ragged mask makes the video
        # busy and larger (carphone, 11 frames: 30% more bytes, twice the encoding error)
        contours, _ = cv2.findContours(inside, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(crop.x, crop.y))
        # on `out`, not `region`: a thick line at the mask's edge reaches outside its rectangle
        cv2.drawContours(out, contours, -1, color, thickness, cv2.LINE_8)  # LINE_AA costs 5x


def _solid(color: tuple[int, int, int], h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 image of one colour: one row tiled, then repeated (0.03 ms at 640x272,
    against 1.4 ms for np.full with a colour)."""
    row = np.tile(np.asarray(color, np.uint8), w).reshape(1, w * 3)
    return cv2.repeat(row, h, 1).reshape(h, w, 3)


def _box_pixels(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """xyxy float edges -> the first and last pixel covered, inside the frame."""
    x0, y0, x1, y1 = np.nan_to_num(np.asarray(box, np.float64))
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    left = int(np.clip(np.floor(x0), 0, width - 1))
    top = int(np.clip(np.floor(y0), 0, height - 1))
    right = int(np.clip(np.ceil(x1) - 1, left, width - 1))
    bottom = int(np.clip(np.ceil(y1) - 1, top, height - 1))
    return left, top, right, bottom


def _draw_tag(out: np.ndarray, text: str, x0: int, y0: int, color: tuple[int, int, int]) -> None:
    """A filled tag with `text` above the box top `y0` (below it when there is no room), inside the frame."""
    height, width = out.shape[:2]
    scale = float(np.clip(max(height, width) / 1400, 0.35, 0.7))
    weight = 1 if scale < 0.6 else 2
    (tw, th), base = cv2.getTextSize(text, FONT, scale, weight)
    pad = 2
    tag_w, tag_h = tw + 2 * pad, th + base + 2 * pad
    top = y0 - tag_h if y0 - tag_h >= 0 else min(y0 + 1, max(0, height - tag_h))
    left = int(np.clip(x0, 0, max(0, width - tag_w)))
    cv2.rectangle(out, (left, top), (left + tag_w - 1, top + tag_h - 1), color, cv2.FILLED)
    cv2.putText(out, text, (left + pad, top + pad + th), FONT, scale, text_color(color), weight, cv2.LINE_AA)
