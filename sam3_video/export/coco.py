"""COCO instances JSON: one image per processed frame, one annotation per visible object.

`coco_instances.json`:
    images:      {id: frame_index + 1, file_name: "00012.jpg", frame_index, height, width}
    annotations: {id, image_id, category_id, segmentation: COCO RLE, area, bbox: [x, y, w, h] of that mask
                  (pycocotools' toBbox: whole pixels, w = max x - min x + 1),
                  iscrowd: 0, score, track_id, attributes: {occluded: false, rotation: 0.0,
                  track_id, keyframe: true, score}}
    categories:  {id, name} - the phrases, in prompt order
`file_name` matches the frames written by the labelme format (annotations/labelme/).
`coco/`: the same JSON in COCO's standard dataset layout, which datumaro's `coco_instances`
importer detects (it wants `annotations/instances_<subset>.json` with `images/` beside it) and
other COCO loaders take (annotation file + image root):
    coco/annotations/instances_default.json
    coco/images/default/00012.jpg        the processed frames ("default": datumaro's and CVAT's subset)

CVAT's COCO 1.0 import (datumaro's `coco_instances`) reads the per-annotation `attributes`, not the
top-level fields: a shape with `track_id` and `keyframe` there joins a track, so each object
arrives in CVAT as one track (its mask on every frame it is visible, "outside" in the gaps),
matched to frames by `file_name` (a task from the labelme frames, or from the video: 00012 is
frame 12). The attributes are what CVAT's own COCO export writes, plus the score.
"""

from __future__ import annotations

import os

from ..results import EncodedFrame
from ..version import __version__
from .base import AtomicText, ExportContext, Spill, Writer, dumps, present, write_bytes

SUBSET = "default"  # the subset name datumaro and CVAT give a dataset of one subset


def cvat_attributes(track_id: int, score: float) -> dict:
    return {"occluded": False, "rotation": 0.0, "track_id": track_id, "keyframe": True, "score": round(score, 4)}


class CocoWriter(Writer):
    files = ("coco_instances.json", "coco/")
    described = ("`coco_instances.json`: one image per frame (`file_name` 00012.jpg, the labelme frames), "
                  "annotations with RLE `segmentation`, `bbox`, `area`, `category_id`, `score`, `track_id`, "
                  "and `attributes` (`track_id`, `keyframe`, `occluded`, `rotation`, `score`: CVAT's own COCO "
                  "fields); `coco/`: the same JSON in COCO's standard layout, "
                  "`coco/annotations/instances_default.json` beside the frames in `coco/images/default/`")
    opens_in = ("pycocotools, COCO tools; CVAT (Upload annotations, COCO 1.0: one track per object); datumaro "
                "(`coco_instances`) and other COCO dataset loaders (the `coco/` folder)")
    needs_image = True  # coco/images/: decoded by the writer's own video reader (writing.py)

    def __init__(self, folder: str, context: ExportContext):
        self.path = os.path.join(folder, self.files[0])
        self.standard = os.path.join(folder, "coco", "annotations", f"instances_{SUBSET}.json")
        self.image_dir = os.path.join(folder, "coco", "images", SUBSET)
        os.makedirs(os.path.dirname(self.standard), exist_ok=True)
        os.makedirs(self.image_dir, exist_ok=True)
        super().__init__(folder, context)
        self._spill = Spill(folder, "coco")

    def write(self, frame: EncodedFrame) -> None:
        r, info = frame, self.context.info
        write_bytes(os.path.join(self.image_dir, f"{self.context.frame_name(r.frame_index)}.jpg"), frame.jpeg)
        image = {
            "id": r.frame_index + 1,
            "file_name": f"{self.context.frame_name(r.frame_index)}.jpg",
            "frame_index": r.frame_index,
            "height": info.height,
            "width": info.width,
        }
        annotations = [
            {
                "image_id": r.frame_index + 1,
                "category_id": self.context.categories.id_of(r.labels[k]),
                "segmentation": frame.rles[k],
                "area": frame.areas[k],
                "bbox": frame.boxes[k],
                "iscrowd": 0,
                "score": round(float(r.scores[k]), 4),
                "track_id": int(r.obj_ids[k]),
                "attributes": cvat_attributes(int(r.obj_ids[k]), float(r.scores[k])),
            }
            for k in present(frame)
        ]
        self._spill.add(r.frame_index, [image, annotations])

    def close(self) -> None:
        outs = [AtomicText(self.path), AtomicText(self.standard)]  # one text, two places

        def write(text: str) -> None:
            for out in outs:
                out.write(text)

        info = {"description": f"{self.context.video_name}: SAM3 video segmentation", "version": __version__}
        write('{"info":' + dumps(info) + ',"licenses":[],"categories":' + dumps(self.context.categories.as_list()))
        keys = self._spill.keys()
        write(',"images":[' + ",".join(dumps(self._spill.get(k)[0][0]) for k in keys) + "]")
        write(',"annotations":[')
        next_id, first = 1, True
        for key in keys:
            for ann in self._spill.get(key)[0][1]:
                write(("" if first else ",") + dumps({"id": next_id, **ann}))
                next_id, first = next_id + 1, False
        write("]}")
        for out in outs:
            out.commit()
        self._spill.close()
