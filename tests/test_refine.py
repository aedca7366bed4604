"""Edits on the detect frame (clicks, added objects, example boxes) on the small random SAM3 (CPU),
with conftest's `edit_backend` (a private copy whose tracker always says "object")."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam3_video.errors import BackendUnavailableError, BadRequestError
from sam3_video.session import VideoSession

PHRASES = "car, person"
BOX = (100.0, 20.0, 170.0, 100.0)  # on carphone (176 x 144)


@pytest.fixture()
def session(carphone, edit_backend):
    with VideoSession(carphone, edit_backend) as s:
        yield s


def mask_of(result, obj_id) -> np.ndarray:
    ids = result.obj_ids.tolist()
    return result.masks[ids.index(obj_id)] if obj_id in ids else np.zeros(result.size, bool)


def outside_click(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(~mask)
    return float(xs[len(xs) // 3]), float(ys[len(ys) // 3])


def inside_click(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs[len(xs) // 2]), float(ys[len(ys) // 2])


@pytest.mark.parametrize("kind", ["positive", "positive and negative"])
def test_refine_changes_only_that_object(session, kind):
    before = session.detect(0, PHRASES)
    assert len(before) >= 2, "needs an object to refine and one to leave alone"
    target = int(before.obj_ids[0])
    old = mask_of(before, target)
    raw_before = {k: v.clone() for k, v in session._session._pending[-1].obj_id_to_mask.items()}
    click = outside_click(old)
    points, labels = [click], [1]
    if kind != "positive":
        points, labels = points + [inside_click(old)], labels + [0]
    after = session.refine(0, target, points, labels)

    assert after.obj_ids.tolist() == before.obj_ids.tolist()
    new = mask_of(after, target)
    assert (new != old).any(), "the clicks must change the mask"
    # real model output, not the old mask with a spot painted around the click: pixels far away change
    ys, xs = np.nonzero(new != old)
    assert np.hypot(xs - click[0], ys - click[1]).max() > 30
    raw_after = session._session._pending[-1].obj_id_to_mask
    for raw_id, logits in raw_before.items():
        if raw_id != target - 1:
            assert torch.equal(logits, raw_after[raw_id]), f"object {raw_id + 1} changed"
    # masks of one phrase do not overlap, so others may change only where the target was or is
    zone = old | new
    for obj_id in before.obj_ids.tolist():
        if obj_id != target:
            assert not ((mask_of(before, obj_id) ^ mask_of(after, obj_id)) & ~zone).any()


def test_refine_depends_only_on_the_clicks_given(session):
    before = session.detect(0, PHRASES)
    target = int(before.obj_ids[0])
    clicks = [outside_click(mask_of(before, target))]
    first = session.refine(0, target, clicks, [1])
    session.refine(0, target, clicks + [inside_click(mask_of(first, target))], [1, 0])
    again = session.refine(0, target, clicks, [1])
    np.testing.assert_array_equal(mask_of(again, target), mask_of(first, target))


@pytest.mark.parametrize("label", ["mirror", "car"])
def test_added_object_gets_a_new_id_and_is_tracked(session, label):
    before = session.detect(0, PHRASES)
    new_id, result = session.add_object(0, label, box=BOX)
    assert new_id > max(before.obj_ids.tolist())
    assert new_id in result.obj_ids.tolist()
    assert result.labels[result.obj_ids.tolist().index(new_id)] == label
    assert mask_of(result, new_id).any()
    results = list(session.propagate("forward", max_frames=20))
    assert [r.frame_index for r in results] == list(range(20))
    # the detect frame comes again, final, with the edit (SAM3's warm-up may drop detected objects)
    assert set(results[0].obj_ids.tolist()) <= set(result.obj_ids.tolist())
    if label == "mirror":  # alone in its group: no overlap rule with what was dropped
        np.testing.assert_array_equal(mask_of(results[0], new_id), mask_of(result, new_id))
    assert all(new_id in r.obj_ids.tolist() for r in results), "kept through SAM3's warm-up"
    for r in results:
        labels = dict(zip(r.obj_ids.tolist(), r.labels))
        assert labels[new_id] == label
        if label == "mirror":  # a label that is no phrase is never given to a detection
            assert [i for i, lab in labels.items() if lab == "mirror"] == [new_id]


def test_added_object_from_clicks_and_then_refined(session):
    session.detect(0, PHRASES)
    box_id, by_box = session.add_object(0, "lamp", box=BOX)
    new_id, first = session.add_object(0, "lamp", points=[(30.0, 120.0)], labels=[1])
    assert new_id == box_id + 1 and first.labels[first.obj_ids.tolist().index(new_id)] == "lamp"
    assert (mask_of(first, new_id) != mask_of(by_box, box_id)).any(), "the prompt decides the mask"
    refined = session.refine(0, new_id, [(30.0, 120.0), (60.0, 40.0)], [1, 0])
    assert (mask_of(refined, new_id) != mask_of(first, new_id)).any()


def test_edits_and_removals_carry_through_propagation(session):
    before = session.detect(0, PHRASES)
    target, victim = before.obj_ids.tolist()[:2]
    session.remove_object(victim)
    with pytest.raises(BadRequestError, match="removed or never found"):
        session.refine(0, victim, [(10.0, 10.0)], [1])
    session.refine(0, target, [outside_click(mask_of(before, target))], [1])
    new_id, _ = session.add_object(0, "mirror", box=BOX)
    results = list(session.propagate("forward", max_frames=25))
    assert all(victim not in r.obj_ids.tolist() for r in results)
    assert all(target in r.obj_ids.tolist() and new_id in r.obj_ids.tolist() for r in results)


def test_propagation_after_edits_yields_each_frame_once_in_the_usual_order(session):
    session.detect(40, PHRASES)
    plain = [r.frame_index for r in session.propagate("both", max_frames=20)]
    before = session.detect(40, PHRASES)
    session.refine(40, int(before.obj_ids[0]), [(20.0, 20.0)], [1])
    session.add_object(40, "mirror", box=BOX)
    edited = [r.frame_index for r in session.propagate("both", max_frames=20)]
    assert edited == plain == session.frames("both", max_frames=20)


def _calls(s: VideoSession) -> list:
    """One user's corrections as the web app replays them on a fresh session: detect, removals, edits."""
    out = [s.detect(0, PHRASES)]
    ids = out[-1].obj_ids.tolist()
    s.remove_object(ids[-1])  # the shared backend finds 8 objects, the limit: make room for two
    s.remove_object(ids[-2])
    out.append(s.refine(0, ids[0], [(20.0, 30.0), (80.0, 60.0)], [1, 0]))
    out.append(s.add_object(0, "mirror", box=(10.0, 80.0, 60.0, 140.0))[1])
    out.append(s.add_object(0, "car", points=[(150.0, 120.0)], labels=[1])[1])
    for box, positive in ((BOX, True), ((0.0, 0.0, 60.0, 60.0), False)):
        try:
            out.append(s.exemplar(0, box, positive))
        except BadRequestError as refused:  # one that changes nothing is refused, the session as it was
            out.append(str(refused))
    return out + list(s.propagate("forward", max_frames=8))


