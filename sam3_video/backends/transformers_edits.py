"""Point, box and exemplar edits inside a text-prompted transformers SAM3 video session.

transformers 5.x has no public point or box prompt on `Sam3VideoModel`; these helpers run the
same steps its tracker runs for an object with new inputs, for ONE object, in the session that
holds the text-detected objects (the route Meta's predictor takes in `add_tracker_new_points`):

- clicks and boxes go to the tracker's SAM head (`_run_single_frame_inference`) with the object's
  previous mask logits, and the output is stored as a conditioning output with its memory, so
  propagation carries the edit;
- a box is two corner points with labels 2 and 3 (SAM's convention);
- a new object is numbered from the session's `max_obj_id + 1`, as the detector numbers its own,
  so ids never collide;
- an exemplar box goes to the detector's geometry encoder and its tokens are appended to every
  text prompt's embedding, which is what `Sam3Model.forward(input_boxes=...)` does; what that
  detection finds and no object covers yet is added as new objects.

Coordinates in and out are video pixels. Every function expects the backend lock to be held.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections import OrderedDict, defaultdict
from typing import Sequence, cast

import numpy as np
import torch

from ..errors import BadRequestError
from ..types import FrameResult

BOX_LABELS = (2, 3)  # SAM: top-left and bottom-right corner of a box prompt


def _copied(value, memo: dict):
    """`value` with its dicts, lists and sets copied all the way down (same types, defaultdicts keep
    their factory; one copy per original, through `memo`, so what was shared stays shared); anything
    else (tensors, frames, caches) is shared."""
    if id(value) in memo:
        return memo[id(value)]
    if type(value) in (dict, OrderedDict, defaultdict):
        fresh = memo[id(value)] = copy.copy(value)
        for key, item in value.items():
            fresh[key] = _copied(item, memo)
    elif type(value) is list:
        fresh = memo[id(value)] = [_copied(item, memo) for item in value]
    elif type(value) is set:
        fresh = memo[id(value)] = set(value)
    else:
        return value
    return fresh


def _snapshot(session) -> tuple[dict, dict | None]:
    """Copies of a transformers session's attributes and of its inference state's, to put back."""
    memo: dict = {}
    state = None if session.state is None else {key: _copied(value, memo) for key, value in vars(session.state).items()}
    saved = {key: _copied(value, memo) for key, value in vars(session).items()}
    pending = []  # the detect output: results are made from it in place, and it shares the state's score dicts
    for out in session._pending:
        fresh = copy.copy(out)
        for field in dataclasses.fields(out):
            setattr(fresh, field.name, _copied(getattr(out, field.name), memo))
        pending.append(fresh)
    saved["_pending"] = pending
    return saved, state


def all_or_nothing(edit):
    """Decorate a transformers session's edit method: when it raises (a refused edit, or a failure
    midway), the session and its inference state are put back exactly as they were before the call,
    so the session still propagates as if the edit had never been tried. Edits change only the
    bookkeeping (dicts, lists, sets of tensors that are replaced, never written into), and the
    detect output, which are copied."""

    @functools.wraps(edit)
    def guarded(session, *args, **kwargs):
        state = session.state
        saved, saved_state = _snapshot(session)
        try:
            return edit(session, *args, **kwargs)
        except BaseException:
            vars(session).update(saved)
            if state is not None:
                vars(state).clear()
                vars(state).update(saved_state)
            raise

    return guarded


def require_mask(result: FrameResult, obj_id: int, sentence: str) -> FrameResult:
    """`result` when object `obj_id` (ours) has a non-empty mask in it, else BadRequestError(`sentence`)."""
    hit = np.flatnonzero(result.obj_ids == obj_id)
    if not len(hit) or not result.masks[hit[0]].any():
        raise BadRequestError(sentence)
    return result


def require_change(before: FrameResult, after: FrameResult, positive: bool, full: bool) -> FrameResult:
    """`after`, the result of an example box (`positive`: "more like this"), when it shows an object
    `before` did not show or no longer shows one it did, else BadRequestError; `full`: finds were
    left out at the object cap."""
    def shown(result: FrameResult) -> set[int]:
        return {int(i) for i, mask in zip(result.obj_ids.tolist(), result.masks) if mask.any()}

    if shown(before) != shown(after):
        return after
    if full:
        raise BadRequestError("The example found more objects, but the session already tracks the most the model "
                              "tracks at once; remove some objects, then search again.")
    if positive:
        raise BadRequestError("The model found nothing new like the object in that box; draw the box tightly "
                              "around one object the phrases describe, or add the object itself.")
    raise BadRequestError("The counter-example rules out none of the objects found and finds nothing new; draw "
                          "the box around something the phrases wrongly matched.")


def ensure_tracker_features(model, state, frame: int) -> None:
    """Cache the tracker's image features of `frame` (the tracker inside `Sam3VideoModel` has no
    vision encoder: they come from the detector backbone plus the tracker neck, as in a step)."""
    if state.cache.get_vision_features(frame) is not None:
        return
    vision_embeds = model.detector_model.get_vision_features(pixel_values=state.get_frame(frame).unsqueeze(0))
    feats, pos = model.get_vision_features_for_tracker(vision_embeds=vision_embeds)
    state.cache.cache_vision_features(frame, {"vision_feats": feats, "vision_pos_embeds": pos})


def tracker_points(model, state, points, labels, box) -> dict:
    """Video-pixel clicks (N, 2) with labels (N,) 0/1, and an optional box (x0, y0, x1, y1), as the
    tracker's `point_inputs`: coords (1, 1, M, 2) float32 in its square input frame, labels (1, 1, M)."""
    s = model.tracker_model.image_size
    scale = np.array([s / state.video_width, s / state.video_height], np.float32)
    coords = np.asarray(points if points is not None else [], np.float32).reshape(-1, 2) * scale
    labs = np.asarray(labels if labels is not None else [], np.int32).reshape(-1)
    if box is not None:  # the box corners go first, as the processor puts them
        coords = np.concatenate([np.asarray(box, np.float32).reshape(2, 2) * scale, coords])
        labs = np.concatenate([np.array(BOX_LABELS, np.int32), labs])
    device = state.inference_device
    return {
        "point_coords": torch.from_numpy(coords)[None, None].to(device),
        "point_labels": torch.from_numpy(labs)[None, None].to(device),
    }


