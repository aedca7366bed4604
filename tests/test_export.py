"""Annotation formats on known masks, read back by the tools users open them with
(pycocotools, labelme's own loader, motmetrics' MOT reader, PIL)."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam3_video.errors import BadRequestError
from sam3_video.export import (
    FORMATS,
    Annotations,
    Categories,
    ExportContext,
    check_formats,
)
from sam3_video.export.labelme import mask_to_polygons
from sam3_video.export.mot import mots_class
from sam3_video.render import color_for
from sam3_video.results import EncodedFrame
from sam3_video.types import FrameResult, VideoInfo
from tests.readers import cvat_mot_tracks, davis_j, davis_read, mot_accumulate

H, W = 60, 80
INFO = VideoInfo(path="/videos/street clip.mp4", width=W, height=H, num_frames=10, fps=25.0, duration=0.4)
ARRIVAL = [5, 6, 7, 4, 3]  # "both" from frame 5: forward, then backward


def _masks(frame: int) -> dict[int, np.ndarray]:
    square = np.zeros((H, W), bool)
    square[10:30, 5 + frame : 25 + frame] = True  # 400 px, moving right
    ring = np.zeros((H, W), bool)
    ring[30:56, 40:70] = True
    ring[38:48, 50:60] = False  # a 100 px hole
    parts = np.zeros((H, W), bool)
    parts[2:12, 50:62] = True
    parts[2:12, 66:78] = True  # two parts
    parts[20:28, 20 + frame : 28 + frame] = True  # overlaps the square (lower score)
    masks = {1: square, 2: ring, 3: parts}
    if frame == 7:
        masks[3] = np.zeros((H, W), bool)  # not visible on frame 7
    return masks


def _result(frame: int) -> FrameResult:
    masks = _masks(frame)
    ids = sorted(masks)
    boxes = []
    for i in ids:
        ys, xs = np.nonzero(masks[i]) if masks[i].any() else (np.zeros(1), np.zeros(1))
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return FrameResult(frame, ids, ["car", "car", "person"], [0.9, 0.8, 0.5], boxes, np.stack([masks[i] for i in ids]))


def _image(frame: int) -> np.ndarray:
    """A smooth picture (JPEG keeps it close), different on every frame."""
    y, x = np.mgrid[:H, :W]
    return np.stack([x * 3, y * 4, (x + y + 10 * frame) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    annotations = Annotations(str(out), ["all"], ExportContext(INFO, Categories(["car", "person"])))
    for f in ARRIVAL:
        annotations.write(EncodedFrame(_result(f), lambda f=f: _image(f)))
    annotations.close({"video": {"path": INFO.path}, "status": "complete"})
    return out / "annotations"


def test_coco_loads_with_pycocotools_and_masks_round_trip(exported):
    from pycocotools.coco import COCO

    coco = COCO(str(exported / "coco_instances.json"))
    assert sorted(img["frame_index"] for img in coco.dataset["images"]) == sorted(ARRIVAL)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["car", "person"]
    for img in coco.dataset["images"]:
        truth = _masks(img["frame_index"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert sorted(a["track_id"] for a in anns) == sorted(i for i, m in truth.items() if m.any())
        for ann in anns:
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), truth[ann["track_id"]])
            assert ann["area"] == truth[ann["track_id"]].sum()
    assert len({a["id"] for a in coco.dataset["annotations"]}) == len(coco.dataset["annotations"])


def test_ytvis_results_and_dataset_cover_processed_frames(exported):
    dataset = json.loads((exported / "ytvis_dataset.json").read_text())
    results = json.loads((exported / "ytvis_results.json").read_text())
    (video,) = dataset["videos"]
    assert video["frame_indices"] == sorted(ARRIVAL) and video["length"] == len(ARRIVAL)
    assert video["file_names"][0] == "street clip/00003.jpg"
    for f, name in zip(video["frame_indices"], video["file_names"]):  # under the image root JPEGImages/
        image = np.asarray(Image.open(exported / "JPEGImages" / name))
        assert image.shape == (H, W, 3) and np.abs(image.astype(int) - _image(f)).mean() < 3
    # what a YouTube-VIS loadRes does: every video known, areas and boxes from the RLEs
    assert {r["video_id"] for r in results} <= {v["id"] for v in dataset["videos"]}
    assert {r["track_id"] for r in results} == {1, 2, 3}
    for res, ann in zip(results, dataset["annotations"]):
        assert ann["id"] == res["track_id"]
        for truth, rle in zip(ann["segmentations"], res["segmentations"]):  # ground truth: integer counts
            assert (truth is None) == (rle is None)
            if truth is not None:  # as TrackEval's YouTube-VIS loader and the YouTube-VIS API read it
                assert all(isinstance(c, int) for c in truth["counts"])
                assert mask_utils.frPyObjects(truth, ann["height"], ann["width"])["counts"].decode() == rle["counts"]
        for k, (rle, area) in enumerate(zip(res["segmentations"], res["areas"])):
            truth = _masks(video["frame_indices"][k])[res["track_id"]]
            if not truth.any():
                assert rle is None and area is None
                continue
            assert mask_utils.area({**rle, "counts": rle["counts"].encode()}) == area
            np.testing.assert_array_equal(mask_utils.decode({**rle, "counts": rle["counts"].encode()}).astype(bool), truth)
    assert results[2]["segmentations"][video["frame_indices"].index(7)] is None


def test_mot_parses_with_motmetrics(exported):
    import motmetrics

    df = motmetrics.io.loadtxt(str(exported / "mot.txt"), fmt="mot15-2D")
    visible = [(f, i) for f in ARRIVAL for i, m in _masks(f).items() if m.any()]
    assert len(df) == len(visible)
    row = df.loc[(6, 1)]  # frame 5 (0-based) is MOT frame 6
    ys, xs = np.nonzero(_masks(5)[1])
    # MOT pixels count from 1; motmetrics' reader takes the 1 off again
    assert (row["X"], row["Y"], row["Width"], row["Height"]) == (xs.min(), ys.min(), 20, 20)
    lines = (exported / "mot.txt").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines] == sorted(int(line.split(",")[0]) for line in lines)


def test_mots_masks_do_not_overlap_and_higher_score_wins(exported):
    per_frame: dict[int, list] = {}
    for line in (exported / "mots.txt").read_text().splitlines():
        frame, obj, cls, h, w, counts = line.split(" ")
        per_frame.setdefault(int(frame) - 1, []).append(
            (int(obj), int(cls), mask_utils.decode({"size": [int(h), int(w)], "counts": counts.encode()}).astype(bool)))
    assert sorted(per_frame) == sorted(ARRIVAL)
    for f, objects in per_frame.items():
        stack = np.stack([m for _, _, m in objects])
        assert stack.sum(0).max() <= 1
        truth = _masks(f)
        for obj, cls, m in objects:
            assert cls == (4 if obj == 3 else 3)  # car and person: categories 1 and 2, MOTS classes 3 and 4
            expected = truth[obj] & ~truth[1] if obj == 3 else truth[obj]  # id 1 scores higher
            np.testing.assert_array_equal(m, expected)


def test_mots_classes_skip_the_reserved_values_and_are_named_beside(exported):
    assert [mots_class(c) for c in range(1, 11)] == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    assert (exported / "mots_labels.txt").read_text() == "3 car\n4 person\n"
    manifest = json.loads((exported / "manifest.json").read_text())["mots"]
    assert manifest["class_ids"] == {"3": "car", "4": "person"}


def test_mot_ground_truth_imports_as_cvat_tracks(exported):
    import motmetrics

    tracks = cvat_mot_tracks(exported / "mot" / "gt")
    assert sorted(tracks) == [1, 2, 3] and tracks[3]["label"] == "person" and tracks[1]["label"] == "car"
    for obj, track in tracks.items():
        assert sorted(track["frames"]) == sorted(f for f in ARRIVAL if _masks(f)[obj].any()) and not track["occluded"]
        for f, (x0, y0, x1, y1) in track["frames"].items():
            ys, xs = np.nonzero(_masks(f)[obj])
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # pixel edges, from 0
    # py-motmetrics reads it as MOT16 ground truth and scores mot.txt against it perfectly, once
    # CVAT's 0-based x, y are put in MOTChallenge's 1-based convention (which mot.txt follows)
    gt = motmetrics.io.loadtxt(str(exported / "mot" / "gt" / "gt.txt"), fmt="mot16")
    res = motmetrics.io.loadtxt(str(exported / "mot.txt"), fmt="mot15-2D")
    assert set(gt["ClassId"]) == {1, 2} and (gt["Visibility"] == 1).all() and (gt["Confidence"] == 1).all()
    gt[["X", "Y"]] += 1
    acc = mot_accumulate(gt, res)
    summary = motmetrics.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    assert summary["mota"].iloc[0] == 1 and summary["idf1"].iloc[0] == 1 and summary["num_switches"].iloc[0] == 0


def test_labelme_files_load_with_labelme(exported):
    import labelme
    from labelme.utils import shape_to_mask

    jsons = sorted((exported / "labelme").glob("*.json"))
    assert [p.stem for p in jsons] == [f"{f:05d}" for f in sorted(ARRIVAL)]
    for path in jsons:
        data = labelme.LabelFile(str(path))
        frame = int(path.stem)
        assert data.image_path == f"{path.stem}.jpg"
        truth = _masks(frame)
        raw = json.loads(path.read_text())
        assert (raw["imageHeight"], raw["imageWidth"]) == (H, W)
        for obj_id, mask in truth.items():
            shapes = [s for s in data.shapes if s["group_id"] == obj_id]
            if not mask.any():
                assert shapes == []
                continue
            assert {s["shape_type"] for s in shapes} == {"polygon"}  # no rectangle: see labelme.py
            xany = ["label", "score", "points", "group_id", "description", "difficult", "shape_type", "flags",
                    "attributes", "kie_linking"]  # what X-AnyLabeling writes, in its order
            assert all(list(s) == xany for s in raw["shapes"])
            assert all(s["label"] == ("person" if obj_id == 3 else "car") for s in shapes)
            assert all(s["other_data"]["score"] > 0 for s in shapes)
            drawn = np.zeros((H, W), bool)
            for s in shapes:
                if s["shape_type"] == "polygon":
                    drawn |= shape_to_mask((H, W), s["points"], "polygon")
            np.testing.assert_array_equal(drawn, mask)  # filled with its edge, exactly the mask
        image = np.asarray(Image.open(path.with_suffix(".jpg")))
        assert image.shape == (H, W, 3) and np.abs(image.astype(int) - _image(frame)).mean() < 3


def test_davis_pngs_are_indexed_with_overlay_colours(exported):
    pngs = sorted((exported / "davis").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{f:05d}" for f in sorted(ARRIVAL)]
    for p in pngs:
        image = Image.open(p)
        assert image.mode == "P"
        # tracks 1, 2, 3 all appear on the first frame: indices 1, 2, 3
        np.testing.assert_array_equal(np.asarray(image), EncodedFrame(_result(int(p.stem))).id_image)
        pal = image.getpalette()
        assert tuple(pal[0:3]) == (0, 0, 0) and tuple(pal[6:9]) == color_for(2)
    manifest = json.loads((exported / "manifest.json").read_text())["davis"]
    assert manifest["index_to_track_id"] == {"1": 1, "2": 2, "3": 3} and manifest["max_objects"] == 254


def test_davis_evaluator_scores_the_run_against_itself_perfectly(exported):
    j = davis_j(exported / "davis", exported / "davis")
    assert j.shape == (3, len(ARRIVAL) - 2) and (j == 1).all()


def _objects(frame: int, tracks: dict[int, tuple]) -> EncodedFrame:
    """A frame with one small square per track, at the given (row, col)."""
    masks = np.zeros((len(tracks), H, W), bool)
    for k, (r, c) in enumerate(tracks.values()):
        masks[k, r : r + 2, c : c + 2] = True
    return EncodedFrame(FrameResult(frame, list(tracks), ["car"] * len(tracks), np.linspace(0.9, 0.5, len(tracks)),
                                    np.zeros((len(tracks), 4)), masks), lambda: _image(frame))


def test_davis_numbers_objects_by_first_appearance_in_frame_order(tmp_path):
    """Both ways from frame 5: track 300 first, track 9 next, then 42 on the earlier frame 4. In
    frame order 42 and 300 come first (frame 4, by id), then 9 (frame 6)."""
    annotations = Annotations(str(tmp_path), ["davis"], ExportContext(INFO, Categories(["car"])))
    where = {300: (0, 0), 9: (10, 10), 42: (20, 20)}
    for frame, tracks in [(5, [300]), (6, [300, 9]), (4, [42, 300]), (3, [])]:
        annotations.write(_objects(frame, {t: where[t] for t in tracks}))
    annotations.close({})
    folder = tmp_path / "annotations"
    index = json.loads((folder / "manifest.json").read_text())["davis"]["index_to_track_id"]
    assert index == {"1": 42, "2": 300, "3": 9}
    masks, names = davis_read(folder / "davis")
    assert names == ["00003", "00004", "00005", "00006"] and masks.max() == 3
    for frame, expected in zip(names, [{}, {42: 1, 300: 2}, {300: 2}, {300: 2, 9: 3}]):
        image = masks[names.index(frame)]
        for track, v in expected.items():
            r, c = where[track]
            assert (image[r : r + 2, c : c + 2] == v).all(), (frame, track)
        assert np.count_nonzero(image) == 4 * len(expected)
        palette = Image.open(folder / "davis" / f"{frame}.png").getpalette()
        assert all(tuple(palette[3 * v : 3 * v + 3]) == color_for(t) for t, v in expected.items())


def test_davis_keeps_254_objects_and_lists_the_rest(tmp_path):
    annotations = Annotations(str(tmp_path), ["davis", "coco"], ExportContext(INFO, Categories(["car"])))
    tracks = {1000 + k: (2 * (k // 40), 2 * (k % 40)) for k in range(256)}  # 256 disjoint 2x2 squares
    annotations.write(_objects(0, tracks))
    annotations.close({})
    folder = tmp_path / "annotations"
    manifest = json.loads((folder / "manifest.json").read_text())["davis"]
    assert manifest["left_out_track_ids"] == [1254, 1255] and len(manifest["index_to_track_id"]) == 254
    image = np.asarray(Image.open(folder / "davis" / "00000.png"))
    assert image.max() == 254 and not (image == 255).any() and np.count_nonzero(image) == 254 * 4
    assert len(json.loads((folder / "coco_instances.json").read_text())["annotations"]) == 256


def test_manifest_and_zip_hold_the_folder(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["status"] == "complete" and set(manifest["formats"]) == set(FORMATS)
    assert [c["name"] for c in manifest["categories"]] == ["car", "person"]
    with zipfile.ZipFile(exported.parent / "annotations.zip") as z:
        names = set(z.namelist())
    on_disk = {os.path.relpath(os.path.join(root, f), exported.parent)
               for root, _, files in os.walk(exported) for f in files}
    assert names == on_disk and not any(os.path.basename(n).startswith(".") for n in names)


def test_partial_run_exports_only_processed_frames(tmp_path):
    annotations = Annotations(str(tmp_path), ["all"], ExportContext(INFO, Categories(["car"])))
    for f in ARRIVAL[:2]:  # stopped after two frames
        annotations.write(EncodedFrame(_result(f), lambda f=f: _image(f)))
    annotations.close({"status": "stopped"})
    folder = tmp_path / "annotations"
    coco = json.loads((folder / "coco_instances.json").read_text())
    assert sorted(i["frame_index"] for i in coco["images"]) == [5, 6]
    assert json.loads((folder / "ytvis_dataset.json").read_text())["videos"][0]["frame_indices"] == [5, 6]
    assert {line.split(",")[0] for line in (folder / "mot.txt").read_text().splitlines()} == {"6", "7"}
    assert len(list((folder / "davis").glob("*.png"))) == 2 and len(list((folder / "labelme").glob("*.json"))) == 2
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no spill files left


@pytest.mark.parametrize(
    "name, make, parts",
    [
        ("square", lambda m: m.__setitem__((slice(5, 25), slice(5, 25)), True), 1),
        ("two parts", lambda m: (m.__setitem__((slice(2, 14), slice(2, 14)), True),
                                 m.__setitem__((slice(20, 35), slice(20, 38)), True)), 2),
        ("disc", lambda m: m.__setitem__(np.hypot(*np.mgrid[:40, :40] - 20) < 15, True), 1),
    ],
)
def test_polygons_match_masks(name, make, parts):
    import cv2

    mask = np.zeros((40, 40), bool)
    make(mask)
    polygons = mask_to_polygons(mask)
    assert len(polygons) == parts
    drawn = np.zeros((40, 40), np.uint8)
    for p in polygons:
        cv2.fillPoly(drawn, [np.round(np.array(p)).astype(np.int32)], 1)
    iou = (drawn.astype(bool) & mask).sum() / (drawn.astype(bool) | mask).sum()
    assert iou >= 0.95, (name, iou)


def test_polygon_of_ring_leaves_the_hole_out():
    import cv2

    ring = np.zeros((50, 50), bool)
    ring[5:45, 5:45] = True
    ring[15:35, 15:35] = False  # 400 px hole
    (polygon,) = mask_to_polygons(ring)
    drawn = np.zeros((50, 50), np.uint8)
    cv2.fillPoly(drawn, [np.round(np.array(polygon)).astype(np.int32)], 1)
    assert drawn[20:30, 20:30].sum() == 0  # the hole stays empty
    iou = (drawn.astype(bool) & ring).sum() / (drawn.astype(bool) | ring).sum()
    assert iou >= 0.9


def test_specks_and_lines_keep_a_polygon_and_an_empty_mask_has_none():
    from labelme.utils import shape_to_mask

    dust = np.zeros((10, 10), bool)
    dust[4, 4] = dust[1, 1:5] = dust[6:9, 8] = True  # a pixel, a row, a column
    polygons = mask_to_polygons(dust)
    assert len(polygons) == 3 and all(len(p) >= 3 for p in polygons)
    drawn = np.zeros((10, 10), bool)
    for p in polygons:
        drawn |= shape_to_mask((10, 10), p, "polygon")
    np.testing.assert_array_equal(drawn, dust)
    assert mask_to_polygons(np.zeros((10, 10), bool)) == []


def test_every_hole_is_cut_in_however_small():
    from labelme.utils import shape_to_mask

    sieve = np.zeros((40, 40), bool)
    sieve[2:38, 2:38] = True
    sieve[5:35:3, 5:35:3] = False  # 100 one-pixel holes
    sieve[20:24, 20:24] = False
    (polygon,) = mask_to_polygons(sieve)
    drawn = shape_to_mask((40, 40), polygon, "polygon")
    assert len(polygon) > 400  # every hole's loop is in the polygon
    np.testing.assert_array_equal(drawn, sieve)  # slits run through the part's own pixels only


def _nested_and_apart() -> list[np.ndarray]:
    """Masks whose loops join in every way the outline code has: a part in a hole of a part (with
    a hole of its own), parts that share no row (joined by their nearest points), holes beside
    holes, a hole at the crop's edge column, and ragged noise."""
    nested = np.zeros((40, 40), bool)
    nested[2:38, 2:38] = True
    nested[8:32, 8:32] = False
    nested[12:28, 12:28] = True
    nested[17:22, 17:22] = False
    apart = np.zeros((40, 40), bool)
    apart[2:8, 2:8] = apart[20:26, 30:36] = apart[30:38, 12:15] = True
    apart[4, 4] = False
    holes = np.zeros((20, 30), bool)
    holes[1:19, 0:29] = True
    holes[5, 1:4] = holes[5, 5:9] = holes[6:9, 4] = holes[12, 0] = False
    rng = np.random.default_rng(5)
    return [nested, apart, holes] + [rng.random((25, 35)) < p for p in (0.2, 0.5, 0.8)]


