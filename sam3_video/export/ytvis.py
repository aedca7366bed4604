"""YouTube-VIS: a results file for VIS evaluators and a ground-truth file, with the frames.

The exported "video" is exactly the frames that were processed, in frame order; position k in
every per-frame list is the k-th of those frames (`frame_indices` in the video record says which).

`ytvis_results.json` (a list, as YouTube-VIS evaluators read it):
    {video_id: 1, category_id, score (mean over the frames it is visible), track_id,
     segmentations: [COCO RLE or null per frame], bboxes: [[x, y, w, h] of the mask (toBbox) or null], areas: [int or null]}
`ytvis_dataset.json` (ground-truth layout, as YouTube-VIS's own files: usable as ground truth by
TrackEval's YouTube-VIS loader and the YouTube-VIS API, or for training):
    videos: [{id: 1, name, file_names: ["<name>/00012.jpg", ...], height, width, length, frame_indices}]
    categories: [{id, name}], annotations: [{id: track id, video_id, category_id, segmentations:
    [uncompressed RLE {size, counts: [int, ...]} or null per frame], bboxes, areas, iscrowd: 0,
    height, width, length}]
`JPEGImages/<name>/00012.jpg`: the frames, so `file_names` resolve under the image root
`JPEGImages/` beside the JSON files (YouTube-VIS's own layout: `<root>/JPEGImages/<video>/<frame>.jpg`).
The results file keeps compressed RLE (what evaluators read there); the ground-truth file has
integer counts because ground-truth loaders pass them to `pycocotools.mask.frPyObjects`.
"""

from __future__ import annotations

import os

from ..rle import counts as rle_counts
from ..results import EncodedFrame
from ..version import __version__
from .base import (
    AtomicText,
    ExportContext,
    Spill,
    dumps,
    present,
    Writer,
    write_bytes,
)

IMAGE_ROOT = "JPEGImages"


class YtvisWriter(Writer):
    files = ("ytvis_results.json", "ytvis_dataset.json", f"{IMAGE_ROOT}/")
    described = ("`ytvis_results.json` (results list: `video_id, category_id, score, segmentations` "
                  "compressed RLE or null per frame, `bboxes`, `areas`), `ytvis_dataset.json` (`videos, "
                  "categories, annotations`: the run as ground truth, segmentations in uncompressed RLE) and "
                  "`JPEGImages/<video>/00012.jpg`, the frames its `file_names` name")
    opens_in = "YouTube-VIS API, TrackEval (results and ground truth), VIS training loaders"
    needs_image = True  # ships the frames: decoded by the writer's own video reader (writing.py)

    def __init__(self, folder: str, context: ExportContext):
        self.results_path, self.dataset_path = (os.path.join(folder, f) for f in self.files[:2])
        super().__init__(folder, context)
        self.image_dir = os.path.join(folder, IMAGE_ROOT, context.video_name)
        os.makedirs(self.image_dir, exist_ok=True)
        self._spill = Spill(folder, "ytvis")  # key: track id; records: [frame, rle, box, area, score]
        self._frames: set[int] = set()
        self._label: dict[int, str] = {}

    def write(self, frame: EncodedFrame) -> None:
        r = frame
        self._frames.add(r.frame_index)
        write_bytes(os.path.join(self.image_dir, f"{self.context.frame_name(r.frame_index)}.jpg"), frame.jpeg)
        for k in present(frame):
            obj_id = int(r.obj_ids[k])
            self._label.setdefault(obj_id, r.labels[k])
            self.context.categories.id_of(r.labels[k])
            self._spill.add(obj_id, [r.frame_index, frame.rles[k], frame.boxes[k], frame.areas[k],
                                     round(float(r.scores[k]), 4)])

    def close(self) -> None:
        ctx, info = self.context, self.context.info
        frames = sorted(self._frames)
        position = {f: k for k, f in enumerate(frames)}
        n = len(frames)
        results, dataset = AtomicText(self.results_path), AtomicText(self.dataset_path)
        video = {
            "id": 1,
            "name": ctx.video_name,
            "file_names": [f"{ctx.video_name}/{ctx.frame_name(f)}.jpg" for f in frames],
            "height": info.height,
            "width": info.width,
            "length": n,
            "frame_indices": frames,
        }
        meta = {"description": f"{ctx.video_name}: SAM3 video segmentation", "version": __version__}
        dataset.write('{"info":' + dumps(meta) + ',"licenses":[],"videos":[' + dumps(video) + "]")
        dataset.write(',"categories":' + dumps(ctx.categories.as_list()) + ',"annotations":[')
        results.write("[")
        for count, obj_id in enumerate(self._spill.keys()):
            segmentations, bboxes, areas = [None] * n, [None] * n, [None] * n
            scores = []
            for frame_index, rle, box, area, score in self._spill.get(obj_id):
                k = position[frame_index]
                segmentations[k], bboxes[k], areas[k] = rle, box, area
                scores.append(score)
            category = ctx.categories.id_of(self._label[obj_id])
            tracks = {"segmentations": segmentations, "bboxes": bboxes, "areas": areas}
            sep = "," if count else ""
            results.write(sep + dumps({"video_id": 1, "category_id": category,
                                       "score": round(sum(scores) / len(scores), 4), "track_id": obj_id, **tracks}))
            truth = [None if rle is None else {"size": rle["size"], "counts": rle_counts(rle).tolist()}
                     for rle in segmentations]
            dataset.write(sep + dumps({"id": obj_id, "video_id": 1, "category_id": category, **tracks,
                                       "segmentations": truth, "iscrowd": 0, "height": info.height,
                                       "width": info.width, "length": n}))
        results.write("]")
        dataset.write("]}")
        results.commit()
        dataset.commit()
        self._spill.close()

    def manifest(self) -> dict:
        return {"image_root": IMAGE_ROOT, "ground_truth_rle": "uncompressed (integer counts)",
                "results_rle": "compressed (COCO string counts)"}