def object_logits(state, frame: int, obj_id: int) -> torch.Tensor | None:
    """The tracker's stored low-res mask logits (1, 1, h, w) of raw `obj_id` on `frame`, or None."""
    outs = state.output_dict_per_obj[state.obj_id_to_idx(obj_id)]
    prev = outs["cond_frame_outputs"].get(frame) or outs["non_cond_frame_outputs"].get(frame)
    return None if prev is None else prev["pred_masks"].clone()


@torch.inference_mode()
def prompt_object(model, state, frame: int, obj_id: int, points=None, labels=None, box=None,
                  prev_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Run the tracker's SAM head for raw `obj_id` on `frame` with clicks and/or a box.

    `prev_logits` (1, 1, h, w), the mask the clicks correct, goes in as Meta's predictor feeds it
    (clamped to +-32). The output replaces the object's stored output on that frame, as a
    conditioning output, with its memory. Returns the low-res mask logits (1, h, w).
    """
    tracker = model.tracker_model
    ensure_tracker_features(model, state, frame)
    obj_idx = state.obj_id_to_idx(obj_id)
    point_inputs = tracker_points(model, state, points, labels, box)
    state.point_inputs_per_obj[obj_idx][frame] = point_inputs
    state.mask_inputs_per_obj[obj_idx].pop(frame, None)
    if prev_logits is not None:
        prev_logits = prev_logits.to(state.inference_device).clamp(-32.0, 32.0)
    tracked = state.frames_tracked_per_obj[obj_idx]
    is_init = frame not in tracked
    out = tracker._run_single_frame_inference(
        inference_session=state, frame_idx=frame, obj_idx=obj_idx, batch_size=1, is_init_cond_frame=is_init,
        point_inputs=point_inputs, mask_inputs=None, reverse=False if is_init else tracked[frame]["reverse"],
        prev_sam_mask_logits=prev_logits)
    outs = state.output_dict_per_obj[obj_idx]
    outs["non_cond_frame_outputs"].pop(frame, None)  # Meta: every corrected frame becomes conditioning
    state.store_output(obj_idx, frame, output_value=out, is_conditioning_frame=True)
    tracker._batch_encode_memories(
        inference_session=state, frame_idx=frame, objects_needing_memory_encoding=[obj_idx],
        high_res_masks_for_memory=[out["high_res_masks"]], object_score_logits_for_memory=[out["object_score_logits"]],
        is_mask_from_pts_per_obj=[True])
    if obj_id in (getattr(state, "obj_with_new_inputs", None) or []):
        state.obj_with_new_inputs.remove(obj_id)  # left there, the next step would prompt it again
    return out["pred_masks"][0]


def register_object(model, state, frame: int, prompt_id: int, obj_id: int | None = None,
                    first_frame: int | None = None) -> int:
    """Register raw object `obj_id` (default: a new one, `max_obj_id + 1`) as
    `_tracker_add_new_objects` does. `first_frame` is where it was first seen (SAM3's warm-up
    rules treat objects seen long ago as settled); default `frame`."""
    new_id = state.max_obj_id + 1 if obj_id is None else int(obj_id)
    state.max_obj_id = max(state.max_obj_id, new_id)  # the detector numbers its next objects from here
    state.obj_id_to_idx(new_id)  # creates the per-object stores, appends to state.obj_ids
    state.obj_id_to_prompt_id[new_id] = prompt_id  # association, non-overlap and labels read it
    state.obj_first_frame_idx[new_id] = frame if first_frame is None else int(first_frame)
    state.trk_keep_alive[new_id] = model.init_trk_keep_alive
    return new_id


@torch.inference_mode()
def seed_objects(model, state, frame: int, raw_ids: Sequence[int], masks: np.ndarray, scores: Sequence[float]):
    """Start tracking registered raw objects from known masks (n, H, W) bool at video size on
    `frame` (the tracker's mask input, as a new detection starts). Returns the frame's raw output,
    shaped as a step's, with the tracker's masks of those objects."""
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoSegmentationOutput

    ids = [int(i) for i in raw_ids]
    if ids:
        ensure_tracker_features(model, state, frame)
        mask_input = torch.from_numpy(np.ascontiguousarray(masks)).to(state.inference_device, torch.float32)
        model._tracker_add_new_objects(inference_session=state, frame_idx=frame, new_obj_ids=ids,
                                       new_obj_masks=mask_input)
    score_of = {raw: float(score) for raw, score in zip(ids, scores)}
    for raw, score in score_of.items():
        state.obj_id_to_score[raw] = score
        state.obj_id_to_tracker_score_frame_wise[frame][raw] = score
    return Sam3VideoSegmentationOutput(
        object_ids=list(ids),  # just seeded: the tracker holds each one's logits on `frame`
        obj_id_to_mask={raw: cast(torch.Tensor, object_logits(state, frame, raw))[0] for raw in ids},
        obj_id_to_score=dict(score_of), obj_id_to_tracker_score=dict(score_of), removed_obj_ids=set(),
        suppressed_obj_ids=set(), frame_idx=frame)


def with_user_mask(state, out, frame: int, obj_id: int, logits: torch.Tensor, score: float = 1.0):
    """A copy of the raw step output `out` where raw `obj_id` has the mask `logits` (1, h, w), the
    score `score` (1.0 for a user's object, as in Meta's predictor) and no removal or suppression
    (in the session too)."""
    state.obj_id_to_score[obj_id] = score
    state.obj_id_to_tracker_score_frame_wise[frame][obj_id] = score
    state.removed_obj_ids.discard(obj_id)
    state.hotstart_removed_obj_ids.discard(obj_id)
    for ids in state.suppressed_obj_ids.values():
        ids.discard(obj_id)
    fresh = copy.copy(out)
    fresh.obj_id_to_mask = {**out.obj_id_to_mask, obj_id: logits}
    fresh.obj_id_to_score = {**out.obj_id_to_score, obj_id: score}
    fresh.obj_id_to_tracker_score = {**out.obj_id_to_tracker_score, obj_id: score}
    if out.suppressed_obj_ids is not None:
        fresh.suppressed_obj_ids = set(out.suppressed_obj_ids) - {obj_id}
    if out.removed_obj_ids is not None:
        fresh.removed_obj_ids = set(out.removed_obj_ids) - {obj_id}
    if obj_id not in (fresh.object_ids or []):
        fresh.object_ids = list(fresh.object_ids or []) + [obj_id]
    return fresh


def protect(state, obj_ids: set[int], keep_alive: int) -> None:
    """After a step: SAM3's warm-up must not drop user objects because no text detection matches
    them (a click or box never does) or as late duplicates of a detected object."""
    for obj_id in obj_ids:
        state.unmatched_frame_inds.pop(obj_id, None)
        state.trk_keep_alive[obj_id] = keep_alive
    for pair in [p for p in state.overlap_pair_to_frame_inds if p[1] in obj_ids]:
        del state.overlap_pair_to_frame_inds[pair]


def exemplar_tokens(model, vision, width: int, height: int, boxes):
    """The detector's geometry-encoder tokens for exemplar boxes, as `Sam3Model.forward(input_boxes=...)`
    appends them after the text tokens.

    `vision`: the detector's vision features of the frame; `boxes`: ((x0, y0, x1, y1) video px,
    positive) pairs. Returns tokens (1, T, C) and their mask (1, T) bool.
    """
    det = model.detector_model
    cxcywh = [[(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height]
              for (x0, y0, x1, y1), _ in boxes]
    ref = vision.fpn_hidden_states[0]
    box_t = torch.tensor([cxcywh], dtype=ref.dtype, device=ref.device)  # (1, k, 4), the model's dtype
    labels = torch.tensor([[1 if positive else 0 for _, positive in boxes]], dtype=torch.long, device=ref.device)
    geo = det.geometry_encoder(
        box_embeddings=box_t, box_mask=torch.ones_like(labels, dtype=torch.bool), box_labels=labels,
        img_feats=vision.fpn_hidden_states[:-1], img_pos_embeds=vision.fpn_position_encoding[:-1])
    return geo.last_hidden_state, geo.attention_mask.bool()


@torch.inference_mode()
def exemplar_detections(model, state, frame: int, boxes) -> tuple[dict, dict]:
    """SAM3's detections on `frame` for every prompt in `state.prompts` with the exemplar `boxes`
    appended to each, as `_det_track_one_frame` computes them; the session's cached text-only
    prompts are left as they were. Returns (det_out with "bbox" (n, 4), "mask" (n, h, w) logits,
    "scores" (n,), {detection index: prompt id})."""
    vision = model.detector_model.get_vision_features(pixel_values=state.get_frame(frame).unsqueeze(0))
    tokens, token_mask = exemplar_tokens(model, vision, state.video_width, state.video_height, boxes)
    saved = {pid: (state.prompt_embeddings.get(pid), state.prompt_attention_masks[pid]) for pid in state.prompts}
    try:
        for pid, (cached, mask) in saved.items():
            text = cached if cached is not None else model.detector_model.get_text_features(
                input_ids=state.prompt_input_ids[pid], attention_mask=mask, return_dict=True)
            embeds = copy.copy(text)
            embeds.pooler_output = torch.cat([text.pooler_output, tokens.to(text.pooler_output.dtype)], dim=1)
            state.prompt_embeddings[pid] = embeds
            state.prompt_attention_masks[pid] = torch.cat([mask.bool(), token_mask.to(mask.device)], dim=1)
        detections = model.run_detection(inference_session=state, vision_embeds=vision)
    finally:
        for pid, (cached, mask) in saved.items():
            state.prompt_attention_masks[pid] = mask
            if cached is None:
                state.prompt_embeddings.pop(pid, None)
            else:
                state.prompt_embeddings[pid] = cached
    return model._merge_detections_from_prompts(detections, state)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of binary masks a (n, h, w) and b (m, h, w) -> (n, m) float."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter).clamp(min=1.0)


def match_detections(model, det: dict, masks: dict) -> tuple[list[int], set[int]]:
    """Compare detections with the objects' masks {raw id: (1, h, w) logits} on the same frame.

    Returns the indices of the detections that score above SAM3's new-object cut and overlap no
    object (IoU below its association cut), best first, and the raw ids of the
    objects some detection above the detection cut overlaps.
    """
    ids = list(masks)
    found = det["mask"] > 0
    if ids:
        iou = mask_iou(found, torch.cat([masks[i] > 0 for i in ids]).to(found.device))
    else:
        iou = torch.zeros(len(found), 0, device=found.device)
    scores = det["scores"].float().tolist()
    near = iou >= model.assoc_iou_thresh  # (n, m)
    fresh = [i for i in range(len(scores)) if scores[i] > model.new_det_thresh and not near[i].any()]
    fresh = sorted(fresh, key=lambda i: -scores[i])
    confirmed = near[torch.tensor([s > model.score_threshold_detection for s in scores], dtype=torch.bool)]
    matched = {ids[j] for j in range(len(ids)) if bool(confirmed[:, j].any())} if len(confirmed) else set()
    return fresh, matched


@torch.inference_mode()
def add_detected_objects(model, state, frame: int, masks: torch.Tensor, prompt_ids: Sequence[int]) -> list[int]:
    """Start tracking detector masks (n, h, w) logits on `frame` as new objects, the way a step
    adds new detections (`_tracker_add_new_objects`). Returns their raw ids."""
    new_ids = [register_object(model, state, frame, pid) for pid in prompt_ids]
    if new_ids:
        ensure_tracker_features(model, state, frame)
        model._tracker_add_new_objects(inference_session=state, frame_idx=frame, new_obj_ids=new_ids,
                                       new_obj_masks=masks)
    return new_ids