def test_replaying_the_same_calls_gives_the_same_results(carphone, backend):
    with VideoSession(carphone, backend) as a, VideoSession(carphone, backend) as b:
        first, second = _calls(a), _calls(b)
    assert len(first) == len(second)
    for x, y in zip(first, second):
        if isinstance(x, str) or isinstance(y, str):  # the same refusal both times
            assert x == y
            continue
        assert x.frame_index == y.frame_index
        assert x.obj_ids.tolist() == y.obj_ids.tolist() and x.labels == y.labels
        np.testing.assert_array_equal(x.masks, y.masks)
        np.testing.assert_array_equal(x.scores, y.scores)


@torch.inference_mode()
def test_exemplar_tokens_are_what_sam3_appends_for_input_boxes(session):
    """The example box reaches the detector as `Sam3Model(input_boxes=...)` would pass it."""
    from sam3_video.backends.transformers_edits import exemplar_tokens

    session.detect(0, PHRASES)
    model, state = session.backend.model, session._session.state
    det = model.detector_model
    vision = det.get_vision_features(pixel_values=state.get_frame(0).unsqueeze(0))
    boxes = [(BOX, True), ((0.0, 0.0, 60.0, 60.0), False)]
    tokens, token_mask = exemplar_tokens(model, vision, 176, 144, boxes)
    text, mask = state.prompt_embeddings[0], state.prompt_attention_masks[0]
    appended = copy.copy(text)
    appended.pooler_output = torch.cat([text.pooler_output, tokens], dim=1)
    ours = det(vision_embeds=vision, text_embeds=appended, attention_mask=torch.cat([mask.bool(), token_mask], 1))
    cxcywh = torch.tensor([[[135 / 176, 60 / 144, 70 / 176, 80 / 144], [30 / 176, 30 / 144, 60 / 176, 60 / 144]]])
    theirs = det(vision_embeds=vision, text_embeds=text, attention_mask=mask, input_boxes=cxcywh,
                 input_boxes_labels=torch.tensor([[1, 0]]))
    torch.testing.assert_close(ours.pred_logits, theirs.pred_logits)
    torch.testing.assert_close(ours.presence_logits, theirs.presence_logits)
    plain = det(vision_embeds=vision, text_embeds=text, attention_mask=mask)
    assert not torch.allclose(plain.pred_logits, ours.pred_logits), "the box changes the detection"