def test_labelme_polygons_and_the_cvat_outline_fill_back_exactly():
    """labelme's fill with the edge (`shape_to_mask`) and CVAT's by area (pycocotools) both give
    every mask back, pixel for pixel, however its parts and holes lie."""
    from labelme.utils import shape_to_mask

    from sam3_video.export.cvat import cvat_outline

    for mask in _nested_and_apart():
        h, w = mask.shape
        drawn = np.zeros_like(mask)
        for polygon in mask_to_polygons(mask):
            drawn |= shape_to_mask((h, w), polygon, "polygon")
        np.testing.assert_array_equal(drawn, mask)
        outline = np.ravel(cvat_outline(mask)).tolist()
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects([outline], h, w))[..., 0], mask)


def test_outlines_without_slits_are_the_ones_walked_with_slits():
    """Parts without holes (labelme) and a mask of one part (CVAT) are walked as traced, without the
    slit machinery: the same points as the walk through it, on blobs, specks and ragged masks."""
    import cv2

    from sam3_video.export.outlines import _Loops

    rng = np.random.default_rng(7)
    masks = []
    for k in range(60):
        mask = np.zeros((40, 50), np.uint8)
        for _ in range(1 + k % 4):  # one to four blobs, apart or touching
            cv2.ellipse(mask, (int(rng.integers(0, 50)), int(rng.integers(0, 40))),
                        (int(rng.integers(1, 12)), int(rng.integers(1, 9))), float(rng.uniform(0, 180)), 0, 360, 1, -1)
        masks.append(mask.astype(bool))
    masks += [rng.random((20, 30)) < p for p in (0.3, 0.6)] + [np.eye(9, dtype=bool), np.ones((1, 1), bool)]
    walked = {False: 0, True: 0}
    for mask in masks:
        loops = _Loops.of(mask, None)
        holes = bool((loops.parent != -1).any())
        for join in (False, True):
            if holes or (join and len(loops.contours) > 1):
                continue
            fast, slow = loops.walk(join), loops.walk(join, slits=True)
            np.testing.assert_array_equal(fast[0], slow[0])
            np.testing.assert_array_equal(fast[1], slow[1])
            walked[join] += 1
    assert walked[False] > 30 and walked[True] > 10, walked


