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
from typing import Any


from ..results import EncodedFrame
from .base import AtomicText, ExportContext, Writer, dumps, present, write_bytes
from .outlines import Box, Mask, part_outlines_packed

FORMAT_VERSION = "5.5.0"  # the labelme JSON layout X-AnyLabeling reads


def mask_to_polygons(mask: Mask, box: Box | None = None) -> list[list[list[int]]]:
    """(H, W) bool (or a `Crop` of one) -> polygons, one per connected part (8-connected), each [[x, y], ...] in pixel
    coordinates, every hole of a part cut in (see `outlines.part_outlines`)."""
    outlines, ends = part_outlines_packed(mask, box)
    points = outlines.tolist()
    return [points[a:b] for a, b in zip([0, *ends[:-1].tolist()], ends.tolist())]


def _shape(label: str, score: float, points: list, group_id: int) -> dict:
    """One polygon with the fields, in the order, X-AnyLabeling writes them."""
    return {"label": label, "score": score, "points": points, "group_id": group_id, "description": "",
            "difficult": False, "shape_type": "polygon", "flags": {}, "attributes": {}, "kie_linking": []}


class LabelmeWriter(Writer):
    files = ("labelme/",)
    described = ("`labelme/00012.jpg` + `labelme/00012.json`: polygons (one per part, however small; every "
                  "hole cut in; traced, never simplified: they fill back to the mask), `label` = phrase, "
                  "`group_id` = id, `score`, and the other fields X-AnyLabeling writes; no rectangles (no "
                  "form opens in both apps)")
    opens_in = "X-AnyLabeling, labelme (open the folder and keep editing)"
    needs_image = True  # ships the frames: decoded by the writer's own video reader (writing.py)

    def __init__(self, folder: str, context: ExportContext):
        self.dir = os.path.join(folder, "labelme")
        os.makedirs(self.dir, exist_ok=True)
        super().__init__(folder, context)

    def write(self, frame: EncodedFrame) -> None:
        r, info = frame, self.context.info
        name = self.context.frame_name(r.frame_index)
        write_bytes(os.path.join(self.dir, f"{name}.jpg"), frame.jpeg)
        shapes = []
        for k in present(frame):
            score, track = round(float(r.scores[k]), 4), int(r.obj_ids[k])
            shapes += [_shape(r.labels[k], score, polygon, track)
                       for polygon in mask_to_polygons(frame.crops[k])]
        doc: dict[str, Any] = {
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