def test_exemplar_adds_what_it_finds_and_keeps_the_rest(session, monkeypatch):
    """What the text plus example finds and no object covers becomes new, tracked objects; existing
    ids, removals and clicks stay. (The random detector scores lower with any box, so its
    detections are replaced here by one new, confident mask where no object is.)"""
    from sam3_video.backends import transformers_edits

    before = session.detect(0, PHRASES)
    target, victim = before.obj_ids.tolist()[:2]
    session.remove_object(victim)
    refined = session.refine(0, target, [outside_click(mask_of(before, target))], [1])
    taken = np.zeros(before.size, bool)
    for m in refined.masks:
        taken |= m
    h, w = next(iter(session._session._pending[-1].obj_id_to_mask.values())).shape[-2:]  # low-res masks
    ys, xs = np.nonzero(~taken)
    y, x = int(ys[0] * h / 144), int(xs[0] * w / 176)
    blob = torch.full((1, h, w), -10.0)
    blob[0, max(0, y - 4): y + 4, max(0, x - 4): x + 4] = 10.0
    real = transformers_edits.exemplar_detections

    def detections(*args):
        real(*args)  # the real detector runs with the example, then its answer is replaced
        return {"bbox": torch.zeros(1, 4), "mask": blob, "scores": torch.tensor([0.99])}, {0: 1}

    monkeypatch.setattr(transformers_edits, "exemplar_detections", detections)
    result = session.exemplar(0, BOX)
    new_ids = sorted(set(result.obj_ids.tolist()) - set(refined.obj_ids.tolist()))
    assert len(new_ids) == 1 and new_ids[0] > max(before.obj_ids.tolist())
    assert result.labels[result.obj_ids.tolist().index(new_ids[0])] == "person"  # the prompt that found it
    for obj_id in refined.obj_ids.tolist():
        np.testing.assert_array_equal(mask_of(result, obj_id), mask_of(refined, obj_id))
    frames = list(session.propagate("forward", max_frames=20))
    assert all(new_ids[0] in r.obj_ids.tolist() and victim not in r.obj_ids.tolist() for r in frames)
    state = session._session.state
    assert all(state.prompt_embeddings[p].pooler_output.shape[1] == state.prompt_input_ids[p].shape[1]
               for p in state.prompts), "later frames use the text only"


