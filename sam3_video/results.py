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
    formats are written, and the frame's pixels are decoded only if a sink reads `image`.
    """

    def __init__(self, result: FrameResult, image: Callable[[], np.ndarray] | None = None):
        self.result = result
        self._image = image

    @property
    def frame_index(self) -> int:
        return self.result.frame_index

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
    def id_image(self) -> np.ndarray:
        """(H, W) uint32 object id per pixel, 0 for background; where masks overlap the higher
        score wins (for formats with one object per pixel)."""
        r = self.result
        out = np.zeros(r.size, dtype=np.uint32)
        for k in np.argsort(r.scores, kind="stable"):
            x, y, w, h = self.boxes[k]  # inside each mask's rectangle only
            region = out[y : y + h, x : x + w]
            region[r.masks[k][y : y + h, x : x + w]] = r.obj_ids[k]
        return out

    @cached_property
    def overlaps(self) -> bool:
        """Whether any pixel is in two masks."""
        return len(self.result) > 1 and int(np.count_nonzero(self.id_image)) < sum(self.areas)

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


def as_encoded(frame: FrameResult | EncodedFrame) -> EncodedFrame:
    return frame if isinstance(frame, EncodedFrame) else EncodedFrame(frame)


def frame_to_json(frame: FrameResult | EncodedFrame) -> dict:
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

    def write(self, frame: FrameResult | EncodedFrame | dict, line: bytes | None = None) -> None:
        """Append a frame: a result, or its record (`frame_to_json`); `line`, when given, is the
        record's line as another results file holds it, copied as it is."""
        assert self._file is not None, "writer is closed"
        if line is None:
            record = frame if isinstance(frame, dict) else frame_to_json(frame)
            line = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        self._file.write(line)
        self._file.flush()
        self.frames_written += 1
        self._ends.append(self._file.tell())

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
