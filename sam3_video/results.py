"""The lossless results file: one JSON line per frame, masks as COCO run-length encoding.

`results.jsonl` (one line per frame, in the order frames were released):

    {"frame_index": 12,
     "objects": [{"id": 3, "label": "car", "score": 0.91,
                  "box_xyxy": [x0, y0, x1, y1],
                  "mask": {"size": [H, W], "counts": "<COCO RLE string>"}}]}

Scores and boxes are the float32 values written as decimals that read back to the same float32;
masks decode bit for bit with `pycocotools.mask.decode` (or `read_results` here). Each line is
flushed as it is written, so a stopped or crashed run leaves a valid file of the frames done.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from typing import IO, Callable, Iterable, Iterator

import numpy as np

from .rle import Crop
from .runfolder import RESULTS, recorded_size
from .types import FrameResult

JPEG_QUALITY = 95  # frames shipped with the annotations


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) bool -> {"size": [H, W], "counts": str} (COCO RLE)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict) -> np.ndarray:
    """COCO RLE (counts as str or bytes) -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


class EncodedFrame:
    """One frame's result plus what the writers need, each computed once and only when asked.

    Every sink gets the same `EncodedFrame`, so a mask is run-length encoded once however many
    formats are written, and the frame's pixels are decoded only if a sink reads `image`. Writers
    read the objects' ids, labels, scores and boxes from the frame itself and their masks as
    `crops` (each inside its rectangle), so that a `RecordFrame` never decodes a whole-frame mask.
    """

    def __init__(self, result: FrameResult, image: Callable[[], np.ndarray] | None = None):
        self.result = result
        self._image = image

    @property
    def frame_index(self) -> int:
        return self.result.frame_index

    @property
    def obj_ids(self) -> np.ndarray:
        return self.result.obj_ids

    @property
    def labels(self) -> list[str]:
        return self.result.labels

    @property
    def scores(self) -> np.ndarray:
        return self.result.scores

    @property
    def boxes_xyxy(self) -> np.ndarray:
        return self.result.boxes_xyxy

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frame."""
        return self.result.size

    def __len__(self) -> int:
        return len(self.obj_ids)

    @cached_property
    def rles(self) -> list[dict]:
        """COCO RLE per object, `counts` as str (JSON-ready)."""
        return [encode_mask(m) for m in self.result.masks]

    @cached_property
    def areas(self) -> list[int]:
        """Mask pixels per object."""
        return [int(n) for n in self.result.masks.sum(axis=(1, 2))]  # (N, H, W) -> N; N may be 0

    @cached_property
    def boxes(self) -> list[list[int]]:
        """[x, y, width, height] per object, of the mask as exported (`rles`), in pycocotools'
        convention: whole pixels, width = max x - min x + 1, equal to `pycocotools.mask.toBbox`
        of the RLE; [0, 0, 0, 0] for an empty mask. Every format's box comes from here (the
        model's own `boxes_xyxy` may describe its mask before the non-overlap step)."""
        if not self.rles:
            return []
        from pycocotools import mask as mask_utils

        rles = [{"size": rle["size"], "counts": rle["counts"].encode("ascii")} for rle in self.rles]
        return [[int(v) for v in box] for box in mask_utils.toBbox(rles)]

    @cached_property
    def crops(self) -> list[Crop]:
        """Each object's mask inside its rectangle (`boxes`)."""
        return [Crop.of_mask(mask, box) for mask, box in zip(self.result.masks, self.boxes)]

    @cached_property
    def kept(self) -> list[Crop]:
        """Each object's pixels where masks overlap the higher score wins (formats with one object
        a pixel: MOTS, DAVIS); ties go to the object later in the frame. In its own rectangle."""
        order = np.argsort(self.scores, kind="stable")  # lowest first: each loses to those after it
        crops, kept = self.crops, list(self.crops)
        for i, k in enumerate(order):
            for j in order[i + 1 :]:
                kept[k] = kept[k].without(crops[j])
        return kept

    @cached_property
    def kept_areas(self) -> list[int]:
        """Pixels per object in `kept`."""
        return [area if kept is crop else int(np.count_nonzero(kept.pixels))
                for area, crop, kept in zip(self.areas, self.crops, self.kept)]

    @cached_property
    def id_image(self) -> np.ndarray:
        """(H, W) uint32 object id per pixel, 0 for background; where masks overlap the higher
        score wins (`kept`)."""
        out = np.zeros(self.size, dtype=np.uint32)
        for obj_id, kept in zip(self.obj_ids, self.kept):
            kept.of(out)[kept.pixels] = obj_id
        return out

    @cached_property
    def overlaps(self) -> bool:
        """Whether any pixel is in two masks."""
        return self.kept_areas != self.areas

    @cached_property
    def record(self) -> dict:
        """The frame as a `results.jsonl` record (`frame_to_json`)."""
        return frame_to_json(self)

    @cached_property
    def image(self) -> np.ndarray:
        """The source frame, RGB uint8 (H, W, 3), read-only."""
        if self._image is None:
            raise ValueError(f"no image was given for frame {self.frame_index}")
        return self._image()

    @cached_property
    def jpeg(self) -> bytes:
        """The source frame as a JPEG file (quality `JPEG_QUALITY`), encoded once for every format
        that ships frames (labelme, YouTube-VIS)."""
        import cv2

        bgr = cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR)  # 10x faster than a reversed-stride copy
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise ValueError(f"frame {self.frame_index} could not be encoded as JPEG")
        return data.tobytes()


