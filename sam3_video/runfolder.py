"""A run's output folder: the names of its files, its record (`run.json`, typed as `RunRecord`),
whether it holds a finished run, and each format as a download of its own. Every door (CLI, app,
batch) and the code that reads a run back (continuation, results) go through here.

    OUT_DIR/
      run.json          RunRecord: what the run was asked and how far it got, true at every moment
      results.jsonl     every frame's objects, lossless (results.py)
      objects.json      each object's frames with a mask, as ranges (timeline.py)
      overlay.mp4       output "overlay" (overlay.py)
      annotations/      the formats and manifest.json (export/), zipped as annotations.zip
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from dataclasses import asdict, dataclass, field, fields

from .errors import BadRequestError
from .types import Edit, StartPoint

RECORD = "run.json"
RESULTS = "results.jsonl"
OVERLAY = "overlay.mp4"
ANNOTATIONS = "annotations"
ANNOTATIONS_ZIP = "annotations.zip"
ANNOTATIONS_MANIFEST = "manifest.json"  # inside annotations/
_zipping = threading.Lock()


@dataclass
class RunRecord:
    """What `run.json` holds: the run's settings, then its state (status "running", "complete",
    "stopped" or "failed"; `frames_done` of `frames_expected`, which cover `frame_range`).

    Its start point (`start`) is written as the keys run.json has always had: "prompts",
    "start_frame", "threshold", "removed_ids" and "edits" (each an Edit's fields); the folder it
    continued from is "continued_from"'s "folder"."""

    video: dict  # VideoInfo's fields but the timestamps
    start: StartPoint
    direction: str | None
    max_frames: int | None
    thresholds: dict | None  # the detector's two cuts in effect
    model: str
    backend: str
    device: str
    frames_expected: int
    software: str
    results: str = RESULTS
    postprocessing: str | None = None  # what ran SAM3's mask NMS and hole filling (backends.postprocess)
    continued_from: dict | None = None  # folder, frame, frames_kept
    stride: int = 1  # every `stride`-th frame of the video was done, from start_frame's (1: every frame)
    status: str = "running"
    frames_done: int = 0
    frame_range: list[int] | None = None  # [first, last] frame in the outputs: every `stride`-th frame between
    error: str | None = None
    objects_per_label: dict = field(default_factory=dict)  # label -> objects with a pixel on some frame (as the files)
    elapsed_s: float = 0.0
    notice: str | None = None  # a sentence for the user from the model's side (the object cap bound)
    out_dir: str = field(default="", compare=False)  # where it was read from or written to (not in the file)

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the run's video."""
        return int(self.video["height"]), int(self.video["width"])

    def to_json(self) -> dict:
        doc = {name: getattr(self, name) for name in _FIELDS}
        start = self.start
        doc = {"video": doc.pop("video"), "prompts": list(start.phrases), "start_frame": start.frame,
               "direction": doc.pop("direction"), "max_frames": doc.pop("max_frames"), "threshold": start.threshold,
               "removed_ids": list(start.removed), "edits": [asdict(edit) for edit in start.edits], **doc}
        if doc["continued_from"] is None:
            doc.pop("continued_from")
        return json.loads(json.dumps(doc))  # plain JSON values (lists, not tuples), as the file holds them

    @classmethod
    def from_json(cls, doc: dict, out_dir: str = "") -> "RunRecord":
        """The record a run.json holds (`to_json`'s keys); raises ValueError or TypeError when it
        is not one."""
        continued = doc.get("continued_from")
        try:
            start = StartPoint(int(doc["start_frame"]), tuple(doc["prompts"] or ()), doc.get("threshold"),
                               tuple(doc.get("removed_ids") or ()), tuple(_edit(e) for e in doc.get("edits") or ()),
                               continued.get("folder") if isinstance(continued, dict) else None)
        except (KeyError, BadRequestError) as err:
            raise ValueError(f"not a run's record: {err}") from None
        return cls(**{k: v for k, v in doc.items() if k in _FIELDS}, start=start, out_dir=out_dir)


_FIELDS = tuple(f.name for f in fields(RunRecord) if f.name not in ("start", "out_dir"))  # written as they are


def _edit(doc: dict) -> Edit:
    """An Edit as run.json holds it (its fields; lists for tuples)."""
    box = doc.get("box")
    return Edit(doc["kind"], doc.get("obj_id"), tuple(tuple(p) for p in doc.get("points") or ()),
                tuple(doc.get("labels") or ()), None if box is None else tuple(box), doc.get("label", ""),
                bool(doc.get("positive", True)))


def write_record(folder: str, record: RunRecord) -> None:
    """Replace `folder`'s run.json with `record`, atomically (a reader never sees half a file)."""
    path = os.path.join(folder, RECORD)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record.to_json(), f, indent=2, ensure_ascii=False)
    os.replace(path + ".tmp", path)


