"""COCO RLE read and written inside a mask's rectangle (rle.py) agrees with pycocotools bit for
bit, and a results record's frame (RecordFrame) gives the writers what the frame in memory gives."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam3_video import rle
from sam3_video.results import EncodedFrame, RecordFrame, frame_to_json
from sam3_video.types import FrameResult


def _masks(seed: int, count: int):
    """Masks of every kind: noise, full, empty, a ragged block anywhere (edges included), one pixel."""
    rng = np.random.default_rng(seed)
    for t in range(count):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        m = np.zeros((h, w), bool)
        kind = t % 6
        if kind == 0:
            m = rng.random((h, w)) < rng.random()
        elif kind == 1:
            m[:] = True
        elif kind == 3:
            m[rng.integers(0, h), rng.integers(0, w)] = True
        elif kind >= 4:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            y1, x1 = rng.integers(y0, h) + 1, rng.integers(x0, w) + 1
            m[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.7
        yield m


def _coco(m: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def test_counts_and_compress_are_pycocotools_strings_both_ways():
    for m in _masks(0, 1500):
        ref = _coco(m)
        runs = rle.counts({"size": list(ref["size"]), "counts": ref["counts"]})
        decoded = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool).reshape(m.shape[1], m.shape[0]).T
        np.testing.assert_array_equal(decoded, m)
        assert rle.compress(runs) == ref["counts"].decode("ascii")
        assert rle.counts({"counts": runs.tolist()}).tolist() == runs.tolist()  # uncompressed counts pass through


def test_decode_box_is_the_full_decode_cut_to_any_rectangle():
    rng = np.random.default_rng(1)
    for m in _masks(1, 1500):
        ref = _coco(m)
        coded = {"size": list(ref["size"]), "counts": ref["counts"].decode("ascii")}
        h, w = m.shape
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        bw, bh = int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))
        np.testing.assert_array_equal(rle.decode_box(coded, [x, y, bw, bh]), m[y : y + bh, x : x + bw])
        box = [int(v) for v in mask_utils.toBbox(ref)]
        np.testing.assert_array_equal(rle.Crop.of_rle(coded, box).pixels, m[box[1] : box[1] + box[3], box[0] : box[0] + box[2]])


def test_encode_box_gives_pycocotools_string_of_the_full_frame():
    for m in _masks(2, 1500):
        ref = _coco(m)["counts"].decode("ascii")
        h, w = m.shape
        assert rle.encode_box(m, 0, 0, h, w)["counts"] == ref
        ys, xs = np.nonzero(m)
        if len(xs):
            x, y = int(xs.min()), int(ys.min())
            crop = m[y : ys.max() + 1, x : xs.max() + 1]
            assert rle.encode_box(crop, x, y, h, w) == {"size": [h, w], "counts": ref}
    big = np.zeros((1080, 1920), bool)
    big[1070:, 1900:] = True  # the last columns and rows: long runs, large values
    assert rle.encode_box(big[1070:, 1900:], 1900, 1070, 1080, 1920)["counts"] == _coco(big)["counts"].decode()


def test_crop_without_takes_only_the_shared_pixels():
    a = rle.Crop(2, 3, np.ones((4, 5), bool))
    b = rle.Crop(5, 5, np.ones((4, 4), bool))
    cut = a.without(b)
    expected = np.ones((4, 5), bool)
    expected[2:, 3:] = False  # rows 5..6, columns 5..6 of the frame
    np.testing.assert_array_equal(cut.pixels, expected)
    assert a.pixels.all(), "the crop it was cut from is left as it was"
    assert a.without(rle.Crop(20, 20, np.ones((2, 2), bool))) is a  # apart: the same crop


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_record_frame_gives_what_the_frame_in_memory_gives(seed):
    rng = np.random.default_rng(seed)
    h, w, n = 40, 56, 6
    masks = np.zeros((n, h, w), bool)
    for k in range(n - 1):  # overlapping blocks with ragged edges, one mask left empty
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        masks[k, y0 : y0 + rng.integers(4, 20), x0 : x0 + rng.integers(4, 24)] = True
        masks[k] &= rng.random((h, w)) < 0.9
    scores = rng.choice([0.3, 0.5, 0.5, 0.9], n)  # ties included
    result = FrameResult(7, np.arange(1, n + 1) * 3, ["a", "b"] * 3, scores, np.zeros((n, 4)), masks)
    memory, record = EncodedFrame(result), RecordFrame(frame_to_json(result), (h, w))
    painted = np.zeros((h, w), np.uint32)  # higher score on top, ties to the later object
    for k in np.argsort(result.scores, kind="stable"):
        painted[masks[k]] = result.obj_ids[k]
    for frame in (memory, record):
        assert frame.areas == [int(m.sum()) for m in masks]
        assert frame.boxes == memory.boxes
        for k in range(n):
            x, y, bw, bh = frame.boxes[k]
            np.testing.assert_array_equal(frame.crops[k].pixels, masks[k, y : y + bh, x : x + bw])
            kept = np.zeros((h, w), bool)
            frame.kept[k].of(kept)[...] = frame.kept[k].pixels
            np.testing.assert_array_equal(kept, painted == result.obj_ids[k])
        np.testing.assert_array_equal(frame.id_image, painted)
        assert frame.overlaps == bool(painted.astype(bool).sum() < masks.sum())
        assert frame.frame_index == 7 and len(frame) == n and frame.labels == result.labels
        np.testing.assert_array_equal(frame.scores, result.scores)
        np.testing.assert_array_equal(frame.obj_ids, result.obj_ids)
    assert "result" not in record.__dict__, "the writers' reads decode no whole-frame mask"
