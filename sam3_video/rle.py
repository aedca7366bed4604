"""COCO run-length encoding read and written inside a mask's bounding rectangle.

pycocotools decodes a mask to the whole frame and encodes one from the whole frame: at 1080p that
is 2 million pixels a mask, for objects that cover a few thousand. The writers of a run's files
(writing.py) work on each mask's rectangle only, so these functions turn a COCO RLE into the
pixels of its rectangle and back, with numpy and no full-frame array:

- `counts`: the run lengths of a COCO RLE (its compressed string, as pycocotools writes it, or a
  list of ints), as pycocotools' `rleFrString` reads them;
- `decode_box`: the (h, w) pixels of an RLE inside a rectangle;
- `encode_box`: the COCO RLE of a frame that is empty but for (h, w) pixels at (x, y), the string
  `pycocotools.mask.encode` gives for the same full-frame mask, character for character;
- `Crop`: a mask as its rectangle's pixels and where the rectangle sits, what the writers take.

COCO RLE runs go down each column (column-major), starting with a run of 0s. tests/test_rle.py
checks every function against pycocotools on random, edge-touching, empty and full masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Box = Sequence[int]  # [x, y, width, height]


@dataclass(frozen=True)
class Crop:
    """One mask inside its bounding rectangle: `pixels` ((h, w) bool) with their top-left pixel at
    column `x`, row `y` of the frame; (0, 0) pixels for an empty mask."""

    x: int
    y: int
    pixels: np.ndarray

    @property
    def box(self) -> list[int]:
        """[x, y, width, height] in the frame."""
        return [self.x, self.y, int(self.pixels.shape[1]), int(self.pixels.shape[0])]

    def of(self, image: np.ndarray) -> np.ndarray:
        """The view of `image` ((H, W, ...)) under the rectangle."""
        h, w = self.pixels.shape
        return image[self.y : self.y + h, self.x : self.x + w]

    def without(self, other: Crop) -> Crop:
        """This mask less the pixels of `other` (the same rectangle; the pixels copied when they change)."""
        h, w = self.pixels.shape
        oh, ow = other.pixels.shape
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.x + w, other.x + ow), min(self.y + h, other.y + oh)
        if x0 >= x1 or y0 >= y1:
            return self
        under = other.pixels[y0 - other.y : y1 - other.y, x0 - other.x : x1 - other.x]
        mine = self.pixels[y0 - self.y : y1 - self.y, x0 - self.x : x1 - self.x]
        if not (mine & under).any():
            return self
        pixels = self.pixels.copy()
        pixels[y0 - self.y : y1 - self.y, x0 - self.x : x1 - self.x] &= ~under
        return Crop(self.x, self.y, pixels)

    @classmethod
    def of_mask(cls, mask: np.ndarray, box: Box) -> Crop:
        """The crop of a full-frame (H, W) bool `mask` whose bounding rectangle is `box` (a view)."""
        x, y, w, h = (int(v) for v in box)
        return cls(x, y, mask[y : y + h, x : x + w])

    @classmethod
    def of_rle(cls, rle: dict, box: Box) -> Crop:
        """The crop of a COCO RLE whose bounding rectangle is `box`, decoded inside it only."""
        return cls(int(box[0]), int(box[1]), decode_box(rle, box))


def counts(rle: dict) -> np.ndarray:
    """The run lengths (int64) of a COCO RLE {"size", "counts"}: counts as a compressed str or bytes,
    or as a list of ints (uncompressed)."""
    raw = rle["counts"]
    if not isinstance(raw, (str, bytes)):
        return np.asarray(raw, np.int64)
    chars = np.frombuffer(raw.encode("ascii") if isinstance(raw, str) else raw, np.uint8).astype(np.int64) - 48
    if not len(chars):
        return np.zeros(0, np.int64)
    # each value: 5 bits a character, least significant first, 0x20 = more characters follow; the last
    # character's 0x10 is the sign
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    place = np.arange(len(chars)) - np.repeat(starts, ends - starts + 1)
    values = np.add.reduceat((chars & 0x1F) << (5 * place), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] |= np.left_shift(-1, 5 * (ends - starts + 1)[negative])
    # from the fourth value on, each is the difference to the value two before
    out = values.copy()
    out[1::2] = np.cumsum(values[1::2])
    out[2::2] = np.cumsum(values[2::2])
    return out


def compress(runs: np.ndarray) -> str:
    """Run lengths -> COCO's compressed counts string (pycocotools' `rleToString`)."""
    runs = np.asarray(runs, np.int64)
    values = runs.copy()
    values[3:] -= runs[1:-2]  # from the fourth value on, the difference to the value two before
    if not len(values):
        return ""
    # 5 bits a character, least significant first, as many as the value needs with its sign bit;
    # 0x20 on every character but a value's last
    magnitude = np.where(values >= 0, values, ~values)
    bits = np.zeros(len(values), np.int64)
    nonzero = magnitude > 0
    bits[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    used = bits // 5 + 1  # characters: (bits + 1 sign bit) / 5, rounded up
    width = int(used.max())
    k = np.arange(width)
    chars = ((values[:, None] >> (5 * k)) & 0x1F) | np.where(k < (used - 1)[:, None], 0x20, 0)
    return (chars[k < used[:, None]] + 48).astype(np.uint8).tobytes().decode("ascii")


def decode_box(rle: dict, box: Box) -> np.ndarray:
    """The pixels of a COCO RLE inside `box` ([x, y, width, height] in the frame), (height, width)
    bool; what `pycocotools.mask.decode(rle)[y:y+h, x:x+w]` holds, without decoding the frame."""
    x, y, w, h = (int(v) for v in box)
    height = int(rle["size"][0])
    if w <= 0 or h <= 0:
        return np.zeros((max(h, 0), max(w, 0)), bool)
    runs = counts(rle)
    ends = np.cumsum(runs)
    lo, hi = x * height, (x + w) * height  # the rectangle's columns, whole, in column-major order
    first = int(np.searchsorted(ends, lo, side="right"))  # the run holding position lo
    last = int(np.searchsorted(ends, hi, side="left"))  # the run holding position hi - 1
    last = min(last, len(runs) - 1)
    lengths = runs[first : last + 1].copy()
    begins = ends[first : last + 1] - lengths
    lengths -= np.maximum(lo - begins, 0)  # the parts outside the columns cut off
    lengths -= np.maximum(ends[first : last + 1] - hi, 0)
    ones = (np.arange(first, last + 1) % 2).astype(bool)  # odd runs are 1s
    band = np.repeat(ones, np.maximum(lengths, 0))
    if len(band) < hi - lo:  # the counts end before the frame does (a truncated RLE): 0s
        band = np.concatenate([band, np.zeros(hi - lo - len(band), bool)])
    return np.ascontiguousarray(band.reshape(w, height)[:, y : y + h].T)


def encode_box(pixels: np.ndarray, x: int, y: int, height: int, width: int) -> dict:
    """The COCO RLE ({"size": [height, width], "counts": str}) of a (height, width) frame whose only
    set pixels are `pixels` ((h, w) bool) placed at column x, row y."""
    pixels = np.asarray(pixels, bool)
    h, w = pixels.shape
    if not pixels.any():
        return {"size": [height, width], "counts": compress(np.array([height * width]))}
    # each of the rectangle's columns, then (unless it is the whole column) one 0 that stands for the
    # frame's rows below and above it
    rows = h + (h < height)
    padded = np.zeros((w, rows), bool)
    padded[:, :h] = pixels.T
    flat = padded.ravel()
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where a run starts, in `padded`
    column, row = np.divmod(starts, rows)
    edges = (x + column) * height + y + row  # the same places in the frame, column-major
    if flat[0]:  # the frame's first run (0s) ends where the rectangle's first 1s are
        edges = np.concatenate([[0, x * height + y], edges])
    else:
        edges = np.concatenate([[0], edges])
    if flat[-1]:  # the rectangle's last 1s end with its last column (no 0 stands below them)
        edges = np.concatenate([edges, [(x + w) * height]])
    runs = np.diff(np.concatenate([edges, [height * width]]))
    if runs[-1] == 0:
        runs = runs[:-1]  # pycocotools ends with the last run that holds pixels
    return {"size": [height, width], "counts": compress(runs)}
