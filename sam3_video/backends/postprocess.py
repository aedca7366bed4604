"""SAM3's mask clean-up in transformers without the hub: mask NMS, hole filling, sprinkle removal.

Two implementations, both with Meta's semantics (tests/test_postprocess.py compares them with
Meta's functions): torch ops on the masks' own device with no host copy (`fill_holes`,
`nms_keep`: the default, SAM3_DEVICE_CLEANUP=1), installed in place of transformers'
`fill_holes_in_mask_scores` and `nms_masks`; or the hub kernel / OpenCV on the host below.

transformers' `Sam3VideoModel` (5.24) runs these three steps through a kernel it fetches from the
hub at run time (the `kernels` package and kernels-community/cv-utils), and when it cannot, it
warns once and skips them: the same object found twice becomes two tracked ids, and holes and
specks stay in the masks. Meta's `sam3` does the same steps with plain fallbacks
(sam3/perflib/nms.py, connected_components.py). `install()` gives transformers' module an object
with the kernel's two functions, written here with Meta's semantics:

- `generic_nms(ious, scores, iou_threshold)`: greedy NMS over a pairwise mask-IoU matrix: take
  the best remaining detection, drop every other one whose IoU with it is above the threshold.
- `cc_2d(mask)`: 8-connected components of each (1, H, W) mask, with each pixel's component size.

Both take and return tensors on the caller's device (CPU or CUDA); the work runs on the host,
with OpenCV (a frame's detections and its low-resolution masks are small).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)
HUB_KERNEL = "kernels-community/cv-utils (hub)"
LOCAL = "sam3-video (OpenCV, on the host)"
DEVICE = "sam3-video (torch, on the masks' device)"
ORIGINAL: dict = {}  # transformers' own nms_masks and fill_holes_in_mask_scores, before install()


class HostCvUtils:
    """The two functions transformers reads from its `cv_utils_kernel`."""

    @staticmethod
    def generic_nms(ious, scores, iou_threshold: float, use_iou_matrix: bool = True):
        """Indices (int64, on `scores`' device) of the detections kept, best first."""
        import torch

        iou = ious.detach().float().cpu().numpy()
        order = np.argsort(-scores.detach().float().cpu().numpy(), kind="stable")
        kept = []
        while order.size:
            best = int(order[0])
            kept.append(best)
            order = order[1:][iou[best, order[1:]] <= iou_threshold]
        return torch.tensor(kept, dtype=torch.int64, device=scores.device)

    @staticmethod
    def cc_2d(mask, get_counts: bool = True):
        """(labels, counts) for a (B, 1, H, W) mask: each foreground pixel's 8-connected component
        (from 1) and that component's size in pixels; 0 on the background. int32, on `mask`'s device."""
        import cv2
        import torch

        host = mask.detach().to("cpu", torch.uint8).numpy()
        labels = np.zeros(host.shape, np.int32)
        counts = np.zeros(host.shape, np.int32)
        for b in range(host.shape[0]):
            n, lab, stats, _ = cv2.connectedComponentsWithStats(host[b, 0], connectivity=8, ltype=cv2.CV_32S)
            sizes = stats[:, cv2.CC_STAT_AREA].astype(np.int32)
            sizes[0] = 0  # the background is no component
            labels[b, 0] = lab
            counts[b, 0] = sizes[lab]
        labels_t = torch.from_numpy(labels).to(mask.device)
        return (labels_t, torch.from_numpy(counts).to(mask.device)) if get_counts else labels_t


def install(on_device: bool = True) -> str:
    """Make transformers' SAM3 video model run its mask NMS and hole filling. `on_device`: with
    `nms_keep` and `fill_holes` in place of its `nms_masks` and `fill_holes_in_mask_scores` (torch
    ops on the masks' device); otherwise with the hub kernel when the `kernels` package can load
    it, else with `HostCvUtils`. Returns which one runs."""
    from transformers.models.sam3_video import modeling_sam3_video as sam3

    ORIGINAL.setdefault("nms_masks", sam3.nms_masks)
    ORIGINAL.setdefault("fill_holes_in_mask_scores", sam3.fill_holes_in_mask_scores)
    if on_device:
        sam3.nms_masks, sam3.fill_holes_in_mask_scores = nms_keep, fill_holes
        return DEVICE
    sam3.nms_masks, sam3.fill_holes_in_mask_scores = ORIGINAL["nms_masks"], ORIGINAL["fill_holes_in_mask_scores"]
    current = sam3.cv_utils_kernel
    if isinstance(current, HostCvUtils):
        return LOCAL
    if current is None and sam3.is_kernels_available():
        sam3._load_cv_utils_kernel_once()  # the hub's, when it can be had
        current = sam3.cv_utils_kernel
    if current:
        return HUB_KERNEL
    sam3.cv_utils_kernel = HostCvUtils()
    log.info("SAM3 mask NMS and hole filling run on the host (no hub kernel)")
    return LOCAL

def small_component_sizes(mask, max_area: int):
    """Each foreground pixel's 8-connected component size where that size is at most `max_area`,
    else `max_area + 1`; 0 on the background. `mask`: (B, 1, H, W) bool; returns int32, same shape
    and device. Torch ops only, a fixed number of them, no host copy and no sync.

    Labels (the pixel's flat index + 1) spread to 8-neighbours in the mask, the largest winning, for
    `max_area` rounds: a component of n <= max_area + 1 pixels is one label by then. A component
    still carrying several labels is larger than that; each of its label regions touches another
    label ("leaks"), so it is never taken as small."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = mask.shape
    mask = mask.bool()
    lab = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, 1, h, w) * mask
    for _ in range(max_area):
        lab = F.max_pool2d(lab, 3, 1, 1) * mask
    top = F.max_pool2d(lab, 3, 1, 1)  # the largest label around each pixel (the mask's own)
    low = -F.max_pool2d(torch.where(mask, -lab, float(-h * w - 1)), 3, 1, 1)  # the smallest
    leak = mask & ((top != lab) | (low != lab))
    flat = lab.view(b, -1).long()
    size = torch.zeros(b, h * w + 1, device=mask.device, dtype=torch.int32).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.int32))
    leaky = torch.zeros(b, h * w + 1, device=mask.device, dtype=torch.int32).scatter_add_(
        1, flat, leak.view(b, -1).int())
    sizes = size.gather(1, flat).view_as(mask)
    small = mask & (sizes <= max_area) & (leaky.gather(1, flat).view_as(mask) == 0)
    return torch.where(small, sizes, torch.where(mask, max_area + 1, 0)).int()


def fill_holes(mask, max_area: int, fill_holes: bool = True, remove_sprinkles: bool = True):
    """SAM3's hole filling and sprinkle removal on mask scores (B, 1, H, W), on their device:
    background components of at most `max_area` pixels become 0.1; then foreground components of at
    most min(max_area, half the mask's area) become -0.1 (Meta's `fill_holes_in_mask_scores`)."""
    import torch

    if max_area <= 0:
        return mask
    if fill_holes:
        background = mask <= 0
        mask = torch.where(background & (small_component_sizes(background, max_area) <= max_area), 0.1, mask)
    if remove_sprinkles:
        foreground = mask > 0
        cut = foreground.sum(dim=(2, 3), keepdim=True, dtype=torch.int32).floor_divide_(2).clamp_(max=max_area)
        sizes = small_component_sizes(foreground, max_area)
        mask = torch.where(foreground & (sizes <= cut), -0.1, mask)
    return mask


def nms_keep(pred_probs, pred_masks, prob_threshold: float, iou_threshold: float):
    """transformers' `nms_masks` on the device: (Q,) bool, the detections above `prob_threshold`
    that greedy mask NMS keeps (best score first; one whose mask IoU with a kept better one is
    above `iou_threshold` goes). `pred_probs` (Q,), `pred_masks` (Q, h, w) logits.

    Greedy NMS is the fixed point of "keep a valid detection unless a kept better one overlaps it";
    it is iterated on the device, with one host check per four rounds (one sync, as a rule)."""
    rounds = NmsRounds(pred_probs, pred_masks, prob_threshold, iou_threshold)
    while True:
        keep, settled = rounds.run(4)
        if settled:
            return keep


class NmsRounds:
    """`nms_keep`'s iteration, run by the caller: `run(rounds)` goes on for `rounds` (a multiple
    of 4) more rounds and returns (keep, settled) as device tensors, `settled` true when one of
    its checks (every 4 rounds, as `nms_keep`) found the fixed point, so that `keep` is
    `nms_keep`'s answer. Nothing is read from the device."""

    def __init__(self, pred_probs, pred_masks, prob_threshold: float, iou_threshold: float):
        import torch

        valid = pred_probs > prob_threshold
        binary = (pred_masks > 0).flatten(1).float() * valid[:, None]
        inter = binary @ binary.T  # exact integer counts in float32 (masks of at most 2^24 pixels)
        area = binary.sum(1)
        iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1)
        order = torch.argsort(-pred_probs.float(), stable=True)  # Meta: np.argsort(-scores, kind="stable")
        rank = torch.empty_like(order).scatter_(0, order, torch.arange(len(order), device=order.device))
        self.valid = valid
        self.beats = (rank[:, None] < rank[None, :]) & (iou > iou_threshold) & valid[:, None] & valid[None, :]
        self.keep = valid

    def run(self, rounds: int = 4):
        settled = None
        for _ in range(max(1, rounds // 4)):
            previous = keep = self.keep
            for _ in range(4):
                keep = self.valid & ~(self.beats & keep[:, None]).any(0)
            same = (keep == previous).all()
            settled = same if settled is None else settled | same
            self.keep = keep
        return self.keep, settled
