"""labelme / X-AnyLabeling: a JPEG and a JSON per processed frame, in one folder.

`labelme/00012.jpg` + `labelme/00012.json`. Open the folder in X-AnyLabeling (or labelme) and
keep editing. Per visible object the JSON holds its mask as one polygon per connected part and
its box as a rectangle, all with `label` = phrase, `group_id` = track id (X-AnyLabeling's MOT
export reads it) and `score`. The larger holes of a part (at least `MIN_HOLE` pixels and
`MIN_HOLE_SHARE` of the part, `MAX_HOLES` at most) are cut into its polygon through a
zero-width slit, so the filled polygon leaves them out; smaller holes are filled in.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..results import EncodedFrame
from .base import AtomicText, ExportContext, dumps, present, write_bytes

FORMAT_VERSION = "5.5.0"  # the labelme JSON layout X-AnyLabeling reads
MIN_PART = 4  # pixels: smaller specks become no polygon
MIN_HOLE = 16  # pixels
MIN_HOLE_SHARE = 0.01  # of the part's area
MAX_HOLES = 8  # per part: a polygon with many slits is hard to edit, and each costs time
SIMPLIFY_PX = 0.7  # contour simplification tolerance (Douglas-Peucker), in pixels


def mask_to_polygons(mask: np.ndarray) -> list[list[list[float]]]:
    """(H, W) bool -> polygons, one per connected part, each [[x, y], ...] in pixel coordinates.

    Part outlines follow pixel centres, so filling a polygon (pixels on its edge included, as
    labelme and cv2.fillPoly do) gives back the part.
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
        if hierarchy[i][3] != -1 or cv2.contourArea(contour) + len(contour) < MIN_PART:
            continue  # a hole (handled with its part) or a speck
        outline = _simplify(contour)
        holes, child = [], hierarchy[i][2]
        while child != -1:  # the holes of this part
            holes.append((cv2.contourArea(contours[child]), child))
            child = hierarchy[child][0]
        least = max(MIN_HOLE, MIN_HOLE_SHARE * cv2.contourArea(contour))
        for area, child in sorted(holes, reverse=True)[:MAX_HOLES]:
            if area >= least:
                outline = _cut_in(outline, _simplify(contours[child]))
        if len(outline) >= 3:
            polygons.append(outline.astype(float).tolist())
    return polygons


def _simplify(contour: np.ndarray) -> np.ndarray:
    points = cv2.approxPolyDP(contour, SIMPLIFY_PX, True).reshape(-1, 2)
    return points if len(points) >= 3 else contour.reshape(-1, 2)


def _cut_in(outline: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Join a hole to its outline at (nearly) their closest points: out to the hole, around it, back."""
    step = max(1, len(hole) // 32)  # up to 32 points of the hole are tried as the slit's end
    o, h = outline.astype(np.int32), hole[::step].astype(np.int32)
    dx, dy = o[:, 0, None] - h[None, :, 0], o[:, 1, None] - h[None, :, 1]
    i, j = np.unravel_index(int(np.argmin(dx * dx + dy * dy)), dx.shape)
    j *= step
    hole_loop = np.concatenate([hole[j:], hole[: j + 1]])
    return np.concatenate([outline[: i + 1], hole_loop, outline[i:]])


class LabelmeWriter:
    files = ("labelme/",)

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
            common = {"label": r.labels[k], "group_id": int(r.obj_ids[k]), "description": "", "flags": {},
                      "score": round(float(r.scores[k]), 4)}
            for polygon in mask_to_polygons(r.masks[k]):
                shapes.append({**common, "shape_type": "polygon", "points": polygon})
            x, y, w, h = frame.boxes[k]  # pixel edges: x .. x + w covers the mask's columns
            shapes.append({**common, "shape_type": "rectangle",
                           "points": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]})
        doc = {
            "version": FORMAT_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": f"{name}.jpg",
            "imageData": None,
            "imageHeight": info.height,
            "imageWidth": info.width,
        }
        out = AtomicText(os.path.join(self.dir, f"{name}.json"))
        out.write(dumps(doc))
        out.commit()

    def close(self) -> None:
        pass
