"""A run's annotations opened the way the apps and evaluators open them: labelme's own app path
(its file reader, its Shape objects and their painting, under Qt's offscreen platform), the
reading rules of X-AnyLabeling, TrackEval and datumaro (tests/readers_tools.py: they cannot be
installed next to this project's pins), and labelme polygons on many small ragged masks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam3_video.export import Annotations, Categories, ExportContext
from sam3_video.pipeline import run
from sam3_video.results import EncodedFrame
from sam3_video.types import FrameResult, RunOptions, VideoInfo
from tests.readers_tools import TrackEvalError, datumaro_coco_instances, trackeval_mot, xanylabeling_load

PHRASES = ("car", "person", "bike", "tree", "road", "sign", "wheel", "helmet", "bag", "window", "light", "dog")


@pytest.fixture(scope="module")
def many_run(carphone, backend, tmp_path_factory):
    out = tmp_path_factory.mktemp("many")
    summary = run(carphone, RunOptions.of(PHRASES, 0, "forward", 6, 0.0), out, backend=backend, outputs=["all"])
    assert summary.complete
    return out / "annotations"


def _coco_masks(folder) -> dict[tuple[int, int], np.ndarray]:
    doc = json.loads((folder / "coco_instances.json").read_text())
    return {(a["image_id"] - 1, a["track_id"]): mask_utils.decode({"size": a["segmentation"]["size"],
                                                                  "counts": a["segmentation"]["counts"].encode()})
            .astype(bool) for a in doc["annotations"]}


def _labelme_app_load(path) -> tuple[list, list[str]]:
    """A labelme JSON through labelme 6.3's app path: `read_label_file`, the app's
    `_shapes_from_dicts` (Shape objects), each Shape painted as the canvas paints it; the loguru
    messages of WARNING and above, and any failed assertion, come back as messages."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from loguru import logger
    from PyQt5 import QtGui, QtWidgets

    from labelme import _shape
    from labelme._label_file import read_label_file
    from labelme.app import _shapes_from_dicts

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        data = read_label_file(str(path))
        shapes = _shapes_from_dicts(shape_dicts=data.shapes, label_flags=None)
        canvas = QtGui.QImage(64, 64, QtGui.QImage.Format_ARGB32)
        painter = QtGui.QPainter(canvas)
        try:
            for shape in shapes:
                try:
                    _shape.paint(shape=shape, painter=painter)
                except AssertionError as err:  # what closes the app
                    messages.append(f"AssertionError painting a {shape.shape_type}: {err}")
        finally:
            painter.end()
    finally:
        logger.remove(sink)
    assert app is not None
    return shapes, messages


def test_every_labelme_frame_opens_in_labelme_and_x_anylabeling_without_a_message(many_run):
    frames = sorted((many_run / "labelme").glob("*.json"))
    assert len(frames) == 6
    masks = _coco_masks(many_run)
    seen = set()
    for path in frames:
        shapes, messages = _labelme_app_load(path)
        assert messages == [], (path.name, messages[:3])
        seen |= {(int(path.stem), s.group_id) for s in shapes}
        xshapes, logged = xanylabeling_load(path)
        assert logged == [] and len(xshapes) == len(shapes)
    assert seen == set(masks)


