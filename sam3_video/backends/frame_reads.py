"""SAM3's per-frame planning with the device read once, not dozens of times.

Between the networks, transformers' `Sam3VideoModel` plans each frame in Python (which detections
are new objects, which tracks went unmatched, the hot-start rules, occlusion suppression) and
reads the device at every step to do it: `nonzero` for the detections above threshold, boolean
indexing and `tolist` per detection in the association, `unique`/`nonzero` over prompt groups, the
upload of every small index list, `.all()` on each text mask, `tolist` of the tracker scores. On a
GPU each read stalls the host until the device has caught up, so the next kernels cannot be queued
while the device works: bench/results/ops-cpu.md and ops-detections-cpu.md counted 23 to 67 reads a
frame.

`install` replaces those steps of one model (its own methods; the networks are untouched) with
versions that give the same plan from fewer reads:

- what the host already knows stays on the host: the prompt of each object and detection, the
  groups of objects by prompt (so no `unique`/`nonzero` over them), and small index lists are
  uploaded from pinned memory without waiting;
- the detector's positives and its mask NMS over all prompts come back in one read (the NMS is
  iterated a few rounds on the device first, so that the read almost always finds it settled);
- the association of detections with tracks, the detection scores and the tracker scores come
  back in one read, from which the host builds transformers' own lists and dicts;
- boolean index writes become `where`/`masked_fill`; the text masks are always materialised
  (transformers checks with `.all()` whether a text mask could be left out; a text prompt's mask
  has padding, so it never is);
- the feature sizes of the DETR encoder are uploaded once, not every frame.

A frame then reads the device twice (detections, association) plus the hand-off of its results
(backends/handoff.py); rarer paths (the object limit reached, NMS not settled after eight rounds)
read more, as before. The plan is transformers' own: tests/test_session.py compares whole runs
with transformers' loop exactly, and tests/test_frame_reads.py counts the reads.
`model.few_reads = False` (SAM3_FEW_READS=0) runs transformers' methods.
"""

from __future__ import annotations

import functools
import logging
import types
from copy import deepcopy

import numpy as np
import torch
from transformers.models.sam3 import modeling_sam3
from transformers.models.sam3_video import modeling_sam3_video as sam3

from . import postprocess

log = logging.getLogger(__name__)
NMS_ROUNDS = 8  # rounds of the device NMS before its one read (a few are enough on real frames)


def install(model, enabled: bool = True) -> None:
    """Give `model` (a transformers `Sam3VideoModel`) the planning steps of this module;
    `enabled` sets whether they run (`model.few_reads`, read at every call)."""
    model.few_reads = bool(enabled)
    if getattr(model, "_frame_reads_installed", False):
        return
    model._frame_reads_installed = True
    for name in ("run_detection", "_det_track_one_frame", "run_tracker_update_planning_phase",
                 "_suppress_overlapping_based_on_recent_occlusion", "_suppress_object_pw_area_shrinkage"):
        setattr(model, name, types.MethodType(_switch(globals()["_" + name.lstrip("_")], getattr(type(model), name)),
                                              model))
    encoder = model.detector_model.detr_encoder
    encoder._prepare_multilevel_features = types.MethodType(_prepare_multilevel_features, encoder)
    encoder._spatial_shapes = {}
    if not getattr(modeling_sam3.create_bidirectional_mask, "_always_materialised", False):
        modeling_sam3.create_bidirectional_mask = _materialised(modeling_sam3.create_bidirectional_mask)


def _switch(ours, theirs):
    @functools.wraps(theirs)
    def method(self, *args, **kwargs):
        return (ours if self.few_reads else theirs)(self, *args, **kwargs)

    return method


def _materialised(create):
    """transformers' `create_bidirectional_mask` without its `.all()` read of the mask."""

    @functools.wraps(create)
    def create_bidirectional_mask(*args, **kwargs):
        kwargs["allow_is_bidirectional_skip"] = False
        return create(*args, **kwargs)

    create_bidirectional_mask._always_materialised = True
    return create_bidirectional_mask


# -- moving small things between host and device -------------------------------------------
def upload(values, dtype, device) -> torch.Tensor:
    """`values` (a list) as a tensor on `device`, copied from pinned memory without waiting."""
    tensor = torch.tensor(values, dtype=dtype)
    device = torch.device(device)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


