"""MOTChallenge box tracks (plus CVAT's MOT 1.1 layout) and MOTS mask tracks, sorted by frame.

`mot.txt`, one line per visible object (MOTChallenge result format, for TrackEval and
py-motmetrics; frames and pixel coordinates count from 1, as in MOTChallenge files; the box is the
mask's, in whole pixels):
    frame,id,bb_left,bb_top,bb_width,bb_height,conf,-1,-1,-1
`mot/gt/gt.txt` + `mot/gt/labels.txt` (MOT 1.1 ground truth as CVAT imports it through datumaro's
`mot_seq`, as tracks):
    frame,id,x,y,w,h,1,class,1
frames from 1 (CVAT's frame = video frame index = frame - 1), x, y the box's top-left pixel
counted from 0 (what CVAT's MOT 1.1 export writes and its import reads, unshifted), confidence 1
(not ignored), class = the line of `labels.txt` (from 1) naming the phrase, visibility 1.
`mots.txt` (MOTS format; frames from 1 as in MOTSChallenge):
    frame id class_id img_height img_width rle
where rle is a COCO RLE string and class_id the phrase's MOTS class: MOTS tools read 1 as car,
2 as pedestrian and 10 as an ignore region, so phrases take 3..9, 11, 12, ... in prompt order
(`mots_labels.txt`: "class_id name" per line; manifest.json `mots.class_ids`). MOTS allows one
object per pixel, so where masks overlap the higher-scoring object keeps the pixel.
"""

from __future__ import annotations

import os

from ..results import EncodedFrame, encode_mask
from .base import AtomicText, ExportContext, Spill, present

MOTS_RESERVED = (1, 2, 10)  # car, pedestrian, ignore region


def mots_class(category_id: int) -> int:
    """Category 1, 2, ... -> MOTS class 3..9, 11, 12, ... (the reserved values skipped)."""
    n = category_id + 2
    return n + 1 if n >= 10 else n


class MotWriter:
    files = ("mot.txt", "mot/gt/gt.txt", "mot/gt/labels.txt")

    def __init__(self, folder: str, context: ExportContext):
        self.path, self.gt_path, self.labels_path = (os.path.join(folder, f) for f in self.files)
        os.makedirs(os.path.dirname(self.gt_path), exist_ok=True)
        self.context = context
        self._spill = Spill(folder, "mot")
        self._gt = Spill(folder, "mot-gt")

    def write(self, frame: EncodedFrame) -> None:
        r = frame.result
        lines, gt = [], []
        for k in present(frame):
            x, y, w, h = frame.boxes[k]
            obj_id, frame_id = int(r.obj_ids[k]), r.frame_index + 1
            lines.append(f"{frame_id},{obj_id},{x + 1},{y + 1},{w},{h},{float(r.scores[k]):.4f},-1,-1,-1")
            gt.append(f"{frame_id},{obj_id},{x},{y},{w},{h},1,{self.context.categories.id_of(r.labels[k])},1")
        self._spill.add(r.frame_index, lines)
        self._gt.add(r.frame_index, gt)

    def close(self) -> None:
        _write_sorted(self._spill, self.path)
        _write_sorted(self._gt, self.gt_path)
        labels = AtomicText(self.labels_path)
        labels.write("".join(f"{c['name']}\n" for c in self.context.categories.as_list()))
        labels.commit()


class MotsWriter:
    files = ("mots.txt", "mots_labels.txt")

    def __init__(self, folder: str, context: ExportContext):
        self.path, self.labels_path = (os.path.join(folder, f) for f in self.files)
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
            category = mots_class(self.context.categories.id_of(r.labels[k]))
            lines.append(f"{r.frame_index + 1} {obj_id} {category} {h} {w} {rle['counts']}")
        self._spill.add(r.frame_index, lines)

    def close(self) -> None:
        _write_sorted(self._spill, self.path)
        labels = AtomicText(self.labels_path)
        labels.write("".join(f"{cls} {name}\n" for cls, name in self._classes().items()))
        labels.commit()

    def _classes(self) -> dict[int, str]:
        return {mots_class(c["id"]): c["name"] for c in self.context.categories.as_list()}

    def manifest(self) -> dict:
        return {"class_ids": {str(cls): name for cls, name in self._classes().items()},
                "reserved": {"1": "car", "2": "pedestrian", "10": "ignore region"}}


def _write_sorted(spill: Spill, path: str) -> None:
    out = AtomicText(path)
    for key in spill.keys():
        for lines in spill.get(key):
            for line in lines:
                out.write(line + "\n")
    out.commit()
    spill.close()