def test_the_rectangle_forms_each_app_rejects(tmp_path):
    """Why the files hold no rectangle: labelme's painting asserts 1 or 2 points, X-AnyLabeling
    warns on 2; both load the polygon."""
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "00000.jpg")
    square = [[2, 2], [20, 2], [20, 20], [2, 20]]
    for name, shape_type, points in [("four", "rectangle", square), ("two", "rectangle", [[2, 2], [20, 20]]),
                                     ("polygon", "polygon", square)]:
        doc = {"version": "5.5.0", "flags": {}, "imagePath": "00000.jpg", "imageData": None, "imageHeight": 64,
               "imageWidth": 64, "shapes": [{"label": "car", "points": points, "group_id": 1, "description": "",
                                             "shape_type": shape_type, "flags": {}, "kie_linking": []}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        labelme_messages = _labelme_app_load(tmp_path / f"{name}.json")[1]
        xany_messages = xanylabeling_load(tmp_path / f"{name}.json")[1]
        assert (bool(labelme_messages), bool(xany_messages)) == {"four": (True, False), "two": (False, True),
                                                                 "polygon": (False, False)}[name]


def _speckles(rng, count: int, h: int, w: int) -> np.ndarray:
    """(count, H, W) bool: small ragged objects (1 to ~60 px: specks, lines, parts, holes)."""
    masks = np.zeros((count, h, w), bool)
    for k in range(count):
        for _ in range(rng.integers(1, 4)):
            y, x, r = rng.integers(2, h - 2), rng.integers(2, w - 2), rng.integers(0, 4)
            patch = masks[k, max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
            patch |= rng.random(patch.shape) < rng.uniform(0.4, 1.0)
        masks[k, rng.integers(0, h), rng.integers(0, w)] = True  # never empty
    return masks


def test_labelme_polygons_fill_back_every_small_object(tmp_path):
    """Many small ragged objects on each frame: filled as labelme fills them (`shape_to_mask`, edge
    included), each object's polygons give back its mask exactly (IoU 1 for every one)."""
    from labelme import LabelFile
    from labelme.utils import shape_to_mask

    h, w, count = 48, 64, 40
    info = VideoInfo(path="/v/specks.mp4", width=w, height=h, num_frames=20, fps=25.0, duration=0.8)
    rng = np.random.default_rng(7)
    annotations = Annotations(str(tmp_path), ["labelme"], ExportContext(info, Categories(["speck"])))
    truth = {}
    for frame in range(0, 20, 5):  # every 5th frame, as a run with a stride
        masks = _speckles(rng, count, h, w)
        ids = list(range(1, count + 1))
        truth.update({(frame, i): m for i, m in zip(ids, masks)})
        result = FrameResult(frame, ids, ["speck"] * count, np.full(count, 0.5), np.zeros((count, 4)), masks)
        annotations.write(EncodedFrame(result, lambda: np.zeros((h, w, 3), np.uint8)))
    annotations.close({})
    drawn: dict = {}
    for path in sorted((tmp_path / "annotations" / "labelme").glob("*.json")):
        for shape in LabelFile(str(path)).shapes:
            key = (int(path.stem), shape["group_id"])
            drawn[key] = drawn.get(key, False) | shape_to_mask((h, w), shape["points"], "polygon")
    assert set(drawn) == set(truth)
    ious = np.array([(drawn[k] & m).sum() / (drawn[k] | m).sum() for k, m in truth.items()])
    assert (ious == 1).all(), (ious.min(), (ious < 1).sum())


def test_trackeval_takes_the_mot_ground_truth_and_scores_the_run_perfectly(many_run):
    entry = json.loads((many_run / "manifest.json").read_text())["mot"]["trackeval"]
    root = many_run / "trackeval"
    read = trackeval_mot(root / "gt" / "mot_challenge", root / "trackers" / "mot_challenge", entry["benchmark"],
                         entry["split"])
    seq = read[entry["sequence"]]
    video = json.loads((many_run.parent / "run.json").read_text())["video"]
    assert seq["length"] == video["num_frames"] == 120  # timesteps: the video's frame indices + 1
    (tracker,) = seq["trackers"].values()
    masks = _coco_masks(many_run)
    assert sum(len(rows) for rows in seq["gt"].values()) == len(masks) > 20
    for t, rows in seq["gt"].items():  # the same ids and boxes at every timestep: HOTA, MOTA, IDF1 all 100
        np.testing.assert_array_equal(rows[np.argsort(rows[:, 0])], tracker[t][np.argsort(tracker[t][:, 0])])
        for obj, x, y, bw, bh in rows:
            mask = masks[(t - 1, int(obj))]
            ys, xs = np.nonzero(mask)
            assert [x, y, bw, bh] == [xs.min() + 1, ys.min() + 1, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]


def test_mot_txt_alone_is_not_trackeval_ground_truth(many_run, tmp_path):
    """The rules that stopped TrackEval on mot.txt as ground truth, kept true by the reader."""
    import shutil

    root = many_run / "trackeval"
    copy = tmp_path / "trackeval"
    shutil.copytree(root, copy)
    (gt_txt,) = copy.glob("gt/mot_challenge/SAM3-all/*/gt/gt.txt")
    shutil.copy(many_run / "mot.txt", gt_txt)
    with pytest.raises(TrackEvalError, match="invalid gt classes"):
        trackeval_mot(copy / "gt" / "mot_challenge", copy / "trackers" / "mot_challenge", "SAM3", "all")


def test_datumaro_imports_the_standard_coco_layout(many_run):
    from PIL import Image

    assert datumaro_coco_instances(many_run) == {}  # coco_instances.json alone: "Failed to find dataset"
    (subset,) = datumaro_coco_instances(many_run / "coco").items()
    name, found = subset
    assert name == "default"
    shipped = json.loads((many_run / "coco_instances.json").read_text())
    assert json.loads(open(found["file"], encoding="utf-8").read()) == shipped
    assert sorted(found["images"]) == sorted(os.path.splitext(i["file_name"])[0] for i in shipped["images"])
    for image in found["images"].values():
        assert Image.open(image).size == (176, 144)


def test_the_summary_counts_the_objects_the_files_hold(carphone, backend, tmp_path, monkeypatch):
    """An object tracked on every frame but never with a pixel is in no file, so not in the count."""
    import dataclasses

    from sam3_video.session import VideoSession
    from sam3_video.web.runs import summary_line

    propagate, hidden = VideoSession.propagate, set()

    def one_object_never_visible(self, *args, **kwargs):
        for result in propagate(self, *args, **kwargs):
            hidden.update(result.obj_ids.tolist()[:1] if not hidden else ())
            masks = result.masks.copy()
            masks[np.isin(result.obj_ids, list(hidden))] = False
            yield dataclasses.replace(result, masks=masks)

    monkeypatch.setattr(VideoSession, "propagate", one_object_never_visible)
    summary = run(carphone, RunOptions.of(("person", "window"), 0, "forward", 4, 0.0), tmp_path, backend=backend,
                  outputs=["coco"])
    coco = json.loads((tmp_path / "annotations" / "coco_instances.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    in_files: dict[str, set] = {}
    for ann in coco["annotations"]:
        in_files.setdefault(names[ann["category_id"]], set()).add(ann["track_id"])
    assert hidden and not hidden & set().union(*in_files.values())
    assert summary.objects_per_label == {label: len(ids) for label, ids in sorted(in_files.items())}
    assert json.loads((tmp_path / "run.json").read_text())["objects_per_label"] == summary.objects_per_label
    total = sum(summary.objects_per_label.values())
    assert f"{total} objects" in summary_line({"status": "complete", "frames": 4, "objects_per_label":
                                              summary.objects_per_label})