class Packet:
    """Tensors gathered on the device and brought to the host in one copy (`read`), as bytes:
    bool stays a byte a value (masks), other floats come back as float32, integers as int32."""

    def __init__(self):
        self.parts: list[tuple[str, torch.Tensor, tuple, type]] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        kind: type
        if tensor.dtype == torch.bool:
            flat, kind = tensor.flatten().view(torch.uint8), np.bool_
        elif tensor.is_floating_point():
            flat, kind = tensor.float().flatten().view(torch.uint8), np.float32
        else:
            flat, kind = tensor.to(torch.int32).flatten().view(torch.uint8), np.int32
        self.parts.append((name, flat, tuple(tensor.shape), kind))

    def read(self) -> dict[str, np.ndarray]:
        if not self.parts:
            return {}
        host = torch.cat([p[1] for p in self.parts]).cpu().numpy()  # the one read
        out, start = {}, 0
        for name, flat, shape, kind in self.parts:
            out[name] = host[start:start + flat.numel()].view(kind).reshape(shape)
            start += flat.numel()
        return out


# -- the detector ----------------------------------------------------------------------------
def _prepare_multilevel_features(encoder, vision_features, vision_pos_embeds):
    """transformers' `Sam3DetrEncoder._prepare_multilevel_features`, the sizes uploaded once."""
    features_flat, pos_flat, shapes = [], [], []
    for features, pos_embed in zip(vision_features, vision_pos_embeds):
        shapes.append(tuple(features.shape[-2:]))
        features_flat.append(features.flatten(2).transpose(1, 2))
        pos_flat.append(pos_embed.flatten(2).transpose(1, 2))
    features_flat = torch.cat(features_flat, dim=1)
    key = (tuple(shapes), features_flat.device)
    if key not in encoder._spatial_shapes:
        encoder._spatial_shapes[key] = upload(shapes, torch.long, features_flat.device)
    return features_flat, torch.cat(pos_flat, dim=1), encoder._spatial_shapes[key]


def _run_detection(self, inference_session, vision_embeds):
    """transformers' `run_detection`: every prompt's detections above threshold after mask NMS,
    with one read for all prompts."""
    prompt_ids = list(inference_session.prompts.keys())
    if not prompt_ids:
        raise ValueError("No prompts available for detection. Please add prompts to the session first.")
    on_device = getattr(sam3.nms_masks, "__wrapped__", sam3.nms_masks) is postprocess.nms_keep
    runs, packet = [], Packet()
    for prompt_id in prompt_ids:
        text_embeds = inference_session.prompt_embeddings.get(prompt_id)
        if text_embeds is None:
            text_embeds = self.detector_model.get_text_features(
                input_ids=inference_session.prompt_input_ids[prompt_id],
                attention_mask=inference_session.prompt_attention_masks[prompt_id], return_dict=True)
            inference_session.prompt_embeddings[prompt_id] = text_embeds
        out = self.detector_model(vision_embeds=vision_embeds, text_embeds=text_embeds,
                                  attention_mask=inference_session.prompt_attention_masks[prompt_id])
        probs = out.pred_logits.sigmoid() * out.presence_logits.sigmoid()
        nms = None
        if self.det_nms_thresh > 0.0:
            if on_device:
                nms = postprocess.NmsRounds(probs[0], out.pred_masks[0], self.score_threshold_detection,
                                            self.det_nms_thresh)
                keep, settled = nms.run(NMS_ROUNDS)
                packet.add(f"settled{prompt_id}", settled)
            else:  # the hub kernel or the host's: it reads the device itself
                keep = sam3.nms_masks(pred_probs=probs[0], pred_masks=out.pred_masks[0],
                                      prob_threshold=self.score_threshold_detection,
                                      iou_threshold=self.det_nms_thresh).to(probs.device)
            positive = (probs[0] > self.score_threshold_detection) & keep
        else:
            positive = probs[0] > self.score_threshold_detection
        packet.add(f"positive{prompt_id}", positive)
        runs.append((prompt_id, out, probs, nms))
    host = packet.read()
    detections = {}
    for prompt_id, out, probs, nms in runs:
        positive = host[f"positive{prompt_id}"]
        while nms is not None and not host.get(f"settled{prompt_id}", 1):  # rare: more rounds, more reads
            keep, settled = nms.run(NMS_ROUNDS)
            more = Packet()
            more.add("settled", settled)
            more.add("positive", (probs[0] > self.score_threshold_detection) & keep)
            again = more.read()
            host[f"settled{prompt_id}"], positive = again["settled"], again["positive"]
        index = upload(np.flatnonzero(positive).tolist(), torch.long, probs.device)
        detections[prompt_id] = {"bbox": out.pred_boxes[0].index_select(0, index),
                                 "mask": out.pred_masks[0].index_select(0, index),
                                 "scores": probs[0].index_select(0, index)}
    return detections


