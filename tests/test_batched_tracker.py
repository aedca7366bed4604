"""The batched tracker (backends/batched_tracker.py) against transformers' own per-object loop on the
same weights: same frames, same ids, masks with IoU >= 0.999 per object per frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_video.backends import batched_tracker
from sam3_video.session import VideoSession

BOXES = [(10, 10, 80, 70), (90, 20, 170, 100), (20, 80, 90, 140), (100, 90, 170, 140)]


@pytest.fixture()
def batch_sizes(monkeypatch):
    """The size of every batched tracker pass while the test runs."""
    sizes: list[int] = []
    original = batched_tracker._track_batch

    def spy(tracker, state, frame_idx, layouts):
        sizes.append(len(layouts))
        return original(tracker, state, frame_idx, layouts)

    monkeypatch.setattr(batched_tracker, "_track_batch", spy)
    return sizes


def _run(backend, video, batched: bool, phrases: str, boxes, direction: str, start: int, limit: int):
    tracker = backend.model.tracker_model
    before = tracker.batch_objects
    tracker.batch_objects = batched
    try:
        with VideoSession(video, backend) as s:
            s.detect(start, phrases)
            for box in boxes:
                s.add_object(start, "thing", box=box)
            return list(s.propagate(direction, max_frames=limit))
    finally:
        tracker.batch_objects = before


def _assert_same(ours, theirs, min_objects: int) -> None:
    assert [r.frame_index for r in ours] == [r.frame_index for r in theirs]
    assert max(len(r) for r in theirs) >= min_objects, "the test needs several objects tracked at once"
    for a, b in zip(ours, theirs):
        assert a.obj_ids.tolist() == b.obj_ids.tolist(), a.frame_index
        assert a.labels == b.labels
        for obj, m1, m2 in zip(a.obj_ids, a.masks, b.masks):
            union = np.logical_or(m1, m2).sum()
            iou = np.logical_and(m1, m2).sum() / union if union else 1.0
            assert iou >= 0.999, (a.frame_index, obj, iou)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_small_model_detected_and_added_objects_both_directions(carphone, edit_backend, batch_sizes):
    """Detected objects, objects added by box and new detections later on (several memory layouts,
    hence several batches), forward then backward from frame 20."""
    args = ("person, window", BOXES[:2], "both", 20, 12)
    theirs = _run(edit_backend, carphone, False, *args)
    assert batch_sizes == []
    ours = _run(edit_backend, carphone, True, *args)
    _assert_same(ours, theirs, min_objects=4)
    assert max(batch_sizes) >= 4, batch_sizes  # objects really went through together


@pytest.fixture(scope="module")
def full_depth_backend(tmp_path_factory):
    """The full-depth narrow SAM3 (the real layer counts); its tracker says "object" for added
    boxes (object-score bias +5) so that their masks are not empty."""
    from sam3_video.backends import load_backend
    from sam3_video.testmodel import make_test_model

    folder = make_test_model(tmp_path_factory.mktemp("full-depth"), seed=1, full_depth=True, score_spread=False)
    backend = load_backend(folder, backend="transformers", device="cpu")
    with torch.no_grad():
        backend.model.tracker_model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(5.0)
    return backend


def test_full_depth_model_four_added_objects(carphone, full_depth_backend, batch_sizes):
    args = ("person", BOXES, "forward", 0, 6)
    theirs = _run(full_depth_backend, carphone, False, *args)
    ours = _run(full_depth_backend, carphone, True, *args)
    _assert_same(ours, theirs, min_objects=4)
    assert batch_sizes and set(batch_sizes) == {4}, batch_sizes


def test_switch_off_runs_transformers_loop(edit_backend, carphone, batch_sizes):
    _run(edit_backend, carphone, False, "person", BOXES[:1], "forward", 0, 3)
    assert batch_sizes == []
