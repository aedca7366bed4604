"""A real run's annotations read the way the evaluators and annotation tools read them: the small
SAM3 on bikes, both ways from frame 100 at threshold 0 (many ragged objects, some appearing after
the first frame), every format; once on every frame, once on every 4th (a stride: gaps between
the frames done, which every format names by the video's own frame index)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam3_video.pipeline import run
from sam3_video.results import read_results
from sam3_video.types import RunOptions
from tests.readers import (
    DavisAbort,
    cvat_coco_tracks,
    cvat_mot_tracks,
    cvat_shown,
    cvat_task_frame,
    cvat_task_meta,
    cvat_video_tracks,
    davis_ground_truth,
    davis_j,
    davis_read,
    mot_accumulate,
)


STRIDE = 4


@pytest.fixture(scope="module", params=[1, STRIDE], ids=["every-frame", f"stride-{STRIDE}"])
def bikes_run(request, media, backend, tmp_path_factory):
    import os

    out = tmp_path_factory.mktemp("bikes")
    summary = run(os.path.join(media, "bikes.mp4"), RunOptions.of(("bike, person",), 100, "both", 8, 0.0,
                                                                  stride=request.param), out,
                  backend=backend, outputs=["all"])
    assert summary.complete and summary.stride == request.param
    assert [r.frame_index for r in read_results(out)] == list(range(100 - 7 * request.param, 100 + 8 * request.param,
                                                                     request.param))
    return out / "annotations"


def _coco(folder) -> dict:
    return json.loads((folder / "coco_instances.json").read_text())


def _rle(segmentation: dict) -> dict:
    return {"size": segmentation["size"], "counts": segmentation["counts"].encode()}


def test_every_box_is_the_exported_masks_box(bikes_run):
    """COCO bbox, YouTube-VIS bboxes and MOT rows all equal pycocotools' toBbox of the exported
    mask, and so does the extent of each object's labelme polygons."""
    coco = _coco(bikes_run)
    assert len(coco["annotations"]) > 20, "the small model must find objects for this test to mean anything"
    boxes = {}
    for ann in coco["annotations"]:
        truth = mask_utils.toBbox(_rle(ann["segmentation"])).tolist()
        assert ann["bbox"] == truth, ann["id"]
        boxes[(ann["image_id"] - 1, ann["track_id"])] = truth
    ytvis = json.loads((bikes_run / "ytvis_results.json").read_text())
    frames = json.loads((bikes_run / "ytvis_dataset.json").read_text())["videos"][0]["frame_indices"]
    seen = 0
    for track in ytvis:
        for frame, rle, box in zip(frames, track["segmentations"], track["bboxes"]):
            if rle is not None:
                assert box == mask_utils.toBbox(_rle(rle)).tolist() == boxes[(frame, track["track_id"])]
                seen += 1
    assert seen == len(boxes)
    mot = [line.split(",") for line in (bikes_run / "mot.txt").read_text().splitlines()]
    assert len(mot) == len(boxes)
    for row in mot:
        x, y, w, h = (float(v) for v in row[2:6])
        assert [x - 1, y - 1, w, h] == boxes[(int(row[0]) - 1, int(row[1]))]
    extents: dict[tuple[int, int], list[float]] = {}
    for path in (bikes_run / "labelme").glob("*.json"):
        for shape in json.loads(path.read_text())["shapes"]:
            assert shape["shape_type"] == "polygon"
            key, xy = (int(path.stem), shape["group_id"]), np.array(shape["points"])
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            if key in extents:
                lo, hi = np.minimum(lo, extents[key][:2]), np.maximum(hi, extents[key][2:])
            extents[key] = [*lo, *hi]
    assert extents == {k: [x, y, x + w - 1, y + h - 1] for k, (x, y, w, h) in boxes.items()}  # pixel centres