# -- one frame ---------------------------------------------------------------------------------
def _det_track_one_frame(self, inference_session, frame_idx: int, reverse: bool, streaming: bool = False):
    """transformers' `_det_track_one_frame`, the tracker scores taken from the planning's read."""
    pixel_values = inference_session.get_frame(frame_idx).unsqueeze(0)
    vision_embeds = self.detector_model.get_vision_features(pixel_values=pixel_values)
    all_detections = self.run_detection(inference_session=inference_session, vision_embeds=vision_embeds)
    det_out, det_idx_to_prompt_id = self._merge_detections_from_prompts(all_detections, inference_session)
    vision_feats, vision_pos_embeds = self.get_vision_features_for_tracker(vision_embeds=vision_embeds)
    inference_session.cache.cache_vision_features(
        frame_idx, {"vision_feats": vision_feats, "vision_pos_embeds": vision_pos_embeds})
    masks, scores = self.run_tracker_propagation(inference_session=inference_session, frame_idx=frame_idx,
                                                 reverse=reverse)
    read: dict = {}
    plan, metadata = _run_tracker_update_planning_phase(
        self, inference_session=inference_session, frame_idx=frame_idx, reverse=reverse, det_out=det_out,
        tracker_low_res_masks_global=masks, tracker_obj_scores_global=scores,
        det_idx_to_prompt_id=det_idx_to_prompt_id, streaming=streaming, host=read)
    self.run_tracker_update_execution_phase(inference_session=inference_session, frame_idx=frame_idx,
                                            reverse=reverse, det_out=det_out, tracker_update_plan=plan)
    obj_id_to_mask = self.build_outputs(inference_session=inference_session, det_out=det_out,
                                        tracker_low_res_masks_global=masks, tracker_update_plan=plan,
                                        reconditioned_obj_ids=plan["reconditioned_obj_ids"])
    if scores.shape[0] > 0:
        scores = read["tracker_probs"].tolist()  # Python floats, nested as transformers' tolist()
        metadata["obj_id_to_tracker_score_frame_wise"][frame_idx].update(dict(zip(inference_session.obj_ids, scores)))
    return obj_id_to_mask, metadata["obj_id_to_score"], metadata, scores


def _associate(self, det_masks, det_scores, det_prompts: list[int], trk_masks, trk_obj_ids: list[int],
               trk_prompts: list[int], tracker_scores, host: dict):
    """transformers' `_associate_det_trk` from one read, which also brings the detection scores
    and the tracker's scores (logits and probabilities) into `host`."""
    n, m = det_masks.size(0), trk_masks.size(0)
    packet = Packet()
    if m:
        packet.add("tracker_logits", tracker_scores)
        packet.add("tracker_probs", tracker_scores.sigmoid())
    if n:
        packet.add("det_scores", det_scores)
    if m and n:
        ious = sam3.mask_iou(det_masks > 0, trk_masks > 0)
        same_prompt = upload(det_prompts, torch.long, ious.device)[:, None] == upload(trk_prompts, torch.long, ious.device)[None, :]
        ious = torch.where(same_prompt, ious, torch.zeros_like(ious))
        trk_matched = (ious >= self.trk_assoc_iou_thresh).any(dim=0)
        matches = ious >= self.assoc_iou_thresh
        new = (det_scores >= self.new_det_thresh) & ~matches.any(dim=1)
        high = (det_scores >= self.high_conf_thresh) & ~new & (ious.max(dim=1)[0] >= self.high_iou_thresh)
        packet.add("trk_matched", trk_matched)
        packet.add("matches", matches)
        packet.add("new", new)
        packet.add("high", high)
        packet.add("best", ious.argmax(dim=1))
    if m:
        packet.add("trk_nonempty", (trk_masks > 0).any(dim=(1, 2)))
    host.update(packet.read())
    if not m:
        return list(range(n)), [], {}, {}, []
    nonempty = host["trk_nonempty"]
    empty = [obj_id for obj_id, full in zip(trk_obj_ids, nonempty) if not full]
    if not n:
        return [], [obj_id for obj_id, full in zip(trk_obj_ids, nonempty) if full], {}, {}, empty
    matched = host["trk_matched"]
    unmatched = [obj_id for obj_id, full, hit in zip(trk_obj_ids, nonempty, matched) if full and not hit]
    new_inds = [int(i) for i in np.flatnonzero(host["new"])]
    matches = host["matches"]
    det_to_trk = {d: [trk_obj_ids[j] for j in np.flatnonzero(matches[d])] for d in range(n)}
    best_det = {}
    for d in range(n):
        if host["high"][d]:
            best_det[trk_obj_ids[int(host["best"][d])]] = d
    return new_inds, unmatched, det_to_trk, best_det, empty


