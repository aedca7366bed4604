"""SAM3's tracker stepping all its objects in one batched pass instead of one object at a time.

transformers' `Sam3TrackerVideoModel.forward` (5.24) runs the tracker once per object per frame
(memory attention, prompt encoder, SAM head), about 730 torch ops per object on the real layer
counts (bench/ops.py): on a GPU, that many kernel launches from Python per object. Meta's predictor
batches the objects added together. `batched_forward` replaces the tracker's forward for our
session: objects being propagated (no new click, box or mask on this frame, no conditioning output
here yet) whose memory has the same layout (the same temporal offsets of their memory frames and
object pointers, the same direction) go through the tracker as one batch; objects with new inputs
or a conditioning output on the frame take transformers' own per-object path. What is stored per
object (outputs, memories, tracked frames) is what transformers stores, so hot-start, backward
propagation, edits and memory trimming see the same session.

The arithmetic is the same per object; only the batch differs, so masks agree with the per-object
loop up to float rounding (tests/test_batched_tracker.py: IoU >= 0.999 per object per frame).
`tracker.batch_objects = False` (SAM3_BATCH_TRACKER=0) runs transformers' loop unchanged.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video as trk


def install(tracker, enabled: bool = True) -> None:
    """Give `tracker` (a `Sam3TrackerVideoModel`) the batched forward; `enabled` sets whether it
    batches (`tracker.batch_objects`, read at every call)."""
    tracker.batch_objects = bool(enabled)
    if not isinstance(getattr(tracker, "forward", None), types.MethodType) or tracker.forward.__func__ is not batched_forward:
        tracker.forward = types.MethodType(batched_forward, tracker)


def _memory_layout(tracker, state, obj_idx: int, frame_idx: int, reverse: bool):
    """(memory slots [(offset, output)], pointer offsets, pointer outputs, max pointers) of one
    object, chosen exactly as transformers chooses them."""
    slots = [(t, out) for t, out in tracker._gather_memory_frame_outputs(state, obj_idx, frame_idx, reverse)
             if out is not None]
    sign = -1 if reverse else 1
    cond = state.output_dict_per_obj[obj_idx]["cond_frame_outputs"]
    offsets, pointers = [], []
    for t, out in cond.items():
        if (t >= frame_idx) if reverse else (t <= frame_idx):
            offsets.append((frame_idx - t) * sign)
            pointers.append(out)
    total = state.num_frames
    most = min(total, tracker.config.max_object_pointers_in_encoder)
    non_cond = state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"]
    for step in range(1, most):
        ref = frame_idx + step if reverse else frame_idx - step
        if ref < 0 or (total is not None and ref >= total):
            break
        out = non_cond.get(ref)
        if out is not None:
            offsets.append(step)
            pointers.append(out)
    return slots, offsets, pointers, most


def _pointer_pos(tracker, offsets: list[int], most: int, batch: int, channels: int, like: torch.Tensor):
    """Positional embedding (S, B, mem_dim) of the object pointers at `offsets`, as transformers
    computes it; the offsets go up without a blocking copy."""
    if not tracker.config.enable_temporal_pos_encoding_for_object_pointers:
        return like.new_zeros(len(offsets), batch, tracker.mem_dim)
    diffs = torch.tensor(offsets, dtype=torch.float32).to(like.device, non_blocking=True) / float(most - 1)
    sine = trk.get_1d_sine_pe(diffs, dim=channels).to(like.dtype)
    return tracker.temporal_positional_encoding_projection_layer(sine).unsqueeze(1).expand(-1, batch, tracker.mem_dim)


def _conditioned_features(tracker, state, layouts, feats, pos):
    """Memory attention for B objects with one layout: (B, C, H, W) features for the SAM head.
    `feats`, `pos`: the frame's top-level features and position encodings (HW, 1, C)."""
    batch, channels = len(layouts), tracker.hidden_dim
    height, width = tracker.backbone_feature_sizes[-1]
    device = feats.device
    memories, memory_pos = [], []
    for k, (offset, _) in enumerate(layouts[0][0]):
        memories.append(torch.cat([lay[0][k][1]["maskmem_features"] for lay in layouts], dim=1).to(device))
        spatial = torch.cat([lay[0][k][1]["maskmem_pos_enc"] for lay in layouts], dim=1).to(device)
        memory_pos.append(spatial + tracker.memory_temporal_positional_encoding[offset - 1])
    _, offsets, _, most = layouts[0]
    n_pointer_tokens = 0
    if offsets:
        pointers = torch.stack([torch.cat([lay[2][s]["object_pointer"] for lay in layouts], dim=0).to(device)
                                for s in range(len(offsets))], dim=0).reshape(len(offsets), batch, channels)
        pointer_pos = _pointer_pos(tracker, offsets, most, batch, channels, pointers)
        if tracker.mem_dim < channels:
            splits = channels // tracker.mem_dim
            pointers = pointers.reshape(-1, batch, splits, tracker.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            pointer_pos = pointer_pos.repeat_interleave(splits, dim=0)
        memories.append(pointers)
        memory_pos.append(pointer_pos)
        n_pointer_tokens = pointers.shape[0]
    out = tracker.memory_attention(
        current_vision_features=feats.expand(-1, batch, -1),
        current_vision_position_embeddings=pos.expand(-1, batch, -1),
        memory=torch.cat(memories, dim=0).to(dtype=state.dtype),
        memory_posision_embeddings=torch.cat(memory_pos, dim=0),
        num_object_pointer_tokens=n_pointer_tokens,
    )  # (1, B, HW, C)
    return out[0].transpose(1, 2).reshape(batch, channels, height, width)


def _sam_head(tracker, high_res, pix_feat, multimask: bool) -> dict:
    """The SAM head without prompts for B objects (the tail of transformers' `_single_frame_forward`,
    indexed per object). Returns batched pred_masks (B, 1, h, w), high_res_masks (B, 1, S, S),
    object_pointer (B, 1, C), object_score_logits (B, 1, 1)."""
    batch = pix_feat.shape[0]
    image_pe = tracker.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
    points = torch.zeros(batch, 1, 1, 2, dtype=pix_feat.dtype, device=pix_feat.device)
    labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=pix_feat.device)
    sparse, dense = tracker.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None, input_masks=None)
    low_multi, iou, tokens, score = tracker.mask_decoder(
        image_embeddings=pix_feat, image_positional_embeddings=image_pe, sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense, multimask_output=multimask, high_resolution_features=high_res)
    appearing = score > 0  # (B, 1, 1)
    low_multi = torch.where(appearing[:, None, None], low_multi, trk.NO_OBJ_SCORE)
    size = (tracker.image_size, tracker.image_size)
    high_multi = F.interpolate(low_multi.squeeze(1).float(), size=size, mode="bilinear",
                               align_corners=False).unsqueeze(1).to(low_multi.dtype)
    token = tokens[:, :, 0]
    if multimask:
        best = iou.argmax(dim=-1)  # (B, 1): per object, its best of the mask outputs
        pick = best[:, :, None, None, None]
        low = low_multi.gather(2, pick.expand(-1, -1, 1, *low_multi.shape[-2:]))[:, :, 0]
        high = high_multi.gather(2, pick.expand(-1, -1, 1, *high_multi.shape[-2:]))[:, :, 0]
        if tokens.size(2) > 1:
            token = tokens.gather(2, best[:, :, None, None].expand(-1, -1, 1, tokens.shape[-1]))[:, :, 0]
    else:
        low, high = low_multi[:, :, 0], high_multi[:, :, 0]
    pointer = tracker.object_pointer_proj(token)
    weight = appearing.to(pointer.dtype)
    pointer = weight * pointer + (1 - weight) * tracker.no_object_pointer
    return {"pred_masks": low, "object_pointer": pointer, "high_res_masks": high, "object_score_logits": score}


