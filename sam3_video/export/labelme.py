"""labelme / X-AnyLabeling: a JPEG and a JSON per processed frame, in one folder.

`labelme/00012.jpg` + `labelme/00012.json`. Open the folder in X-AnyLabeling or labelme and keep
editing. Per visible object the JSON holds its mask as one polygon per connected part, with the
fields X-AnyLabeling's own SAM3 video tracking writes: `label` = phrase, `group_id` = track id,
`score`, `description`, `difficult`, `flags`, `attributes`, `kie_linking`. Every hole of a part is
cut into its polygon through a zero-width slit, so the filled polygon leaves it out; every part,
however small, has a polygon, traced through the centres of its edge pixels and never simplified,
so filling it with its edge (labelme's `shape_to_mask`, cv2.fillPoly) gives the mask back.

No rectangles: no rectangle opens in both apps. labelme 6.3's canvas asserts a rectangle has 1 or
2 points (its app closes on anything else); X-AnyLabeling warns on 2 points ("Diagonal vertex
mode is deprecated") and wants 4. The box is the polygons' extent, and the coco and mot files
carry it.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..results import EncodedFrame
from .base import AtomicText, ExportContext, dumps, present, write_bytes

FORMAT_VERSION = "5.5.0"  # the labelme JSON layout X-AnyLabeling reads


def mask_to_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """(H, W) bool -> polygons, one per connected part (8-connected), each [[x, y], ...] in pixel
    coordinates, every hole of a part cut into its polygon (see `part_outlines`)."""
    return [outline.tolist() for outline in part_outlines(mask)]


def part_outlines(mask: np.ndarray) -> list[np.ndarray]:
    """(H, W) bool -> one outline per connected part (8-connected), (n, 2) int32 x, y, every hole
    of the part cut in, as traced (corners only, nothing simplified away).

    Outlines follow pixel centres, so filling a polygon with its edge (labelme's `shape_to_mask`,
    cv2.fillPoly) gives back the part; a hole's outline runs through the part's pixels around it,
    so the fill leaves the hole's pixels out, and the slit to it joins it to the nearest pixel of
    the outline and the holes joined before it (see `_slit_together`). Parts too thin to enclose
    an area (a pixel, a line) keep their outline with a point repeated (3 points at least), which
    those fills draw as the pixels themselves.
    """
    pixels = np.asarray(mask, bool).view(np.uint8)  # zero-copy
    x, y, w, h = cv2.boundingRect(pixels)
    if w == 0 or h == 0:
        return []
    # traced inside the mask's rectangle only (a copy of that part), in frame coordinates, every
    # pixel of the outline kept until the holes are cut in (a slit's ends are the nearest pixels)
    contours, hierarchy = cv2.findContours(np.ascontiguousarray(pixels[y : y + h, x : x + w]), cv2.RETR_CCOMP,
                                           cv2.CHAIN_APPROX_NONE, offset=(x, y))
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    polygons = []
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:
            continue  # a hole: cut into its part below
        loops, child = [contour.reshape(-1, 2)], hierarchy[i][2]
        while child != -1:  # the holes of this part
            loops.append(contours[child].reshape(-1, 2))
            child = hierarchy[child][0]
        outline = _corners(_slit_together(loops))
        if len(outline) < 3:  # a pixel or a line of pixels: its points, one repeated
            outline = np.concatenate([outline, outline[:1], outline[:1]])[:3]
        polygons.append(outline)
    return polygons


def _slit_together(loops: list[np.ndarray]) -> np.ndarray:
    """Loops ((n, 2) int arrays: a part's outline, then its holes) -> one outline: each hole joined
    by a zero-width slit (out to it, around it, back) to the nearest point of the loops joined
    before it, the holes nearest the outline first, so a slit's way is not through a hole not
    yet joined (that hole would be nearer, and joined first)."""
    if len(loops) == 1:
        return loops[0]
    points = np.concatenate(loops)
    owner = np.repeat(np.arange(len(loops)), [len(loop) for loop in loops])
    index = np.concatenate([np.arange(len(loop)) for loop in loops])
    by_x = np.argsort(points[:, 0], kind="stable")
    xs = points[by_x, 0]
    outline = loops[0][:: max(1, len(loops[0]) // 512)].astype(np.int64)  # up to 512 points of it
    reach = [((outline[None] - loop[:: max(1, len(loop) // 32), None].astype(np.int64)) ** 2).sum(axis=2).min()
             for loop in loops[1:]]  # about how far each hole is from the outline (up to 32 of its points)
    joined = np.zeros(len(loops), bool)
    joined[0] = True
    slits: list[dict[int, list]] = [{} for _ in loops]  # per loop: point -> the holes (loop, entry) entered there
    for k in 1 + np.argsort(reach, kind="stable"):
        at, j = _nearest_joined(loops[k], points, by_x, xs, joined[owner])
        slits[owner[at]].setdefault(int(index[at]), []).append((k, j))
        joined[k] = True
    return _walk(loops, slits)


def _nearest_joined(hole: np.ndarray, points: np.ndarray, by_x: np.ndarray, xs: np.ndarray,
                    allowed: np.ndarray) -> tuple[int, int]:
    """(row of `points`, index into `hole`) of the nearest pair between the hole and the allowed
    points: only points near the hole's bounding box are compared (a window grown until it holds
    one, then widened to that distance, beyond which no point can be nearer)."""
    lo, hi = hole.min(axis=0), hole.max(axis=0)

    def window(reach: int) -> np.ndarray:
        rows = by_x[np.searchsorted(xs, lo[0] - reach) : np.searchsorted(xs, hi[0] + reach, side="right")]
        y = points[rows, 1]
        return rows[allowed[rows] & (y >= lo[1] - reach) & (y <= hi[1] + reach)]

    reach = 1
    while not len(near := window(reach)):
        reach *= 2
    d = ((points[near, None, :].astype(np.int64) - hole[None, :, :]) ** 2).sum(axis=2)
    near = window(int(np.ceil(np.sqrt(d.min()))))  # any nearer point lies within this of the box
    d = ((points[near, None, :].astype(np.int64) - hole[None, :, :]) ** 2).sum(axis=2)
    k = int(np.argmin(d))
    return int(near[k // len(hole)]), k % len(hole)


def _walk(loops: list[np.ndarray], slits: list[dict]) -> np.ndarray:
    """The joined outline: loop 0 from its first point; at a slit's point, out around the hole
    (from its entry point back to it, its own slits walked on the way) and back to the point."""
    pieces: list[np.ndarray] = []
    stack = [_loop_walk(loops, slits, 0, 0, closed=False)]  # a stack, not recursion: holes nest deep
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
        elif isinstance(step, tuple):
            stack.append(_loop_walk(loops, slits, *step, closed=True))
        else:
            pieces.append(step)
    return np.concatenate(pieces)


def _loop_walk(loops, slits, k: int, start: int, closed: bool):
    """Yields loop k's points from `start` (back to it when `closed`) as arrays, and (hole, entry)
    for each slit on the way, each followed by its point again."""
    loop = loops[k]
    n = len(loop)
    order = (start + np.arange(n + int(closed))) % n
    stops = sorted(((t - start) % n, t) for t in slits[k])
    done = 0
    for pos, t in stops:
        yield loop[order[done : pos + 1]]
        for hole in slits[k][t]:
            yield hole
            yield loop[t : t + 1]
        done = pos + 1
    yield loop[order[done:]]


def _corners(outline: np.ndarray) -> np.ndarray:
    """The points of a closed outline where its step changes (what cv2.CHAIN_APPROX_SIMPLE keeps):
    the same polygon, without the points inside straight runs."""
    if len(outline) < 3:
        return outline
    before = outline - np.roll(outline, 1, axis=0)
    after = np.roll(outline, -1, axis=0) - outline
    return outline[(before != after).any(axis=1)]


def join_outlines(outlines: list[np.ndarray]) -> np.ndarray:
    """Outlines ((n, 2) arrays, an object's parts) -> one (n, 2) outline: the parts, longest first,
    each joined to the nearest of those before it by a zero-width slit, as holes are (for a format
    with one polygon an object)."""
    loops = sorted(outlines, key=len, reverse=True)
    return _slit_together(loops) if loops else np.zeros((0, 2), np.int32)


def _shape(label: str, score: float, points: list, group_id: int) -> dict:
    """One polygon with the fields, in the order, X-AnyLabeling writes them."""
    return {"label": label, "score": score, "points": points, "group_id": group_id, "description": "",
            "difficult": False, "shape_type": "polygon", "flags": {}, "attributes": {}, "kie_linking": []}


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
            shapes += [_shape(r.labels[k], score, polygon, track) for polygon in mask_to_polygons(r.masks[k])]
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
