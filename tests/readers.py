"""Reading rules of tools that are not installable packages, re-implemented faithfully for tests.

DAVIS 2017 semi-supervised evaluator (davisvideochallenge/davis2017-evaluation: `davis.py`
`_get_all_elements` / `get_all_masks`, `results.py` `read_masks`, `evaluation.py`
`_evaluate_semisupervised`, `metrics.py` `db_eval_iou`):
  - a sequence's PNGs are read in sorted file order, each as `np.array(Image.open(png))` (the
    palette index per pixel) into one float64 array;
  - ground truth: 255 (void) is set to 0; the number of objects is the largest index on the FIRST
    frame; index v is object v, through a float64 array objects x frames x H x W; the first and
    the last frame are then dropped;
  - results are read for the frames left (all but the first and the last); their number of
    objects is the largest index over those frames (255 is not special there);
  - a different number of objects in the results than in the ground truth stops the evaluation
    ("In your PNG files there is an index higher than the number of objects in the sequence!");
  - J per object and frame is the IoU; a frame where both masks are empty scores 1.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


class DavisAbort(Exception):
    """Where the evaluator prints its message and exits."""


def davis_read(folder) -> tuple[np.ndarray, list[str]]:
    """(frames, H, W) palette indices of a DAVIS PNG folder, sorted by file name, and the names."""
    names = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".png"))
    return np.stack([np.array(Image.open(os.path.join(folder, f"{n}.png"))) for n in names]), names


def davis_objects(masks: np.ndarray, count: int) -> np.ndarray:
    """(count, frames, H, W) bool: object v is index v + 1 (the evaluator's `tmp == masks`)."""
    return np.arange(1, count + 1)[:, None, None, None] == masks[None]


def davis_ground_truth(folder) -> tuple[np.ndarray, int]:
    """Ground-truth objects ((objects, frames - 2, H, W) bool) and the bytes of the float64 array
    the evaluator builds to separate them."""
    masks, _ = davis_read(folder)
    masks = masks.astype(np.float64)
    masks[masks == 255] = 0
    count = int(masks[0].max())
    return davis_objects(masks, count)[:, 1:-1], count * masks.size * 8


def davis_results(folder) -> np.ndarray:
    masks = davis_read(folder)[0][1:-1].astype(np.float64)
    return davis_objects(masks, int(masks.max()))


def davis_j(gt_folder, res_folder) -> np.ndarray:
    """J per ground-truth object and frame, as `_evaluate_semisupervised` computes it."""
    gt, _ = davis_ground_truth(gt_folder)
    res = davis_results(res_folder)
    if res.shape[0] != gt.shape[0]:
        raise DavisAbort("In your PNG files there is an index higher than the number of objects in the sequence!")
    inter = (gt & res).sum(axis=(2, 3))
    union = (gt | res).sum(axis=(2, 3))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))
