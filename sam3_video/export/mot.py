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
`trackeval/`, the run as a MOTChallenge benchmark in TrackEval's data layout (its
`scripts/run_mot_challenge.py` takes it as it is, with BENCHMARK "SAM3", SPLIT_TO_EVAL "all"):
    gt/mot_challenge/seqmaps/SAM3-all.txt           "name", then the sequence (the video's name)
    gt/mot_challenge/SAM3-all/<seq>/seqinfo.ini     seqLength = the video's frame count, ...
    gt/mot_challenge/SAM3-all/<seq>/gt/gt.txt       frame,id,left,top,width,height,1,1,1
    trackers/mot_challenge/SAM3-all/sam3/data/<seq>.txt   the lines of mot.txt
ground truth in MOTChallenge's own convention (frames and pixels from 1, as mot.txt), every
object of class 1: TrackEval scores MOTChallenge's pedestrian class only, so the phrases are
scored together (class-agnostic), and a class of -1 or past 13 stops it.
`mots.txt` (MOTS format; frames from 1 as in MOTSChallenge):
    frame id class_id img_height img_width rle
where rle is a COCO RLE string and class_id the phrase's MOTS class: MOTS tools read 1 as car,
2 as pedestrian and 10 as an ignore region, so phrases take 3..9, 11, 12, ... in prompt order
(`mots_labels.txt`: "class_id name" per line; manifest.json `mots.class_ids`). MOTS allows one
object per pixel, so where masks overlap the higher-scoring object keeps the pixel.
"""

from __future__ import annotations

import os
import re

from ..rle import encode_box
from ..results import EncodedFrame
from .base import AtomicText, ExportContext, Spill, Writer, present

MOTS_RESERVED = (1, 2, 10)  # car, pedestrian, ignore region
TRACKEVAL = "trackeval"
BENCHMARK, SPLIT, TRACKER = "SAM3", "all", "sam3"  # TrackEval's --BENCHMARK, --SPLIT_TO_EVAL, tracker name


def mots_class(category_id: int) -> int:
    """Category 1, 2, ... -> MOTS class 3..9, 11, 12, ... (the reserved values skipped)."""
    n = category_id + 2
    return n + 1 if n >= 10 else n


class MotWriter(Writer):
    files = ("mot.txt", "mot/gt/gt.txt", "mot/gt/labels.txt", f"{TRACKEVAL}/")
    described = ("`mot.txt`: `frame,id,left,top,width,height,conf,-1,-1,-1`, frames and pixels from 1; "
                  "`trackeval/`: the run as a MOTChallenge benchmark in TrackEval's layout (seqmap, "
                  "`seqinfo.ini`, ground truth `frame,id,left,top,width,height,1,1,1`, mot.txt as tracker "
                  "`sam3`); `mot/gt/gt.txt` + `mot/gt/labels.txt`: MOT 1.1 ground truth for CVAT "
                  "(`frame,id,x,y,w,h,1,class,1`, class = line of labels.txt, x, y from 0 as CVAT has them)")
    opens_in = ("TrackEval (`trackeval/` as it is), py-motmetrics; CVAT (Upload annotations, MOT 1.1, the "
                "`mot.zip` download)")

    def __init__(self, folder: str, context: ExportContext):
        self.path, self.gt_path, self.labels_path = (os.path.join(folder, f) for f in self.files[:3])
        os.makedirs(os.path.dirname(self.gt_path), exist_ok=True)
        self.trackeval = os.path.join(folder, TRACKEVAL)
        super().__init__(folder, context)
        self._spill = Spill(folder, "mot")
        self._gt = Spill(folder, "mot-gt")

    def write(self, frame: EncodedFrame) -> None:
        r = frame
        lines, gt = [], []
        for k in present(frame):
            x, y, w, h = frame.boxes[k]
            obj_id, frame_id = int(r.obj_ids[k]), r.frame_index + 1
            lines.append(f"{frame_id},{obj_id},{x + 1},{y + 1},{w},{h},{float(r.scores[k]):.4f},-1,-1,-1")
            gt.append(f"{frame_id},{obj_id},{x},{y},{w},{h},1,{self.context.categories.id_of(r.labels[k])},1")
        self._spill.add(r.frame_index, lines)
        self._gt.add(r.frame_index, gt)

    def close(self) -> None:
        seq, info = self.sequence, self.context.info
        gt_root = os.path.join(self.trackeval, "gt", "mot_challenge")
        seq_dir = os.path.join(gt_root, f"{BENCHMARK}-{SPLIT}", seq)
        tracker = os.path.join(self.trackeval, "trackers", "mot_challenge", f"{BENCHMARK}-{SPLIT}", TRACKER, "data")
        for folder in (os.path.join(gt_root, "seqmaps"), os.path.join(seq_dir, "gt"), tracker):
            os.makedirs(folder, exist_ok=True)
        _write_sorted(self._spill, {self.path: None, os.path.join(tracker, f"{seq}.txt"): None,
                                    os.path.join(seq_dir, "gt", "gt.txt"): _challenge_gt})
        _write_sorted(self._gt, {self.gt_path: None})
        _write_text(self.labels_path, "".join(f"{c['name']}\n" for c in self.context.categories.as_list()))
        _write_text(os.path.join(gt_root, "seqmaps", f"{BENCHMARK}-{SPLIT}.txt"), f"name\n{seq}\n")
        _write_text(os.path.join(seq_dir, "seqinfo.ini"),
                    f"[Sequence]\nname={seq}\nimDir=img1\nframeRate={round(info.fps)}\nseqLength={info.num_frames}\n"
                    f"imWidth={info.width}\nimHeight={info.height}\nimExt=.jpg\n")

    @property
    def sequence(self) -> str:
        """The video's name as a TrackEval sequence name (a seqmap line and a folder name)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.context.video_name).strip("._") or "video"

    def manifest(self) -> dict:
        return {"trackeval": {"benchmark": BENCHMARK, "split": SPLIT, "sequence": self.sequence, "tracker": TRACKER}}


def _challenge_gt(line: str) -> str:
    """A mot.txt line -> MOTChallenge ground truth: the same frame, id and box, confidence 1 (not
    ignored), class 1 (pedestrian, the one class TrackEval scores), visibility 1."""
    return ",".join(line.split(",")[:6]) + ",1,1,1"


class MotsWriter(Writer):
    files = ("mots.txt", "mots_labels.txt")
    described = ("`mots.txt`: `frame id class_id height width rle`, frames from 1, no two masks share a "
                  "pixel; class ids skip MOTS's reserved 1 (car), 2 (pedestrian) and 10 (ignore): phrases are "
                  "3..9, 11, ...; `mots_labels.txt` names them")
    opens_in = "MOTS evaluators (TrackEval MOTSChallenge/KITTI MOTS)"

    def __init__(self, folder: str, context: ExportContext):
        self.path, self.labels_path = (os.path.join(folder, f) for f in self.files)
        super().__init__(folder, context)
        self._spill = Spill(folder, "mots")

    def write(self, frame: EncodedFrame) -> None:
        r = frame
        lines = []
        h, w = r.size
        for k in present(frame):
            obj_id = int(r.obj_ids[k])
            rle = frame.rles[k]
            if frame.kept_areas[k] < frame.areas[k]:  # only the pixels this object keeps
                if not frame.kept_areas[k]:
                    continue  # hidden entirely behind higher-scoring objects
                kept = frame.kept[k]
                rle = encode_box(kept.pixels, kept.x, kept.y, h, w)
            category = mots_class(self.context.categories.id_of(r.labels[k]))
            lines.append(f"{r.frame_index + 1} {obj_id} {category} {h} {w} {rle['counts']}")
        self._spill.add(r.frame_index, lines)

    def close(self) -> None:
        _write_sorted(self._spill, {self.path: None})
        _write_text(self.labels_path, "".join(f"{cls} {name}\n" for cls, name in self._classes().items()))

    def _classes(self) -> dict[int, str]:
        return {mots_class(c["id"]): c["name"] for c in self.context.categories.as_list()}

    def manifest(self) -> dict:
        return {"class_ids": {str(cls): name for cls, name in self._classes().items()},
                "reserved": {"1": "car", "2": "pedestrian", "10": "ignore region"}}


def _write_sorted(spill: Spill, paths: dict) -> None:
    """The spill's lines in key order into each path, through the path's function of a line (None:
    as they are)."""
    outs = {AtomicText(path): change for path, change in paths.items()}
    for key in spill.keys():
        for lines in spill.get(key):
            for line in lines:
                for out, change in outs.items():
                    out.write((change(line) if change else line) + "\n")
    for out in outs:
        out.commit()
    spill.close()


def _write_text(path: str, text: str) -> None:
    out = AtomicText(path)
    out.write(text)
    out.commit()
