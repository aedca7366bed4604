"""MOTChallenge box tracks and MOTS mask tracks, one text file each, sorted by frame.

`mot.txt`, one line per visible object (MOTChallenge result format; frames and pixel coordinates
count from 1, as in MOTChallenge files; the box is the mask's, in whole pixels):
    frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1
`mots.txt` (MOTS format; frames from 1 as in MOTSChallenge):
    frame id class_id img_height img_width rle
where class_id is the phrase's category id and rle a COCO RLE string. MOTS allows one object per
pixel, so where masks overlap the higher-scoring object keeps the pixel.
"""

from __future__ import annotations

import os

from ..results import EncodedFrame, encode_mask
from .base import AtomicText, ExportContext, Spill, present


class MotWriter:
    files = ("mot.txt",)

    def __init__(self, folder: str, context: ExportContext):
        self.path = os.path.join(folder, self.files[0])
        self._spill = Spill(folder, "mot")

    def write(self, frame: EncodedFrame) -> None:
        r = frame.result
        lines = []
        for k in present(frame):
            x, y, w, h = frame.boxes[k]
            lines.append(f"{r.frame_index + 1},{int(r.obj_ids[k])},{x + 1},{y + 1},{w},{h},{float(r.scores[k]):.4f},-1,-1,-1")
        self._spill.add(r.frame_index, lines)

    def close(self) -> None:
        _write_sorted(self._spill, self.path)


class MotsWriter:
    files = ("mots.txt",)

    def __init__(self, folder: str, context: ExportContext):
        self.path = os.path.join(folder, self.files[0])
        self.context = context
        self._spill = Spill(folder, "mots")

    def write(self, frame: EncodedFrame) -> None:
        r = frame.result
        lines = []
        h, w = r.size
        for k in present(frame):
            obj_id = int(r.obj_ids[k])
            rle = frame.rles[k]
            if frame.overlaps:  # only the pixels this object keeps
                kept = frame.id_image == obj_id
                if not kept.any():
                    continue  # hidden entirely behind higher-scoring objects
                rle = encode_mask(kept)
            category = self.context.categories.id_of(r.labels[k])
            lines.append(f"{r.frame_index + 1} {obj_id} {category} {h} {w} {rle['counts']}")
        self._spill.add(r.frame_index, lines)

    def close(self) -> None:
        _write_sorted(self._spill, self.path)


def _write_sorted(spill: Spill, path: str) -> None:
    out = AtomicText(path)
    for key in spill.keys():
        for lines in spill.get(key):
            for line in lines:
                out.write(line + "\n")
    out.commit()
    spill.close()
