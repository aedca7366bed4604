"""labelme / X-AnyLabeling: a JPEG and a JSON per processed frame, in one folder.

`labelme/00012.jpg` + `labelme/00012.json`. Open the folder in X-AnyLabeling (or labelme) and
keep editing. Per visible object the JSON holds its mask as one polygon per connected part and
its box as a 4-point rectangle (corners clockwise from the top-left, pixel edges: the COCO box),
with the fields X-AnyLabeling's own SAM3 video tracking writes: `label` = phrase, `group_id` =
track id (X-AnyLabeling's MOT export reads it), `score`, `description`, `difficult`, `flags`,
`attributes`, `kie_linking`. Every hole of a part is cut into its polygon through a zero-width
slit, so the filled polygon leaves it out; every part, however small, has a polygon. labelme 6
loads these files too (its own rectangles have 2 points; its `shape_to_mask` wants 2 for a
rectangle, so read a rectangle's extent from min/max of its points).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..results import EncodedFrame
from .base import AtomicText, ExportContext, dumps, present, write_bytes

FORMAT_VERSION = "5.5.0"  # the labelme JSON layout X-AnyLabeling reads
SIMPLIFY_PX = 0.5  # contour simplification tolerance (Douglas-Peucker), in pixels


def mask_to_polygons(mask: np.ndarray) -> list[list[list[float]]]:
    """(H, W) bool -> polygons, one per connected part (8-connected), each [[x, y], ...] in pixel
    coordinates, every hole of a part cut into its polygon (see `part_outlines`)."""
    return [outline.astype(float).tolist() for outline in part_outlines(mask, SIMPLIFY_PX)]


def part_outlines(mask: np.ndarray, simplify_px: float) -> list[np.ndarray]:
    """(H, W) bool -> one outline per connected part (8-connected), (n, 2) int32 x, y, every hole
    of the part cut in, Douglas-Peucker within `simplify_px` (0: as traced).

    Outlines follow pixel centres, so filling a polygon with its edge (labelme's `shape_to_mask`,
    cv2.fillPoly) gives back the part; a hole's outline runs through the part's pixels around it,
    so the fill leaves the hole's pixels out. Parts too thin to enclose an area (a pixel, a line)
    keep their outline with a point repeated (3 points at least), which those fills draw as the
    pixels themselves.
    """
    pixels = np.asarray(mask, bool).view(np.uint8)  # zero-copy
    x, y, w, h = cv2.boundingRect(pixels)
    if w == 0 or h == 0:
        return []
    # traced inside the mask's rectangle only (a copy of that part), in frame coordinates
    contours, hierarchy = cv2.findContours(np.ascontiguousarray(pixels[y : y + h, x : x + w]), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:
            continue  # a hole: cut into its part below
        outline = _simplify(contour, simplify_px)
        holes, child = [], hierarchy[i][2]
        while child != -1:  # the holes of this part, largest first
            holes.append((cv2.contourArea(contours[child]), child))
            child = hierarchy[child][0]
        for _, child in sorted(holes, reverse=True):
            outline = _cut_in(outline, _simplify(contours[child], simplify_px))
        if len(outline) < 3:  # a pixel or a line of pixels: its points, one repeated
            outline = np.concatenate([outline, outline[:1], outline[:1]])[:3]
        polygons.append(outline)
    return polygons


def _simplify(contour: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker within `tolerance` px, for an outline people can edit (0: as traced, corners
    only); kept as traced when that would leave fewer than 3 points."""
    if tolerance <= 0:
        return contour.reshape(-1, 2)
    points = cv2.approxPolyDP(contour, tolerance, True).reshape(-1, 2)
    return points if len(points) >= 3 else contour.reshape(-1, 2)


def join_outlines(outlines: list[np.ndarray]) -> np.ndarray:
    """Outlines ((n, 2) arrays, an object's parts) -> one (n, 2) outline: the parts, longest first,
    each joined to the outline so far by a zero-width slit, as holes are (for a format with one
    polygon an object)."""
    loops = sorted(outlines, key=len, reverse=True)
    if not loops:
        return np.zeros((0, 2), np.int32)
    outline = loops[0]
    for loop in loops[1:]:
        outline = _cut_in(outline, loop)
    return outline


def _cut_in(outline: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join a hole to its outline at (nearly) their closest points: out to the hole, around it, back."""
    step = max(1, len(hole) // 32)  # up to 32 points of the hole are tried as the slit's end
    along = max(1, len(outline) // 512)  # and up to 512 of the outline (it grows with every hole)
    o, h = outline[::along].astype(np.int32), hole[::step].astype(np.int32)
    dx, dy = o[:, 0, None] - h[None, :, 0], o[:, 1, None] - h[None, :, 1]
    i, j = np.unravel_index(int(np.argmin(dx * dx + dy * dy)), dx.shape)
    i, j = i * along, j * step
    hole_loop = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outline[: i + 1], hole_loop, outline[i:]])


def _shape(label: str, score: float, points: list, group_id: int, shape_type: str) -> dict:
    """One shape with the fields, in the order, X-AnyLabeling writes them."""
    return {"label": label, "score": score, "points": points, "group_id": group_id, "description": "",
            "difficult": False, "shape_type": shape_type, "flags": {}, "attributes": {}, "kie_linking": []}


class LabelmeWriter:
    files = ("labelme/",)
    needs_image = True  # ships the frames: the pipeline decodes each one on the model's thread

    def __init__(self, folder: str, context: ExportContext):
        self.dir = os.path.join(folder, "labelme")
        os.makedirs(self.dir, exist_ok=True)
        self.context = context

    def write(self, frame: EncodedFrame) -> None:
        r, info = frame.result, self.context.info
        name = self.context.frame_name(r.frame_index)
        write_bytes(os.path.join(self.dir, f"{name}.jpg"), frame.jpeg)
        shapes = []
        for k in present(frame):
            score, track = round(float(r.scores[k]), 4), int(r.obj_ids[k])
            for polygon in mask_to_polygons(r.masks[k]):
                shapes.append(_shape(r.labels[k], score, polygon, track, "polygon"))
            x, y, w, h = frame.boxes[k]  # pixel edges: x .. x + w covers the mask's columns
            corners = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]  # X-AnyLabeling's 4-point form
            shapes.append(_shape(r.labels[k], score, corners, track, "rectangle"))
        doc = {
            "version": FORMAT_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": f"{name}.jpg",
            "imageData": None,
            "imageHeight": info.height,
            "imageWidth": info.width,
            "description": "",
        }
        out = AtomicText(os.path.join(self.dir, f"{name}.json"))
        out.write(dumps(doc))
        out.commit()

    def close(self) -> None:
        pass
