"""backends/frame_reads.py: a propagated frame reads the device at most three times (detections,
association, hand-off), whatever the number of prompts and objects, and gives the results
transformers' methods give (tests/test_session.py compares whole runs with transformers' own loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_video.backends import postprocess
from sam3_video.opcount import OpCounter
from sam3_video.session import VideoSession
from sam3_video.video import probe


def _run(backend, carphone, few_reads: bool, frames: int = 10):
    backend.model.few_reads = few_reads
    try:
        with VideoSession(carphone, backend) as s:
            s.detect(0, "person, window")
            return list(s.propagate("forward", max_frames=frames))
    finally:
        backend.model.few_reads = True


def test_results_equal_transformers_methods(backend, carphone):
    ours, theirs = _run(backend, carphone, True), _run(backend, carphone, False)
    assert [r.frame_index for r in ours] == [r.frame_index for r in theirs]
    assert max(len(r.obj_ids) for r in ours) > 1  # several objects, from two prompts
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.obj_ids, b.obj_ids)
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        np.testing.assert_array_equal(a.masks, b.masks)


def test_a_frame_reads_the_device_at_most_three_times(backend, carphone):
    session = backend.open(carphone, probe(carphone))
    device = backend.device
    backend.device = torch.device("cpu")  # a device object: `.to(device)` is no host copy (opcount)
    try:
        session.detect(0, ["person", "window"])
        list(session.propagate(range(0, 3), reverse=False))
        with torch.inference_mode(), OpCounter(where=True) as counter:
            results = list(session.propagate(range(3, 9), reverse=False))
    finally:
        session.close()
        backend.device = device
    assert min(len(r.obj_ids) for r in results) > 1
    frames = len(results)
    assert sum(counter.syncs.values()) <= 3 * frames, counter.sync_lines
    # and transformers' own methods read many times more: what this guards
    backend.model.few_reads = False
    session = backend.open(carphone, probe(carphone))
    try:
        session.detect(0, ["person", "window"])
        list(session.propagate(range(0, 3), reverse=False))
        with torch.inference_mode(), OpCounter() as before:
            list(session.propagate(range(3, 9), reverse=False))
    finally:
        session.close()
        backend.model.few_reads = True
    assert sum(before.syncs.values()) > 10 * frames


def _chain(n: int = 12, size: int = 16):
    """n detections, each overlapping the next a lot and the one after not at all, best first:
    greedy NMS keeps every other one, and the fixed point takes about n rounds to reach."""
    masks = torch.full((n, size, 8 * n), -1.0)
    for i in range(n):
        masks[i, :, 4 * i:4 * i + 8] = 1.0  # IoU 1/3 with each neighbour
    probs = torch.linspace(0.99, 0.5, n)
    return probs, masks


def test_nms_rounds_reach_what_nms_keep_keeps():
    probs, masks = _chain()
    want = postprocess.nms_keep(probs, masks, 0.1, 0.3)
    assert want.tolist() == [i % 2 == 0 for i in range(len(probs))]
    rounds = postprocess.NmsRounds(probs, masks, 0.1, 0.3)
    keep, settled = rounds.run(4)
    assert not bool(settled)  # the chain is longer than four rounds reach
    while not bool(settled):
        keep, settled = rounds.run(8)
    assert torch.equal(keep, want)


def test_detections_read_again_when_nms_has_not_settled(backend, carphone, monkeypatch):
    want = _run(backend, carphone, False, frames=4)
    run = postprocess.NmsRounds.run
    calls = []

    def not_yet(self, rounds: int = 4):  # every first answer says "not settled": the detector reads again
        keep, settled = run(self, rounds)
        calls.append(self)
        return (keep, torch.tensor(False)) if calls.count(self) == 1 else (keep, settled)

    monkeypatch.setattr(postprocess.NmsRounds, "run", not_yet)
    got = _run(backend, carphone, True, frames=4)
    assert len(calls) >= 2 * len(set(calls)) > 0
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.obj_ids, b.obj_ids)
        np.testing.assert_array_equal(a.masks, b.masks)
