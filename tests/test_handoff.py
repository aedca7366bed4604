"""backends/handoff.py against transformers' `postprocess_outputs`: the same ids, labels, scores,
boxes and masks, on contrived outputs that reach every rule and on a real run."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from sam3_video.backends import handoff
from sam3_video.session import VideoSession


@pytest.fixture(scope="module")
def processor(test_model_dir):
    from transformers import Sam3VideoProcessor

    return Sam3VideoProcessor.from_pretrained(test_model_dir)


def _expected(processor, state, out, removed=()):
    """What the transformers backend returned before: `postprocess_outputs` and its tensors."""
    if removed:
        out.obj_id_to_mask = {k: v for k, v in out.obj_id_to_mask.items() if k not in removed}
    post = processor.postprocess_outputs(state, out)
    label_of = {int(i): text for text, ids in post["prompt_to_obj_ids"].items() for i in ids}
    ids = post["object_ids"].cpu().numpy()
    return ids + 1, [label_of[int(i)] for i in ids], post["scores"].float().numpy(), post["boxes"].float().numpy(), \
        post["masks"].numpy()


def _same(result, expected):
    ids, labels, scores, boxes, masks = expected
    np.testing.assert_array_equal(result.obj_ids, ids)
    assert result.labels == labels
    np.testing.assert_array_equal(result.scores, scores)
    np.testing.assert_array_equal(result.boxes_xyxy.reshape(-1, 4), boxes.reshape(-1, 4))
    assert result.masks.dtype == bool
    np.testing.assert_array_equal(result.masks, masks)


def _contrived(rng, dtype):
    """A state and an output with overlapping masks, two or three prompts, tied, zero and removed
    (-1e4) tracker scores, empty masks, suppressed and hot-start-removed ids."""
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoSegmentationOutput

    n = int(rng.integers(1, 9))
    ids = sorted(int(i) for i in rng.choice(40, size=n, replace=False))
    prompts = {0: "person", 1: "car", 2: "dog"}
    prompt_of = {i: int(rng.integers(0, 1 + int(rng.integers(1, 3)))) for i in ids}
    low_h, low_w = 12, 16
    masks = {}
    for i in ids:
        m = torch.full((1, low_h, low_w), -5.0)
        if rng.random() > 0.2:  # else empty
            y0, x0 = int(rng.integers(0, low_h - 2)), int(rng.integers(0, low_w - 2))
            y1, x1 = int(rng.integers(y0 + 1, low_h + 1)), int(rng.integers(x0 + 1, low_w + 1))
            m[0, y0:y1, x0:x1] = torch.from_numpy(rng.uniform(0.5, 4.0, (y1 - y0, x1 - x0))).float()
        masks[i] = m.to(dtype)
    choices = [0.9, 0.5, 0.5, 0.0, -1e4, 0.7, 0.3]
    tracker = {i: float(rng.choice(choices)) for i in ids if rng.random() > 0.1}  # missing: 0.0
    scores = {i: float(rng.uniform(0, 1)) for i in ids}
    suppressed = {i for i in ids if rng.random() < 0.1}
    state = types.SimpleNamespace(video_height=int(rng.integers(20, 50)), video_width=int(rng.integers(20, 60)),
                                  hotstart_removed_obj_ids={i for i in ids if rng.random() < 0.1},
                                  obj_id_to_prompt_id=prompt_of, prompts=prompts)
    out = Sam3VideoSegmentationOutput(obj_id_to_mask=masks, obj_id_to_score=scores, obj_id_to_tracker_score=tracker,
                                      removed_obj_ids=set(), suppressed_obj_ids=suppressed, frame_idx=3)
    removed = {i for i in ids if rng.random() < 0.1}
    return state, out, removed


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_equals_postprocess_outputs_on_contrived_outputs(processor, dtype):
    rng = np.random.default_rng(0)
    overlapped = constrained = 0
    for _ in range(300):
        state, out, removed = _contrived(rng, dtype)
        result = handoff.frame_result(state, out, removed)
        expected = _expected(processor, state, out, removed)
        _same(result, expected)
        for label in set(result.labels):  # masks of one prompt never overlap after the rule
            same = [row for row, text in enumerate(result.labels) if text == label]
            overlapped += int(len(same) > 1 and result.masks[same].sum(0).max() > 1)
        constrained += int(len(expected[0]) > 1)
    assert constrained > 50  # the non-overlap rule was reached many times
    assert overlapped == 0


def test_equals_postprocess_outputs_on_a_run(processor, carphone, backend, monkeypatch):
    seen = []
    original = handoff.frame_result

    def both(state, out, removed=frozenset()):
        result = original(state, out, removed)
        seen.append(len(result.obj_ids))
        _same(result, _expected(processor, state, out, removed))
        return result

    monkeypatch.setattr(handoff, "frame_result", both)
    with VideoSession(carphone, backend) as s:
        s.detect(0, "person, window")
        list(s.propagate("forward", max_frames=12))
    assert len(seen) >= 12 and max(seen) > 1
