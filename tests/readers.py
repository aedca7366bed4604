"""Reading rules of tools that are not installable packages, re-implemented faithfully for tests.

DAVIS 2017 semi-supervised evaluator (davisvideochallenge/davis2017-evaluation: `davis.py`
`_get_all_elements` / `get_all_masks`, `results.py` `read_masks`, `evaluation.py`
`_evaluate_semisupervised`, `metrics.py` `db_eval_iou`):
  - a sequence's PNGs are read in sorted file order, each as `np.array(Image.open(png))` (the
    palette index per pixel) into one float64 array;
  - ground truth: 255 (void) is set to 0; the number of objects is the largest index on the FIRST
    frame; index v is object v, through a float64 array objects x frames x H x W; the first and
    the last frame are then dropped;
  - results are read for the frames left (all but the first and the last); their number of
    objects is the largest index over those frames (255 is not special there);
  - a different number of objects in the results than in the ground truth stops the evaluation
    ("In your PNG files there is an index higher than the number of objects in the sequence!");
  - J per object and frame is the IoU; a frame where both masks are empty scores 1.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


class DavisAbort(Exception):
    """Where the evaluator prints its message and exits."""


def davis_read(folder) -> tuple[np.ndarray, list[str]]:
    """(frames, H, W) palette indices of a DAVIS PNG folder, sorted by file name, and the names."""
    names = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".png"))
    return np.stack([np.array(Image.open(os.path.join(folder, f"{n}.png"))) for n in names]), names


def davis_objects(masks: np.ndarray, count: int) -> np.ndarray:
    """(count, frames, H, W) bool: object v is index v + 1 (the evaluator's `tmp == masks`)."""
    return np.arange(1, count + 1)[:, None, None, None] == masks[None]


def davis_ground_truth(folder) -> tuple[np.ndarray, int]:
    """Ground-truth objects ((objects, frames - 2, H, W) bool) and the bytes of the float64 array
    the evaluator builds to separate them."""
    masks, _ = davis_read(folder)
    masks = masks.astype(np.float64)
    masks[masks == 255] = 0
    count = int(masks[0].max())
    return davis_objects(masks, count)[:, 1:-1], count * masks.size * 8


def davis_results(folder) -> np.ndarray:
    masks = davis_read(folder)[0][1:-1].astype(np.float64)
    return davis_objects(masks, int(masks.max()))


def davis_j(gt_folder, res_folder) -> np.ndarray:
    """J per ground-truth object and frame, as `_evaluate_semisupervised` computes it."""
    gt, _ = davis_ground_truth(gt_folder)
    res = davis_results(res_folder)
    if res.shape[0] != gt.shape[0]:
        raise DavisAbort("In your PNG files there is an index higher than the number of objects in the sequence!")
    inter = (gt & res).sum(axis=(2, 3))
    union = (gt | res).sum(axis=(2, 3))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


# CVAT's "MOT 1.1" import (cvat/apps/dataset_manager/formats/mot.py `_import_to_task`) over
# datumaro's `mot_seq` reader (plugins/data_formats/mot.py `MotSeqBase`):
#   - `gt/gt.txt` rows are frame_id, track_id, x, y, w, h, confidence, class_id, visibility (csv);
#   - labels: `gt/labels.txt`, one name a line (without it, MOT's 12 fixed classes);
#   - class_id is 1-based into the labels (a value past them fails an assertion); -1 or empty gives
#     no label, and CVAT's lookup `label_cat.items[ann.label]` then fails;
#   - ground truth: occluded = visibility <= 0 (threshold 0), ignored = confidence == 0; a track id
#     above 0 makes the box part of a track;
#   - CVAT frame = frame_id - 1; points are x, y, x + w, y + h as read (no shift); every box of a
#     track is a keyframe, and the tracks' boxes are sorted by frame.
MOT_FIELDS = ["frame_id", "track_id", "x", "y", "w", "h", "confidence", "class_id", "visibility"]


def cvat_mot_tracks(gt_dir) -> dict[int, dict]:
    """track id -> {"label", "frames": {frame: [x0, y0, x1, y1]}, "occluded": set of frames},
    as CVAT's MOT 1.1 import builds its tracks."""
    import csv

    with open(os.path.join(gt_dir, "labels.txt"), encoding="utf-8") as f:
        labels = [s.strip() for s in f]
    tracks: dict[int, dict] = {}
    with open(os.path.join(gt_dir, "gt.txt"), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, fieldnames=MOT_FIELDS):
            label = row.get("class_id")
            if label and label != "-1":
                label = int(label) - 1
                assert label < len(labels), label
            else:
                label = None
            x, y, w, h = (float(row[k]) for k in "xywh")
            visibility = float(row["visibility"]) if row.get("visibility") else 1.0
            track_id = int(row["track_id"])
            assert track_id > 0, "a box outside any track"
            track = tracks.setdefault(track_id, {"label": labels[label], "frames": {}, "occluded": set()})
            frame = int(row["frame_id"]) - 1
            track["frames"][frame] = [x, y, x + w, y + h]
            if visibility <= 0:
                track["occluded"].add(frame)
            assert float(row["confidence"]) != 0, "an ignored box"
    return tracks


def mot_accumulate(gt, res, max_distance: float = 0.5):
    """A py-motmetrics accumulator of `res` against `gt` (data frames from `motmetrics.io.loadtxt`),
    frame by frame with 1 - IoU of the boxes as distance, as `motmetrics.utils.compare_to_groundtruth`
    does with "iou" (whose `iou_matrix` calls `np.asfarray`, gone in NumPy 2)."""
    import motmetrics

    def boxes(df, frame):
        rows = df.loc[frame] if frame in df.index.get_level_values(0) else df.iloc[:0]
        return rows.index.get_level_values(-1).tolist(), rows[["X", "Y", "Width", "Height"]].to_numpy(float)

    acc = motmetrics.MOTAccumulator(auto_id=False)
    for frame in sorted(set(gt.index.get_level_values(0)) | set(res.index.get_level_values(0))):
        (gt_ids, a), (res_ids, b) = boxes(gt, frame), boxes(res, frame)
        lo = np.maximum(a[:, None, :2], b[None, :, :2])
        hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
        union = np.prod(a[:, 2:], axis=1)[:, None] + np.prod(b[:, 2:], axis=1)[None] - inter
        distance = 1 - inter / np.maximum(union, 1e-9)
        acc.update(gt_ids, res_ids, np.where(distance > max_distance, np.nan, distance), frameid=frame)
    return acc


# CVAT's "COCO 1.0" import over datumaro's `coco_instances` reader (CVAT
# cvat/apps/dataset_manager/bindings.py `import_dm_annotations` and `match_dm_item`):
#   - datumaro: an item per image, id = `file_name` without extension; per annotation the dict
#     `attributes` (plus `score` from the top level), the label from `category_id`, an RLE dict as
#     a mask;
#   - CVAT: a shape joins a track only when its attributes hold `track_id` AND `keyframe` (coco
#     formats are track formats); `occluded`, `outside`, `keyframe` read as booleans; frame = the
#     task frame named like the item, or for a video task the item id read as an integer.
def cvat_coco_tracks(path) -> tuple[dict[int, dict], int]:
    """track id -> {"label", "frames": {frame: RLE}} as CVAT builds tracks from a COCO file (video
    task), and the number of annotations that would arrive as loose shapes."""
    import json

    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    labels = {c["id"]: c["name"] for c in doc["categories"]}
    frames = {i["id"]: int(os.path.splitext(os.path.basename(i["file_name"]))[0]) for i in doc["images"]}
    tracks: dict[int, dict] = {}
    loose = 0
    for ann in doc["annotations"]:
        attributes = dict(ann.get("attributes", {}))
        if "track_id" not in attributes or "keyframe" not in attributes:
            loose += 1
            continue
        assert attributes.get("outside", False) is not True and attributes.get("occluded") is False
        track = tracks.setdefault(attributes["track_id"], {"label": labels[ann["category_id"]], "frames": {}})
        assert track["label"] == labels[ann["category_id"]]
        track["frames"][frames[ann["image_id"]]] = ann["segmentation"]
    return tracks, loose


# CVAT's "CVAT 1.1" import of a video task (cvat/apps/dataset_manager/formats/cvat.py `load_anno`):
#   - XML read as a stream; a <track label> collects its shapes; a shape's frame, outside="1",
#     keyframe="1", occluded, z_order are read; polygon points are "x,y;x,y;...";
#   - only keyframes are kept; a track whose first shape is a mask becomes that one shape;
#   - in the task a track shows, on each frame, its latest keyframe at or before it, unless that
#     keyframe is outside (interpolation between polygon keyframes aside: ours are on every frame).
def cvat_video_tracks(path) -> dict[int, dict]:
    """track id (the XML's) -> {"label", "keyframes": {frame: (outside, [[x, y], ...])}}."""
    from xml.etree import ElementTree

    tracks: dict[int, dict] = {}
    track = None
    for event, el in ElementTree.iterparse(path, events=("start", "end")):
        if event == "start" and el.tag == "track":
            track = tracks.setdefault(int(el.attrib["id"]), {"label": el.attrib["label"], "keyframes": {}})
        elif event == "end" and el.tag == "polygon" and track is not None:
            if el.attrib["keyframe"] == "1":
                points = [[float(v) for v in pair.split(",")] for pair in el.attrib["points"].split(";")]
                track["keyframes"][int(el.attrib["frame"])] = (el.attrib.get("outside", "0") == "1", points)
        elif event == "end" and el.tag == "track":
            assert next(iter(track["keyframes"].values()), None) is not None, "a track without keyframes"
            track = None
    return tracks


def cvat_task_frame(frame: int, start: int, step: int, size: int) -> int:
    """The task frame CVAT's import puts a shape of (video) frame `frame` on, for a task made from
    the video from `start` with frame step `step` and `size` frames (bindings.py `rel_frame_id`);
    any frame off that grid or past it is refused, as the import refuses it."""
    d, m = divmod(frame - start, step)
    if m or d not in range(size):
        raise ValueError(f"Unknown frame {frame}")
    return d


def cvat_task_meta(path) -> dict:
    """start_frame, stop_frame, size (ints) and frame_filter of a CVAT XML's <meta><task>."""
    from xml.etree import ElementTree

    task = ElementTree.parse(path).getroot().find("meta/task")
    meta = {k: int(task.findtext(k)) for k in ("start_frame", "stop_frame", "size")}
    meta["frame_filter"] = task.findtext("frame_filter") or ""
    return meta


def cvat_shown(track: dict, frame: int):
    """The polygon a CVAT track shows on `frame`, or None (before it starts, or outside)."""
    before = [f for f in track["keyframes"] if f <= frame]
    if not before:
        return None
    outside, points = track["keyframes"][max(before)]
    return None if outside else points