def test_unknown_format_is_a_clear_error():
    assert check_formats(["all"]) == list(FORMATS)
    with pytest.raises(BadRequestError, match="Unknown annotation format 'kitti'"):
        check_formats(["coco", "kitti"])


def test_cvat_outline_gives_the_mask_back_as_cvat_rasterizes_it():
    """One outline an object (parts and holes joined by slits), a quarter pixel inside the pixel
    edges: pycocotools' polygon fill (datumaro's, so CVAT's) gives the mask back exactly."""
    from sam3_video.export.cvat import cvat_outline

    rng = np.random.default_rng(0)
    for mask in [_masks(5)[2], _masks(5)[3], rng.random((H, W)) < 0.1, rng.random((H, W)) < 0.6]:
        outline = cvat_outline(mask)
        drawn = mask_utils.decode(mask_utils.frPyObjects([np.ravel(outline).tolist()], H, W))[..., 0].astype(bool)
        np.testing.assert_array_equal(drawn, mask)
    assert len(cvat_outline(np.zeros((H, W), bool))) == 0


def test_cvat_video_xml_has_a_track_per_object_outside_where_it_is_not_visible(exported):
    from tests.readers import cvat_shown, cvat_video_tracks

    tracks = cvat_video_tracks(exported / "cvat_video.xml")
    assert sorted(tracks) == [1, 2, 3] and tracks[3]["label"] == "person" and tracks[1]["label"] == "car"
    for obj, track in tracks.items():
        for f in range(10):
            visible = f in ARRIVAL and _masks(f)[obj].any()
            assert (cvat_shown(track, f) is not None) == visible, (obj, f)
    assert tracks[3]["keyframes"][7][0] and tracks[1]["keyframes"][8][0]  # outside: hidden, then past the run
