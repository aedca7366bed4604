"""Reading rules of tools that cannot be installed next to this project's pins, re-implemented from
their source for tests (as tests/readers.py does for others). Each says which version it follows.

- X-AnyLabeling 4.0.2 (not on PyPI as a library; its app needs its own Qt stack):
  `anylabeling/views/labeling/label_file.py` `LabelFile.load`, `shape.py` `Shape.load_from_dict`,
  `Shape.paint`.
- TrackEval 1.3.0 (`trackeval` on PyPI requires opencv-python, which would replace this project's
  opencv-python-headless): `datasets/mot_challenge_2d_box.py` `MotChallenge2DBox`.
- datumaro 1.13.12 (would downgrade opencv-python-headless and pandas below this project's pins):
  `plugins/data_formats/coco/importer.py` `CocoInstancesImporter.detect` / `find_sources`,
  `coco/base.py` `DirPathExtracter`.
"""

from __future__ import annotations

import configparser
import csv
import glob
import json
import os

import numpy as np
from PIL import Image

# X-AnyLabeling 4.0.2 ------------------------------------------------------------------------------
XANY_SHAPE_TYPES = ("polygon", "rectangle", "rotation", "quadrilateral", "point", "line", "circle", "linestrip",
                    "cuboid")  # Shape.get_supported_shape(); any other shape_type raises on load


class XAnyLabelingError(Exception):
    """Where X-AnyLabeling raises LabelFileError (the file does not open)."""


def xanylabeling_load(path) -> tuple[list[dict], list[str]]:
    """The shapes of a labelme JSON as X-AnyLabeling loads and paints them, and the warnings and
    errors it logs on the way:
      - no `version`: warning "Loading JSON file (...) of unknown version";
      - a rectangle of 2 points: warning "Diagonal vertex mode is deprecated ..." (turned into 4);
      - the image is `imagePath`'s base name beside the JSON; it must open (else LabelFileError);
      - shape_type must be a supported one, `kie_linking` a list of integer pairs (else LabelFileError);
      - painting: a rectangle or rotation with other than 1, 2 or 4 points logs an error and is not drawn."""
    logged: list[str] = []
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("version") is None:
        logged.append(f"warning: Loading JSON file ({path}) of unknown version")
    for shape in data["shapes"]:
        if shape["shape_type"] == "rectangle" and len(shape["points"]) == 2:
            logged.append("warning: Diagonal vertex mode is deprecated in X-AnyLabeling release v2.2.0 or later.")
    image = os.path.join(os.path.dirname(path), os.path.basename(data["imagePath"]))
    try:
        Image.open(image).size
    except OSError as err:
        raise XAnyLabelingError(f"image {image}: {err}") from err
    for shape in data["shapes"]:
        shape_type = shape.get("shape_type") or "polygon"
        if shape_type not in XANY_SHAPE_TYPES:
            raise XAnyLabelingError(f"Unexpected shape_type: {shape_type}")
        links = shape.get("kie_linking", [])
        if not isinstance(links, list) or any(not isinstance(p, list) or len(p) != 2 or
                                              any(type(v) is not int for v in p) for p in links):
            raise XAnyLabelingError("kie_linking must be a list of integer pairs")
        if shape_type in ("rectangle", "rotation") and len(shape["points"]) not in (1, 2, 4):
            logged.append(f"error: Invalid points count for {shape_type}: expected 1, 2 or 4, "
                          f"got {len(shape['points'])}")
    return data["shapes"], logged


# TrackEval 1.3.0, MOTChallenge 2D boxes -----------------------------------------------------------
MOT_CLASSES = range(1, 14)  # pedestrian 1 ... crowd 13: any other gt class stops the evaluation
MOT_DISTRACTORS = (2, 7, 8, 12)  # person_on_vehicle, static_person, distractor, reflection


class TrackEvalError(Exception):
    """Where TrackEval raises TrackEvalException."""