def test_negative_exemplar_removes_detections_it_rules_out(carphone, edit_backend):
    with VideoSession(carphone, edit_backend) as s:
        before = s.detect(0, PHRASES)
        clicked = int(before.obj_ids[0])
        s.refine(0, clicked, [(20.0, 20.0)], [1])
        after = s.exemplar(0, (0.0, 0.0, 60.0, 60.0), positive=False)
        assert clicked in after.obj_ids.tolist(), "objects the user clicked on are kept"
        assert set(after.obj_ids.tolist()) < set(before.obj_ids.tolist())  # the random detector rules out the rest
        gone = set(before.obj_ids.tolist()) - set(after.obj_ids.tolist())
        assert all(not gone & set(r.obj_ids.tolist()) for r in s.propagate("forward", max_frames=10))


def test_adding_beyond_the_object_limit_is_refused(carphone, backend):
    with VideoSession(carphone, backend) as s:
        r = s.detect(0, PHRASES, 0.0)  # threshold 0: the detections fill the model's limit (8), also after its NMS
        assert len(s._session.state.obj_ids) == backend.model.max_num_objects
        with pytest.raises(BadRequestError, match="remove one"):
            s.add_object(0, "mirror", box=BOX)
        s.remove_object(int(r.obj_ids[0]))
        new_id, result = s.add_object(0, "mirror", box=BOX)
        assert new_id == backend.model.max_num_objects + 1  # after every id used, removed ones included


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.refine(5, 1, [(10, 10)], [1]), r"Edit the frame you detected on \(frame 0\)"),
        (lambda s: s.add_object(3, "car", box=BOX), r"Edit the frame you detected on \(frame 0\)"),
        (lambda s: s.refine(0, 1, [(-1, 10)], [1]), "outside the frame, which is 176 x 144"),
        (lambda s: s.refine(0, 1, [(10, 500)], [1]), "outside the frame"),
        (lambda s: s.refine(0, 1, [(10, 10)], [2]), "must be 1"),
        (lambda s: s.refine(0, 1, [(10, 10)], [1, 0]), "one label per click"),
        (lambda s: s.refine(0, 1, [], []), "at least one click"),
        (lambda s: s.refine(0, 99, [(10, 10)], [1]), "removed or never found"),
        (lambda s: s.refine(0, "two", [(10, 10)], [1]), "not a number"),
        (lambda s: s.refine(0, 1, np.array([[10.0, float("nan")]]), np.array([1])), "outside the frame"),
        (lambda s: s.add_object(0, "car", box=(50, 50, 40, 60)), "is empty"),
        (lambda s: s.add_object(0, "car", box=(0, 0, 200, 60)), "outside the frame"),
        (lambda s: s.add_object(0, "car", box=(1, 2, 3)), "four numbers"),
        (lambda s: s.add_object(0, "  ", box=BOX), "label"),
        (lambda s: s.add_object(0, "car"), "Draw a box or click"),
        (lambda s: s.exemplar(0, (10, 10, 10, 20)), "is empty"),
        (lambda s: (list(s.propagate("forward", max_frames=2)), s.refine(0, 1, [(9, 9)], [1])), "between detect and"),
    ],
)
def test_bad_edits_get_a_sentence(session, call, message):
    session.detect(0, PHRASES)
    with pytest.raises(BadRequestError, match=message):
        call(session)


def test_edits_before_detect_are_refused(session):
    with pytest.raises(BadRequestError, match="Run detect"):
        session.refine(0, 1, [(10, 10)], [1])


def test_official_backend_says_it_cannot_edit():
    from sam3_video.backends.official import OfficialSession

    assert OfficialSession.edits == frozenset()
    for call in (lambda: OfficialSession.refine(None, 0, 1, [(1, 1)], [1]),
                 lambda: OfficialSession.add_object(None, 0, "car", BOX),
                 lambda: OfficialSession.exemplar(None, 0, BOX)):
        with pytest.raises(BackendUnavailableError, match="transformers backend"):
            call()