def test_davis_pngs_read_as_the_davis_evaluator_reads_them(bikes_run):
    from sam3_video.results import EncodedFrame, read_results

    manifest = json.loads((bikes_run / "manifest.json").read_text())["davis"]
    index = {int(v): t for v, t in manifest["index_to_track_id"].items()}
    masks, _ = davis_read(bikes_run / "davis")
    assert sorted(index) == list(range(1, len(index) + 1)) and masks.max() == len(index) <= 254
    assert not (masks == 255).any() and manifest["left_out_track_ids"] == []
    seen = 0
    for image in masks:  # in frame order, each new object takes the next index
        new = sorted(set(np.unique(image).tolist()) - set(range(seen + 1)))
        assert new == list(range(seen + 1, seen + 1 + len(new)))
        seen += len(new)
    lut = np.zeros(max(index.values()) + 1, np.uint8)
    for v, t in index.items():
        lut[t] = v
    for image, result in zip(masks, read_results(bikes_run.parent)):
        np.testing.assert_array_equal(image, lut[EncodedFrame(result).id_image])
    _, allocation = davis_ground_truth(bikes_run / "davis")
    assert allocation == int(masks[0].max()) * masks.size * 8  # bytes: first frame's objects x frames x H x W
    if masks[1:-1].max() == masks[0].max():  # every object on the first frame: a perfect score
        assert (davis_j(bikes_run / "davis", bikes_run / "davis") == 1).all()
    else:  # the evaluator's protocol: the objects to track are the first frame's
        with pytest.raises(DavisAbort):
            davis_j(bikes_run / "davis", bikes_run / "davis")


def test_ytvis_ground_truth_loads_as_trackeval_reads_it_and_scores_the_results_perfectly(bikes_run):
    import zipfile

    dataset = json.loads((bikes_run / "ytvis_dataset.json").read_text())
    results = {r["track_id"]: r for r in json.loads((bikes_run / "ytvis_results.json").read_text())}
    (video,) = dataset["videos"]
    with zipfile.ZipFile(bikes_run.parent / "annotations.zip") as z:
        shipped = set(z.namelist())
    assert all(f"annotations/JPEGImages/{name}" in shipped for name in video["file_names"])
    assert {a["id"] for a in dataset["annotations"]} == set(results)
    for ann in dataset["annotations"]:  # TrackEval's _prepare_gt_annotations: frPyObjects on each
        res = results[ann["id"]]
        assert res["category_id"] == ann["category_id"]
        for truth, rle in zip(ann["segmentations"], res["segmentations"]):
            assert (truth is None) == (rle is None)
            if truth is None:
                continue
            gt = mask_utils.frPyObjects(truth, ann["height"], ann["width"])
            assert mask_utils.iou([_rle(rle)], [gt], [0])[0, 0] == 1.0
            assert mask_utils.area(gt) == mask_utils.area(_rle(rle))


def test_mot_ground_truth_is_cvat_tracks_and_motmetrics_scores_the_results_perfectly(bikes_run):
    import motmetrics

    coco = _coco(bikes_run)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    expected: dict[int, dict] = {}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        track = expected.setdefault(ann["track_id"], {"label": names[ann["category_id"]], "frames": {}})
        track["frames"][ann["image_id"] - 1] = [x, y, x + w, y + h]
    tracks = cvat_mot_tracks(bikes_run / "mot" / "gt")
    assert {t: {"label": v["label"], "frames": v["frames"]} for t, v in tracks.items()} == expected
    gt = motmetrics.io.loadtxt(str(bikes_run / "mot" / "gt" / "gt.txt"), fmt="mot16")
    gt[["X", "Y"]] += 1  # CVAT's 0-based corner -> MOTChallenge's 1-based, as mot.txt has it
    res = motmetrics.io.loadtxt(str(bikes_run / "mot.txt"), fmt="mot15-2D")
    summary = motmetrics.metrics.create().compute(mot_accumulate(gt, res), metrics=["mota", "idf1", "num_switches"])
    assert summary["mota"].iloc[0] == 1 and summary["idf1"].iloc[0] == 1 and summary["num_switches"].iloc[0] == 0