def _run_tracker_update_planning_phase(self, inference_session, frame_idx: int, reverse: bool, det_out,
                                       tracker_low_res_masks_global, tracker_obj_scores_global,
                                       det_idx_to_prompt_id, streaming: bool = False, host: dict | None = None):
    """transformers' `run_tracker_update_planning_phase` with `_associate` in place of its device
    reads; `host` receives what was read."""
    host = {} if host is None else host
    session = inference_session
    metadata = {
        "obj_ids": deepcopy(session.obj_ids),
        "obj_id_to_score": deepcopy(session.obj_id_to_score),
        "obj_id_to_tracker_score_frame_wise": deepcopy(session.obj_id_to_tracker_score_frame_wise),
        "obj_id_to_last_occluded": {},
        "max_obj_id": deepcopy(session.max_obj_id),
    }
    det_masks = det_out["mask"]
    det_scores = det_out["scores"].float()
    masks = tracker_low_res_masks_global
    det_prompts = [det_idx_to_prompt_id[i] for i in range(det_masks.size(0))]
    trk_prompts = [session.obj_id_to_prompt_id[obj_id] for obj_id in session.obj_ids] if masks.numel() else []
    new_inds, unmatched, det_to_trk, best_det, empty = _associate(
        self, det_masks, det_scores, det_prompts, masks, session.obj_ids,
        trk_prompts, tracker_obj_scores_global, host)

    dropped = 0
    if len(session.obj_ids) + len(new_inds) > self.max_num_objects:  # keep the best-scoring new ones
        log.debug("hitting max_num_objects=%d with %d new and %d tracked", self.max_num_objects, len(new_inds),
                  len(session.obj_ids))
        keep = max(0, self.max_num_objects - len(session.obj_ids))
        dropped = len(new_inds) - keep
        _, top = torch.topk(torch.from_numpy(host["det_scores"][new_inds]), k=keep, largest=True)
        new_inds = [new_inds[int(i)] for i in top.numpy()]  # a host tensor: no read of the device
    first = session.max_obj_id + 1
    new_ids = list(range(first, first + len(new_inds)))
    for obj_id, det_idx in zip(new_ids, new_inds):
        session.obj_id_to_prompt_id[obj_id] = det_idx_to_prompt_id[det_idx]

    extra = deepcopy({
        "obj_first_frame_idx": session.obj_first_frame_idx,
        "unmatched_frame_inds": session.unmatched_frame_inds,
        "trk_keep_alive": session.trk_keep_alive,
        "overlap_pair_to_frame_inds": session.overlap_pair_to_frame_inds,
        "removed_obj_ids": session.removed_obj_ids,
        "suppressed_obj_ids": session.suppressed_obj_ids,
    })
    removed, extra = self._process_hotstart(
        inference_session=session, frame_idx=frame_idx, reverse=reverse, det_to_matched_trk_obj_ids=det_to_trk,
        new_det_obj_ids=new_ids, empty_trk_obj_ids=empty, unmatched_trk_obj_ids=unmatched, extra_metadata=extra,
        streaming=streaming)
    metadata["extra_metadata"] = extra

    reconditioned_masks, reconditioned_ids = {}, set()
    if self.recondition_every_nth_frame > 0 and frame_idx % self.recondition_every_nth_frame == 0 and best_det:
        reconditioned_masks, reconditioned_ids = self._prepare_recondition_masks(
            inference_session=session, frame_idx=frame_idx, det_out=det_out, trk_masks=masks,
            trk_id_to_max_iou_high_conf_det=best_det,
            tracker_obj_scores_global=torch.from_numpy(host["tracker_logits"]))  # compared on the host
    plan = {
        "new_det_out_inds": new_inds,
        "new_det_obj_ids": new_ids,
        "unmatched_trk_obj_ids": unmatched,
        "det_to_matched_trk_obj_ids": det_to_trk,
        "obj_ids_newly_removed": removed,
        "num_obj_dropped_due_to_limit": dropped,
        "trk_id_to_max_iou_high_conf_det": best_det,
        "reconditioned_obj_ids": reconditioned_ids,
    }
    if masks.size(0) > 0:
        if self.suppress_overlapping_based_on_recent_occlusion_threshold > 0.0:
            masks = self._suppress_overlapping_based_on_recent_occlusion(
                inference_session=session, frame_idx=frame_idx, tracker_low_res_masks_global=masks,
                tracker_metadata_new=metadata, obj_ids_newly_removed=removed, reverse=reverse)
        self._tracker_update_memories(inference_session=session, frame_idx=frame_idx, low_res_masks=masks,
                                      reconditioned_masks=reconditioned_masks)

    obj_ids = metadata["obj_ids"] + new_ids if new_ids else metadata["obj_ids"]
    if removed:
        obj_ids = [obj_id for obj_id in obj_ids if obj_id not in removed]
    metadata["obj_ids"] = obj_ids
    if new_ids:
        scores = [float(host["det_scores"][i]) for i in new_inds]
        metadata["obj_id_to_score"].update(zip(new_ids, scores))
        metadata["obj_id_to_tracker_score_frame_wise"][frame_idx].update(zip(new_ids, scores))
        metadata["max_obj_id"] = max(metadata["max_obj_id"], max(new_ids))
    for obj_id in removed:
        metadata["obj_id_to_score"][obj_id] = -1e4
        metadata["obj_id_to_tracker_score_frame_wise"][frame_idx][obj_id] = -1e4
        metadata["obj_id_to_last_occluded"].pop(obj_id, None)
    return plan, metadata