class RecordFrame(EncodedFrame):
    """A frame as `results.jsonl` holds it (`record`): the objects' facts come from the record, each
    mask is decoded inside its rectangle only when a writer asks (`crops`), and its run-length
    encoding is the record's own (never encoded again). `result` (every mask over the whole frame)
    is decoded only if something asks for it; the writers do not."""

    def __init__(self, record: dict, size: tuple[int, int], image: Callable[[], np.ndarray] | None = None):
        self.__dict__["record"] = record  # the cached property's value
        self._size = (int(size[0]), int(size[1]))
        self._image = image
        objects = record["objects"]
        self._ids = np.array([o["id"] for o in objects], np.int64)
        self._labels = [str(o["label"]) for o in objects]
        self._scores = np.array([o["score"] for o in objects], np.float32)
        self._boxes_xyxy = np.array([o["box_xyxy"] for o in objects], np.float32).reshape(-1, 4)

    @property
    def frame_index(self) -> int:
        return int(self.record["frame_index"])

    @property
    def obj_ids(self) -> np.ndarray:
        return self._ids

    @property
    def labels(self) -> list[str]:
        return self._labels

    @property
    def scores(self) -> np.ndarray:
        return self._scores

    @property
    def boxes_xyxy(self) -> np.ndarray:
        return self._boxes_xyxy

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @cached_property
    def result(self) -> FrameResult:  # type: ignore[override]
        return frame_from_json(self.record, *self._size)

    @cached_property
    def rles(self) -> list[dict]:
        return [o["mask"] for o in self.record["objects"]]

    @cached_property
    def areas(self) -> list[int]:
        return rle_areas(self.rles)

    @cached_property
    def crops(self) -> list[Crop]:
        return [Crop.of_rle(rle, box) for rle, box in zip(self.rles, self.boxes)]


def as_encoded(frame: FrameResult | EncodedFrame) -> EncodedFrame:
    return frame if isinstance(frame, EncodedFrame) else EncodedFrame(frame)


def frame_to_json(frame: FrameResult | EncodedFrame) -> dict:
    if isinstance(frame, RecordFrame):
        return frame.record
    encoded = as_encoded(frame)
    result = encoded.result
    return {
        "frame_index": int(result.frame_index),
        "objects": [
            {
                "id": int(obj_id),
                "label": label,
                "score": float(score),
                "box_xyxy": [float(v) for v in box],
                "mask": rle,
            }
            for obj_id, label, score, box, rle in zip(
                result.obj_ids, result.labels, result.scores, result.boxes_xyxy, encoded.rles
            )
        ],
    }


def rle_areas(rles: Iterable[dict]) -> list[int]:
    """The pixel count of each COCO RLE ({"size", "counts"}, counts as str or bytes), without
    decoding a mask (pycocotools sums the run lengths)."""
    from pycocotools import mask as mask_utils

    coded = [{"size": list(r["size"]), "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str)
              else r["counts"]} for r in rles]
    return [int(a) for a in mask_utils.area(coded)] if coded else []


def count_visible(record: dict, ids_per_label: dict[str, set[int]]) -> None:
    """Add the objects of a results `record` that have a pixel to `ids_per_label` (label -> ids): the
    objects the annotation files hold (an object with an empty mask is in none of them)."""
    objects = record["objects"]
    for obj, area in zip(objects, rle_areas(o["mask"] for o in objects)):
        if area:
            ids_per_label.setdefault(obj["label"], set()).add(int(obj["id"]))


def frame_from_json(record: dict, height: int, width: int) -> FrameResult:
    objects = record["objects"]
    masks = np.stack([decode_mask(o["mask"]) for o in objects]) if objects else np.zeros((0, height, width), bool)
    return FrameResult(
        frame_index=int(record["frame_index"]),
        obj_ids=np.array([o["id"] for o in objects], np.int64),
        labels=[o["label"] for o in objects],
        scores=np.array([o["score"] for o in objects], np.float32),
        boxes_xyxy=np.array([o["box_xyxy"] for o in objects], np.float32).reshape(-1, 4),
        masks=masks,
    )


class ResultsWriter:
    """Appends each `FrameResult` to `results.jsonl` as it arrives; memory stays flat."""

    name = RESULTS

    def __init__(self, out_dir: str | os.PathLike):
        self.path = os.path.join(os.fspath(out_dir), self.name)
        self._file: IO[bytes] | None = open(self.path, "wb")
        self.frames_written = 0
        self._ends: list[int] = []  # the file's size after each frame

    def write(self, frame: FrameResult | EncodedFrame | dict, line: bytes | None = None) -> bytes:
        """Append a frame: a result, or its record (`frame_to_json`); `line`, when given, is the
        record's line as another results file holds it, copied as it is. Returns the line written."""
        assert self._file is not None, "writer is closed"
        if line is None:
            record = frame if isinstance(frame, dict) else frame_to_json(frame)
            line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        self._file.write(line)
        self._file.flush()
        self.frames_written += 1
        self._ends.append(self._file.tell())
        return line

    def keep(self, frames: int) -> None:
        """Cut the file back to its first `frames` frames (the ones every other output holds)."""
        if self._file is not None and frames < self.frames_written:
            self._file.truncate(self._ends[frames - 1] if frames else 0)
            self._file.seek(0, os.SEEK_END)
            del self._ends[frames:]
            self.frames_written = frames

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_results(path: str | os.PathLike, height: int | None = None, width: int | None = None) -> Iterator[FrameResult]:
    """Yield the `FrameResult`s of a results.jsonl (or of the folder holding one), sorted by frame.

    `height`/`width` are only needed for files whose frames all have no objects; they default to
    the size recorded in the neighbouring run.json.
    """
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        path = os.path.join(path, ResultsWriter.name)
    if height is None or width is None:
        height, width = recorded_size(folder)
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    for record in sorted(records, key=lambda r: r["frame_index"]):
        yield frame_from_json(record, height, width)