def test_mots_classes_are_never_the_reserved_ones(bikes_run):
    classes = {int(line.split(" ")[2]) for line in (bikes_run / "mots.txt").read_text().splitlines()}
    assert classes and not classes & {1, 2, 10}
    named = dict(line.split(" ", 1) for line in (bikes_run / "mots_labels.txt").read_text().splitlines())
    assert {str(c) for c in classes} <= set(named) and set(named.values()) == {"bike", "person"}


def test_coco_imports_into_cvat_as_one_track_per_object(bikes_run):
    coco = _coco(bikes_run)
    tracks, loose = cvat_coco_tracks(bikes_run / "coco_instances.json")
    assert loose == 0 and sorted(tracks) == sorted({a["track_id"] for a in coco["annotations"]})
    for ann in coco["annotations"]:
        assert ann["attributes"]["score"] == ann["score"] and ann["attributes"]["track_id"] == ann["track_id"]
        frame = next(i["frame_index"] for i in coco["images"] if i["id"] == ann["image_id"])
        assert tracks[ann["track_id"]]["frames"][frame] == ann["segmentation"]


def test_labelme_polygons_are_faithful_to_ragged_masks(bikes_run):
    """The small model's masks are ragged (specks, holes, many parts): filled as labelme fills them,
    each object's polygons give back its mask exactly."""
    import labelme
    from labelme.utils import shape_to_mask

    masks = {(ann["image_id"] - 1, ann["track_id"]): mask_utils.decode(_rle(ann["segmentation"])).astype(bool)
             for ann in _coco(bikes_run)["annotations"]}
    drawn: dict[tuple[int, int], np.ndarray] = {}
    for path in sorted((bikes_run / "labelme").glob("*.json")):
        frame = int(path.stem)
        for shape in labelme.LabelFile(str(path)).shapes:
            if shape["shape_type"] == "polygon":
                key = (frame, shape["group_id"])
                filled = shape_to_mask(masks[key].shape, shape["points"], "polygon")
                drawn[key] = drawn[key] | filled if key in drawn else filled
    assert set(drawn) == set(masks)
    ious = np.array([(drawn[k] & m).sum() / (drawn[k] | m).sum() for k, m in masks.items()])
    assert (ious == 1).all(), np.percentile(ious, [0, 5, 50])


def test_cvat_video_xml_imports_as_one_track_per_object_faithful_to_the_masks(bikes_run):
    coco = _coco(bikes_run)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    masks = {(ann["image_id"] - 1, ann["track_id"]): (names[ann["category_id"]],
                                                      mask_utils.decode(_rle(ann["segmentation"])).astype(bool))
             for ann in coco["annotations"]}
    frames = sorted({i["frame_index"] for i in coco["images"]})
    tracks = cvat_video_tracks(bikes_run / "cvat_video.xml")
    assert set(tracks) == {t for _, t in masks}
    step = frames[1] - frames[0]
    meta = cvat_task_meta(bikes_run / "cvat_video.xml")  # a task made as the meta says: the frames the stride does
    assert (meta["start_frame"], meta["frame_filter"]) == (frames[0] % step, f"step={step}" if step > 1 else "")
    ious = []
    for track_id, track in tracks.items():
        for frame in track["keyframes"]:  # each imports into that task, and into one of the whole video (step 1)
            cvat_task_frame(frame, meta["start_frame"], step, meta["size"])
            cvat_task_frame(frame, 0, 1, 250)
        for frame in range(frames[0], 272, step):  # bikes.mp4 has 250 frames; past the run nothing shows
            points = cvat_shown(track, frame)
            if (frame, track_id) not in masks:
                assert points is None, (track_id, frame)
                continue
            label, mask = masks[(frame, track_id)]
            assert track["label"] == label and points is not None
            # as CVAT turns a polygon into a mask (datumaro's rasterize_polygons: pycocotools)
            drawn = mask_utils.decode(mask_utils.frPyObjects([np.ravel(points).tolist()], *mask.shape)).astype(bool)[..., 0]
            ious.append((drawn & mask).sum() / (drawn | mask).sum())
    assert len(ious) == len(masks) and (np.array(ious) >= 0.9).mean() >= 0.95, np.percentile(ious, [0, 5, 50])
