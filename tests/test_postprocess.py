"""SAM3's mask clean-up without the hub kernel (backends/postprocess.py): transformers' mask NMS and
hole filling, run by our torch functions on the masks' device (the default) or through transformers'
own functions with our host kernel, keep and fill exactly as Meta's sam3 does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_video.backends import postprocess
from sam3_video.backends.postprocess import DEVICE, LOCAL, HostCvUtils, install


@pytest.fixture(scope="module", params=["device", "host"])
def sam3_module(request):
    from transformers.models.sam3_video import modeling_sam3_video

    on_device = request.param == "device"
    assert install(on_device=on_device) == (DEVICE if on_device else LOCAL)  # no `kernels` here: ours
    yield modeling_sam3_video
    install()  # the default again for the other modules


def blob(h, w, y0, y1, x0, x1, value=5.0) -> torch.Tensor:
    m = torch.full((h, w), -5.0)
    m[y0:y1, x0:x1] = value
    return m


def test_two_near_identical_detections_keep_the_better_one(sam3_module):
    a = blob(32, 32, 4, 20, 4, 20)
    b = blob(32, 32, 4, 20, 5, 21)  # the same object, one pixel off
    c = blob(32, 32, 24, 30, 24, 30)  # another one
    keep = sam3_module.nms_masks(torch.tensor([0.8, 0.9, 0.7]), torch.stack([a, b, c]), 0.5, 0.1)
    assert keep.tolist() == [False, True, True]
    keep = sam3_module.nms_masks(torch.tensor([0.8, 0.9, 0.3]), torch.stack([a, b, c]), 0.5, 0.1)
    assert keep.tolist() == [False, True, False]  # below the score cut: not kept either


def test_a_small_hole_is_filled_and_a_small_speck_removed(sam3_module):
    m = blob(40, 40, 5, 30, 5, 30)
    m[15:17, 15:17] = -3.0  # a 4-pixel hole
    m[35:37, 35:37] = 3.0  # a 4-pixel speck away from the object
    m[0:10, 34:40] = 2.0  # a 60-pixel part: kept (above the area)
    out = sam3_module.fill_holes_in_mask_scores(m[None, None], max_area=16)[0, 0]
    expected = m > 0
    expected[15:17, 15:17], expected[35:37, 35:37] = True, False  # hole filled, speck gone, the rest as it was
    assert torch.equal(out > 0, expected)


@pytest.mark.parametrize("seed", range(8))
def test_nms_keeps_the_same_detections_as_meta_on_random_inputs(sam3_module, seed):
    from sam3.perflib.masks_ops import mask_iou
    from sam3.perflib.nms import generic_nms_cpu

    g = torch.Generator().manual_seed(seed)
    n = 30
    masks = torch.rand(n, 24, 24, generator=g) > 0.55 + 0.3 * torch.rand(n, 1, 1, generator=g)
    ious = mask_iou(masks, masks)
    scores = torch.rand(n, generator=g)
    for threshold in (0.1, 0.3, 0.5):
        ours = HostCvUtils.generic_nms(ious, scores, threshold)
        assert ours.tolist() == generic_nms_cpu(ious, scores, threshold).tolist()


@pytest.mark.parametrize("seed, size", [(0, (33, 47)), (1, (64, 64)), (2, (17, 90)), (3, (288, 288))])
def test_hole_filling_gives_meta_s_masks_on_random_inputs(sam3_module, seed, size):
    from sam3.model.sam3_tracker_utils import fill_holes_in_mask_scores as meta

    g = torch.Generator().manual_seed(seed)
    h, w = size
    coarse = torch.randn(3, 1, h // 4 + 1, w // 4 + 1, generator=g)
    scores = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear") + 0.3 * torch.randn(3, 1, h, w, generator=g)
    for area in (4, 16, 64):
        ours = sam3_module.fill_holes_in_mask_scores(scores.clone(), max_area=area)
        assert torch.equal(ours, meta(scores.clone(), area)), area
        assert not torch.equal(ours, scores)  # there was something to fill or remove


def test_components_and_their_sizes_match_scikit_image():
    from skimage.measure import label

    rng = np.random.default_rng(5)
    mask = (rng.random((2, 1, 40, 50)) > 0.6).astype(np.uint8)
    labels, counts = HostCvUtils.cc_2d(torch.from_numpy(mask))
    for b in range(2):
        theirs = label(mask[b, 0])
        assert np.array_equal(labels[b, 0].numpy() > 0, theirs > 0)
        sizes = np.bincount(theirs.ravel())
        want = np.where(theirs > 0, sizes[theirs], 0)
        assert np.array_equal(counts[b, 0].numpy(), want)


def test_a_duplicated_detection_is_tracked_as_one_object(backend, carphone, monkeypatch):
    """End to end: the detector is made to answer its best object twice (its query copied over
    another, scored a little lower). With the clean-up the run is the same as without the copy: one
    id. Without it (transformers' own fallback when no kernel loads) duplicates become objects: the
    random detector's near-identical answers alone fill the object cap."""
    from transformers.models.sam3_video import modeling_sam3_video

    from sam3_video.session import VideoSession

    def duplicate(module, args, output):
        logits, masks = output.pred_logits, output.pred_masks
        best = int(logits[0].argmax())
        other = (best + 1) % logits.shape[1]
        logits[0, other] = logits[0, best] - 0.01
        masks[0, other] = masks[0, best]
        return output

    def run(copied: bool) -> list:
        handle = backend.model.detector_model.register_forward_hook(duplicate) if copied else None
        try:
            with VideoSession(carphone, backend) as session:
                detected = session.detect(0, "person", 0.45)
                return [detected.obj_ids.tolist()] + [r.obj_ids.tolist() for r in session.propagate("forward", 0, 3)]
        finally:
            if handle is not None:
                handle.remove()

    plain = run(copied=False)
    assert len(plain[0]) >= 1, "the small model must detect something for this test to mean anything"
    assert run(copied=True) == plain
    monkeypatch.setattr(modeling_sam3_video, "cv_utils_kernel", False)
    for name, original in postprocess.ORIGINAL.items():  # transformers' own, which needs the kernel
        monkeypatch.setattr(modeling_sam3_video, name, original)
    assert len(run(copied=True)[0]) > len(plain[0])


@pytest.mark.parametrize("seed", range(6))
def test_device_nms_keeps_what_meta_keeps_after_its_score_cut(seed):
    """`nms_keep` over all queries (invalid ones masked) against Meta's NMS over the valid ones."""
    from sam3.perflib.masks_ops import mask_iou
    from sam3.perflib.nms import generic_nms_cpu

    g = torch.Generator().manual_seed(seed)
    n = 40
    logits = torch.randn(n, 20, 20, generator=g) + 2.0 * torch.randn(n, 1, 1, generator=g)
    probs = torch.rand(n, generator=g)
    probs[::7] = probs[1]  # ties: the earlier one counts as better, as in Meta's stable sort
    for threshold, cut in ((0.1, 0.3), (0.3, 0.5), (0.6, 0.0)):
        valid = probs > cut
        kept = generic_nms_cpu(mask_iou(logits[valid] > 0, logits[valid] > 0), probs[valid], threshold)
        want = torch.zeros(n, dtype=torch.bool)
        want[torch.nonzero(valid)[:, 0][kept]] = True
        assert torch.equal(postprocess.nms_keep(probs, logits, cut, threshold), want), (threshold, cut)


@pytest.mark.parametrize("area", [1, 4, 16])
def test_small_component_sizes_are_exact_up_to_the_area(area):
    from skimage.measure import label

    rng = np.random.default_rng(area)
    mask = rng.random((2, 1, 40, 50)) > 0.55
    mask[0, 0, 5:30, 20] = True  # a long thin component (many rounds to label through)
    got = postprocess.small_component_sizes(torch.from_numpy(mask), area).numpy()
    for b in range(2):
        theirs = label(mask[b, 0], connectivity=2)
        sizes = np.bincount(theirs.ravel())[theirs]
        want = np.where(mask[b, 0], np.where(sizes <= area, sizes, area + 1), 0)
        assert np.array_equal(got[b, 0], want)