def _groups(prompt_ids: list[int]) -> list[list[int]]:
    """Positions of each prompt's objects, by prompt id (as `unique(sorted=True)` + `nonzero`)."""
    groups: dict[int, list[int]] = {}
    for position, prompt_id in enumerate(prompt_ids):
        groups.setdefault(prompt_id, []).append(position)
    return [groups[p] for p in sorted(groups)]


def _suppress_overlapping_based_on_recent_occlusion(self, inference_session, frame_idx: int,
                                                     tracker_low_res_masks_global, tracker_metadata_new,
                                                     obj_ids_newly_removed, reverse: bool = False):
    """transformers' method of that name with the prompt groups from the host and no boolean
    index writes."""
    masks = tracker_low_res_masks_global
    obj_ids = inference_session.obj_ids
    binary = masks > 0
    if masks.size(0) == 0:
        return masks
    device = binary.device
    never, always = -1, 100000  # transformers' values: not occluded yet, removed by hot-start
    last_prev = torch.cat([
        inference_session.obj_id_to_last_occluded.get(
            obj_id, torch.full((1,), always if obj_id in obj_ids_newly_removed else never, device=device,
                               dtype=torch.long))
        for obj_id in obj_ids])
    suppress = torch.zeros(masks.size(0), device=device, dtype=torch.bool)
    for positions in _groups([inference_session.obj_id_to_prompt_id[obj_id] for obj_id in obj_ids]):
        if len(positions) <= 1:
            continue
        index = upload(positions, torch.long, device)
        suppress[index] = self._get_objects_to_suppress_based_on_most_recently_occluded(
            binary.index_select(0, index), last_prev.index_select(0, index), [obj_ids[p] for p in positions], reverse)
    hidden = ~binary.any(dim=(-1, -2)) | suppress
    last_new = torch.where(hidden, frame_idx, last_prev)
    tracker_metadata_new["obj_id_to_last_occluded"] = {obj_id: last_new[i:i + 1] for i, obj_id in enumerate(obj_ids)}
    masks.masked_fill_(suppress.view(-1, *[1] * (masks.dim() - 1)), -10)  # in place, as transformers does
    return masks


def _suppress_object_pw_area_shrinkage(self, pred_masks, prompt_ids: list[int] | None = None):
    """transformers' method of that name with the prompt groups from the host."""
    if prompt_ids is None:
        return self._suppress_object_pw_area_shrinkage_impl(pred_masks)
    if len(prompt_ids) != pred_masks.size(0):
        raise ValueError("prompt_ids must have the same length as pred_masks")
    grouped = pred_masks.clone()
    for positions in _groups(list(prompt_ids)):
        if len(positions) == len(prompt_ids):  # one group: all of them, no index needed
            return self._suppress_object_pw_area_shrinkage_impl(grouped)
        index = upload(positions, torch.long, grouped.device)
        grouped[index] = self._suppress_object_pw_area_shrinkage_impl(grouped.index_select(0, index))
    return grouped
