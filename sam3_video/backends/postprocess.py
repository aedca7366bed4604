"""SAM3's mask clean-up in transformers without the hub: mask NMS, hole filling, sprinkle removal.

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


def install() -> str:
    """Make transformers' SAM3 video model run its mask NMS and hole filling: with the hub kernel
    when the `kernels` package can load it, else with `HostCvUtils`. Returns which one runs."""
    from transformers.models.sam3_video import modeling_sam3_video as sam3

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