def trackeval_mot(gt_folder, trackers_folder, benchmark: str, split: str) -> dict:
    """{seq: {"length": seqLength, "gt": {t: rows}, "trackers": {name: {t: rows}}}}, rows an (n, 5)
    float array of id, left, top, width, height, with the rules of `MotChallenge2DBox`:
      - sequences: the seqmap `GT_FOLDER/seqmaps/<benchmark>-<split>.txt` (a header line, then a
        name a line); each `GT_FOLDER/<benchmark>-<split>/<seq>/seqinfo.ini` gives seqLength;
      - files: `<seq>/gt/gt.txt`, and `TRACKERS_FOLDER/<benchmark>-<split>/<tracker>/data/<seq>.txt`
        for every tracker folder; the delimiter is sniffed from the first line;
      - timesteps are the first column, 1..seqLength; any other value stops it;
      - gt needs 8 columns (class in the 8th); ids must be unique within a timestep;
      - tracker class (8th column, if any) above 1 stops it ("only valid for pedestrian");
      - where gt and tracker both have rows, a gt class outside 1..13 stops it ("invalid gt classes"),
        and tracker rows matched to distractor gt are dropped (only checked here: none allowed);
      - kept gt: class 1 with a non-zero 7th column (zero_marked)."""
    root = os.path.join(gt_folder, f"{benchmark}-{split}")
    seqmap = os.path.join(gt_folder, "seqmaps", f"{benchmark}-{split}.txt")
    if not os.path.isfile(seqmap):
        raise TrackEvalError(f"no seqmap found: {os.path.basename(seqmap)}")
    with open(seqmap) as f:
        seqs = [row[0] for i, row in enumerate(csv.reader(f)) if i > 0 and row and row[0]]
    trackers_root = os.path.join(trackers_folder, f"{benchmark}-{split}")
    out = {}
    for seq in seqs:
        ini = configparser.ConfigParser()
        if not ini.read(os.path.join(root, seq, "seqinfo.ini")):
            raise TrackEvalError(f"ini file does not exist: {seq}/seqinfo.ini")
        length = int(ini["Sequence"]["seqLength"])
        gt = _mot_rows(os.path.join(root, seq, "gt", "gt.txt"), length, is_gt=True)
        trackers = {name: _mot_rows(os.path.join(trackers_root, name, "data", f"{seq}.txt"), length, is_gt=False)
                    for name in sorted(os.listdir(trackers_root))}
        for rows in trackers.values():
            for t, tr in rows.items():
                if tr[:, 6].max() > 1:
                    raise TrackEvalError(f"Evaluation is only valid for pedestrian class ({seq}, {t})")
                if t in gt and len(invalid := np.setdiff1d(gt[t][:, 6], MOT_CLASSES)):
                    raise TrackEvalError(f"Attempting to evaluate using invalid gt classes ... timestep {t}: "
                                         + " ".join(str(int(x)) for x in invalid))
                if t in gt:
                    assert not np.isin(gt[t][:, 6], MOT_DISTRACTORS).any(), "distractor gt: tracker rows would drop"
        kept = {t: r[(r[:, 6] == 1) & (r[:, 5] != 0)][:, :5] for t, r in gt.items()}
        out[seq] = {"length": length, "gt": kept,
                    "trackers": {name: {t: r[:, :5] for t, r in rows.items()} for name, rows in trackers.items()}}
    return out


def _mot_rows(path, length: int, is_gt: bool) -> dict[int, np.ndarray]:
    """timestep -> (n, 7) float: id, left, top, width, height, 7th column, class (1 if absent)."""
    if not os.path.isfile(path):
        raise TrackEvalError(f"{'GT' if is_gt else 'Tracker'} file not found: {path}")
    by_t: dict[int, list] = {}
    with open(path) as f:
        first = f.readline()
        if not first:
            return {}
        f.seek(0)
        dialect = csv.Sniffer().sniff(first)
        dialect.skipinitialspace = True
        for row in csv.reader(f, dialect):
            if row and row[-1] == "":
                row = row[:-1]
            by_t.setdefault(int(float(row[0])), []).append(row)
    out = {}
    for t, rows in by_t.items():
        if not 1 <= t <= length:
            raise TrackEvalError(f"{'Ground-truth' if is_gt else 'Tracking'} data contains invalid timesteps: {t}")
        data = np.asarray(rows, dtype=float)
        if data.shape[1] < 8 and is_gt:
            raise TrackEvalError(f"GT data is not in a valid format, there is not enough rows in timestep {t}")
        classes = data[:, 7] if data.shape[1] >= 8 else np.ones(len(data))
        if len(np.unique(data[:, 1])) != len(data):
            raise TrackEvalError(f"non-unique ids in timestep {t}")
        out[t] = np.column_stack([data[:, 1:6], data[:, 6], classes])
    return out


# datumaro 1.13.12, coco_instances -----------------------------------------------------------------
def datumaro_coco_instances(root) -> dict[str, dict]:
    """{subset: {"file", "images_dir", "images": {item id: image path}}} as datumaro imports `root`
    with format coco_instances, or an empty dict where it finds no dataset:
      - detection: a file matching `annotations/instances_*.json` under `root`;
      - sources: every `**/*_*.json` whose name starts with `instances_`; subset = the rest of the name;
      - the dataset root is the file's path before `annotations`; the images are in `<root>/images`
        (`<root>/images/<subset>` where that exists), which must exist; an item's image is
        `file_name` inside it, its id `file_name` without the extension."""
    if not glob.glob(os.path.join(root, "annotations", "instances_*.json")):
        return {}
    out = {}
    for path in glob.glob(os.path.join(root, "**", "*_*.json"), recursive=True):
        name = os.path.splitext(os.path.basename(path))[0]
        if not name.startswith("instances_"):
            continue
        subset = name.split("instances_", 1)[1]
        base = path.rsplit("annotations", 1)[0]
        images = os.path.join(base, "images")
        if not os.path.isdir(images):
            raise FileNotFoundError(f"there should exist a directory for images as {images}")
        if os.path.isdir(os.path.join(images, subset)):
            images = os.path.join(images, subset)
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        out[subset] = {"file": path, "images_dir": images,
                       "images": {os.path.splitext(i["file_name"])[0]: os.path.join(images, i["file_name"])
                                  for i in doc["images"]}}
    return out
