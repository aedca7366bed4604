"""A frame's model output to a `FrameResult` in one copy from the device.

transformers' `Sam3VideoProcessor.postprocess_outputs` turns a frame's low-resolution masks into
video-size masks, boxes and scores, but reads the device a dozen times on the way (which masks
are empty, `nonzero` over them, the boxes' boolean indexing, `unique` over the prompt groups,
each result's `.cpu()`): on a GPU each read stalls the host until the device has caught up
(bench/results/ops-cpu.md, "hand-off"). `frame_result` computes the same result with everything
that depends on the masks left on the device, and brings it to the host in one copy:

- what is known on the host stays there: which objects are hidden (suppressed, or removed by the
  hot-start rules), each object's prompt and scores, so the order of the objects is chosen on the
  host and no index tensor is uploaded;
- which masks are empty, the boxes (the masks' extent, as torchvision's `masks_to_boxes`) and the
  non-overlap rule are computed on the device;
- the non-overlap rule, per prompt group: where masks of one prompt overlap, the pixel goes to the
  object with the highest tracker score, the lowest id on a tie; an object whose tracker score is
  not above 0 keeps no pixel; all of it only when more than one non-empty mask is shown, as in
  transformers. Sorting each group by (score, id) on the host makes "highest score" "first in
  order", a running OR along the objects;
- boxes, the empty flags and the masks travel in one copy (`frame_reads.Packet`); empty masks
  are dropped and the objects put back in id order on the host.

tests/test_handoff.py compares it with `postprocess_outputs` on real and contrived outputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..types import FrameResult
from .frame_reads import Packet


def frame_result(state, out, removed: set[int] | frozenset[int] = frozenset()) -> FrameResult:
    """The `FrameResult` of `out` (a `Sam3VideoSegmentationOutput` of `state`), leaving out the
    transformers ids in `removed`; ids are ours (transformers' + 1)."""
    hidden = set(removed) | set(out.suppressed_obj_ids or ()) | set(state.hotstart_removed_obj_ids)
    height, width = int(state.video_height), int(state.video_width)
    tracker_scores = out.obj_id_to_tracker_score or {}
    shown = [i for i in sorted(out.obj_id_to_mask) if i not in hidden]
    if not shown:
        return _empty(int(out.frame_idx), height, width)
    prompt_of = state.obj_id_to_prompt_id
    # objects by prompt group, and in each group by falling tracker score then id
    order = sorted(shown, key=lambda i: (prompt_of[i], -float(tracker_scores.get(i, 0.0)), i))
    low = torch.cat([out.obj_id_to_mask[i] for i in order])  # [n, h, w]
    masks = F.interpolate(low.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False).squeeze(1) > 0
    nonempty = masks.any(dim=(1, 2))
    boxes = _boxes(masks)
    if len(order) > 1:
        masks = _non_overlapping(masks, nonempty, order, prompt_of, tracker_scores)
    packet = Packet()
    for name, tensor in (("boxes", boxes), ("nonempty", nonempty), ("masks", masks)):
        packet.add(name, tensor)
    host = packet.read()  # the one read of the device
    boxes_np, masks_np = host["boxes"], host["masks"]
    rows = sorted((i for i in range(len(order)) if host["nonempty"][i]), key=lambda r: order[r])
    ids = np.array([order[r] for r in rows], dtype=np.int64)
    label_of = state.prompts
    return FrameResult(
        frame_index=int(out.frame_idx),
        obj_ids=ids + 1,  # ours count from 1 (0 is background in mask and MOT formats)
        labels=[label_of[prompt_of[int(i)]] for i in ids],
        scores=np.array([out.obj_id_to_score[int(i)] for i in ids], dtype=np.float32),
        boxes_xyxy=boxes_np[rows].copy() if rows else np.zeros((0, 4), np.float32),
        masks=masks_np[rows] if rows else np.zeros((0, height, width), bool),
    )


def _empty(frame_index: int, height: int, width: int) -> FrameResult:
    return FrameResult(frame_index=frame_index, obj_ids=np.zeros(0, np.int64), labels=[],
                       scores=np.zeros(0, np.float32), boxes_xyxy=np.zeros((0, 4), np.float32),
                       masks=np.zeros((0, height, width), bool))


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    """[n, 4] float32 (x0, y0, x1, y1): the first and last row and column of each mask, as
    torchvision's `masks_to_boxes` (zeros for an empty mask), without its boolean indexing."""
    n, height, width = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # [n, h], [n, w]
    y = torch.arange(height, device=masks.device, dtype=torch.float32)
    x = torch.arange(width, device=masks.device, dtype=torch.float32)
    x0 = torch.where(cols, x, float(width)).amin(dim=1)
    x1 = torch.where(cols, x, -1.0).amax(dim=1)
    y0 = torch.where(rows, y, float(height)).amin(dim=1)
    y1 = torch.where(rows, y, -1.0).amax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    return torch.where(rows.any(dim=1, keepdim=True), boxes, 0.0)


def _non_overlapping(masks: torch.Tensor, nonempty: torch.Tensor, order: list[int], prompt_of, tracker_scores) -> torch.Tensor:
    """transformers' object-wise non-overlap rule on `masks` (rows in `order`: grouped by prompt,
    falling tracker score then id inside a group), applied only if more than one is non-empty."""
    kept = torch.empty_like(masks)
    start = 0
    while start < len(order):
        end = start
        while end < len(order) and prompt_of[order[end]] == prompt_of[order[start]]:
            end += 1
        group = masks[start:end]
        # a pixel goes to the first object of the group that covers it
        claimed = group.to(torch.uint8).cummax(dim=0).values.bool()
        kept[start] = group[0]
        if end - start > 1:
            kept[start + 1:end] = group[1:] & ~claimed[:-1]
        start = end
    # an object whose tracker score is not above 0 keeps nothing (these sort last in their group)
    for row, obj_id in enumerate(order):
        if not float(tracker_scores.get(obj_id, 0.0)) > 0:
            kept[row] = False
    return torch.where(nonempty.sum() > 1, kept, masks)