def _track_batch(tracker, state, frame_idx: int, layouts) -> dict:
    """One tracker pass for objects whose memory layouts match; batched outputs (see _sam_head)."""
    feats, pos = tracker._prepare_vision_features(state, frame_idx, batch_size=1)
    batch = len(layouts)
    high_res = [x.permute(1, 2, 0).view(1, x.size(2), *s).expand(batch, -1, -1, -1)
                for x, s in zip(feats[:-1], tracker.backbone_feature_sizes[:-1])]
    pix_feat = _conditioned_features(tracker, state, layouts, feats[-1], pos[-1])
    return _sam_head(tracker, high_res, pix_feat, tracker._use_multimask(False, None))


def _key(layout, reverse: bool):
    slots, offsets, _, most = layout
    return reverse, tuple(t for t, _ in slots), tuple(offsets), most


def _store(state, obj_idx: int, frame_idx: int, out: dict) -> None:
    """`state.store_output(..., is_conditioning_frame=False)` without a no-op `.to` per tensor
    when the session keeps its state on the inference device."""
    if state.inference_state_device == state.inference_device:
        state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"][frame_idx] = out
    else:
        state.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=False)


@torch.inference_mode()
def batched_forward(self, inference_session, frame_idx=None, frame=None, reverse=False, run_mem_encoder=True, **kwargs):
    """`Sam3TrackerVideoModel.forward` with the propagated objects batched (see the module doc).
    Same arguments and output as transformers' forward."""
    cls_forward = type(self).forward
    if not getattr(self, "batch_objects", True) or frame is not None:  # streaming: transformers' own
        return cls_forward(self, inference_session, frame_idx=frame_idx, frame=frame, reverse=reverse,
                           run_mem_encoder=run_mem_encoder, **kwargs)
    state = inference_session
    n = state.get_obj_num()
    masks, scores = [None] * n, [None] * n
    memory: dict[int, tuple] = {}  # obj_idx -> (high-res mask, score logits, from prompts)
    groups: dict[tuple, list] = {}  # layout key -> [(obj_idx, layout)]
    for obj_idx in range(n):
        obj_id = state.obj_idx_to_id(obj_idx)
        has_new = obj_id in state.obj_with_new_inputs
        outputs = state.output_dict_per_obj[obj_idx]
        if not has_new and frame_idx in outputs["cond_frame_outputs"]:  # reuse, as transformers does
            masks[obj_idx] = state.get_output(obj_idx, frame_idx, "pred_masks", is_conditioning_frame=True)
            scores[obj_idx] = state.get_output(obj_idx, frame_idx, "object_score_logits",
                                               is_conditioning_frame=True).squeeze(-1)
            continue
        if not has_new:  # propagated: batched below, with the direction in effect at this point
            layout = _memory_layout(self, state, obj_idx, frame_idx, reverse)
            groups.setdefault(_key(layout, reverse), []).append((obj_idx, layout))
            continue
        # new clicks, box or mask: transformers' per-object path, step for step
        is_init = frame_idx not in state.frames_tracked_per_obj[obj_idx]
        if is_init:
            reverse = False  # as in transformers: the rest of this call goes forward
        point_inputs = state.point_inputs_per_obj[obj_idx].get(frame_idx, None)
        mask_inputs = state.mask_inputs_per_obj[obj_idx].get(frame_idx, None)
        if point_inputs is not None or mask_inputs is not None:
            state.obj_with_new_inputs.remove(obj_id)
        out = self._run_single_frame_inference(
            inference_session=state, obj_idx=obj_idx, frame_idx=frame_idx, batch_size=1, is_init_cond_frame=is_init,
            point_inputs=point_inputs, mask_inputs=mask_inputs, reverse=reverse, streaming=False)
        state.store_output(obj_idx, frame_idx, output_value=out, is_conditioning_frame=is_init)
        masks[obj_idx], scores[obj_idx] = out["pred_masks"], out["object_score_logits"].squeeze(-1)
        memory[obj_idx] = (out["high_res_masks"], out["object_score_logits"],
                           point_inputs is not None or mask_inputs is not None)
        if not is_init:
            state.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": reverse}
    whole = None  # the batched outputs when one batch holds every object in order
    for key, members in groups.items():
        out = _track_batch(self, state, frame_idx, [lay for _, lay in members])
        idxs = [i for i, _ in members]
        if idxs == list(range(n)):
            whole = out
        per_obj = {k: v[:, None].unbind(0) for k, v in out.items()}  # each (1, ...) as transformers has it
        for j, obj_idx in enumerate(idxs):
            # stored without the (1, 1, S, S) high-res mask: only this call's memory encoding reads it
            one = {k: per_obj[k][j] for k in ("pred_masks", "object_pointer", "object_score_logits")}
            _store(state, obj_idx, frame_idx, one)
            state.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": key[0]}
            masks[obj_idx], scores[obj_idx] = one["pred_masks"], None
            memory[obj_idx] = (per_obj["high_res_masks"][j], one["object_score_logits"], False)
    if run_mem_encoder and self.num_maskmem > 0 and memory:
        order = sorted(memory)
        self._batch_encode_memories(
            inference_session=state, frame_idx=frame_idx, objects_needing_memory_encoding=order,
            high_res_masks_for_memory=[memory[i][0] for i in order],
            object_score_logits_for_memory=[memory[i][1] for i in order],
            is_mask_from_pts_per_obj=[memory[i][2] for i in order])
    if whole is not None:
        all_masks, all_scores = whole["pred_masks"], whole["object_score_logits"].squeeze(-1)
    else:
        for obj_idx in range(n):
            if scores[obj_idx] is None:
                scores[obj_idx] = memory[obj_idx][1].squeeze(-1)
        all_masks = torch.cat(masks, dim=0) if n > 1 else masks[0]
        all_scores = torch.cat(scores, dim=0) if n > 1 else scores[0]
    return trk.Sam3TrackerVideoSegmentationOutput(object_ids=state.obj_ids.copy(), pred_masks=all_masks,
                                                  object_score_logits=all_scores, frame_idx=frame_idx)


def fixed_decoder_coords(model) -> None:
    """The DETR decoder reads its feature map's height and width from a device tensor in every
    layer (`_get_coords`: two `item()` syncs per layer, 12 per frame on the real model). The
    detector always sees frames of its one input size, so the sizes are read once, on the first
    call, and the coordinate grids kept for that dtype and device."""
    decoder = model.detector_model.detr_decoder
    original = type(decoder)._get_coords.__wrapped__ if hasattr(type(decoder)._get_coords, "__wrapped__") \
        else type(decoder)._get_coords
    grids: dict = {}

    def _get_coords(height, width, dtype, device):
        key = (dtype, str(device))
        if key not in grids:
            grids[key] = original(decoder, int(height), int(width), dtype=dtype, device=device)
        return grids[key]

    decoder._get_coords = _get_coords