def read_record(folder: str | os.PathLike | None) -> RunRecord | None:
    """`folder`'s run.json, or None when there is none (yet) or it cannot be read."""
    if not folder:
        return None
    folder = os.fspath(folder)
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            return RunRecord.from_json(json.load(f), folder)
    except (OSError, ValueError, TypeError):
        return None


def recorded_size(folder: str) -> tuple[int, int]:
    """(height, width) of the video of the run in `folder`, from its run.json (only that part)."""
    with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
        video = json.load(f)["video"]
    return int(video["height"]), int(video["width"])


def is_complete(folder: str, asked: dict, outputs: list[str]) -> bool:
    """Whether `folder` holds a finished run of exactly what `asked` says (run.json's keys:
    prompts, start_frame, direction, max_frames, threshold), with every one of `outputs` (names
    checked by export.check_outputs) whole: checked on disk, not assumed."""
    record = read_record(folder)
    if record is None or not record.complete or record.frames_done != record.frames_expected:
        return False
    written = record.to_json()
    if any(written.get(name) != value for name, value in asked.items()):
        return False
    try:
        with open(os.path.join(folder, RESULTS), encoding="utf-8") as f:
            if sum(1 for line in f if line.strip()) != record.frames_done:
                return False
        if "overlay" in outputs:
            from .errors import Sam3VideoError
            from .video import probe

            try:
                if probe(os.path.join(folder, OVERLAY)).num_frames != record.frames_done:
                    return False
            except Sam3VideoError:
                return False
        if any(o != "overlay" for o in outputs):
            with zipfile.ZipFile(os.path.join(folder, ANNOTATIONS_ZIP)) as z:
                if z.testzip() is not None or f"{ANNOTATIONS}/{ANNOTATIONS_MANIFEST}" not in z.namelist():
                    return False
    except (OSError, zipfile.BadZipFile):
        return False
    return True


def format_files(folder: str) -> list[str]:
    """Each format's file, to download on its own: the files in annotations/, and a folder format
    (labelme, davis, mot, JPEGImages) as a zip of its own next to annotations.zip (made once)."""
    annotations, files = os.path.join(folder, ANNOTATIONS), []
    if os.path.isdir(annotations):
        for name in sorted(os.listdir(annotations)):
            if name.startswith("."):
                continue
            path = os.path.join(annotations, name)
            if os.path.isdir(path):
                packed = os.path.join(folder, f"{name}.zip")
                with _zipping:  # the run's own request and a /results request may ask at once
                    if not os.path.exists(packed):
                        zip_folder(path, packed)
                path = packed
            files.append(path)
    return files


def zip_folder(folder: str, zip_path: str) -> None:
    """Zip `folder` (paths inside start with its name) atomically; hidden files left out."""
    base = os.path.dirname(folder)
    tmp = zip_path + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                packed = name.endswith((".jpg", ".png"))  # already compressed: store as is
                z.write(path, os.path.relpath(path, base), zipfile.ZIP_STORED if packed else zipfile.ZIP_DEFLATED)
    os.replace(tmp, zip_path)
