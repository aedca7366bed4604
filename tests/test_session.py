"""The engine on the small random SAM3 and a real clip (CPU)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from sam3_video.errors import BadRequestError
from sam3_video.session import VideoSession
from sam3_video.types import frame_order

PROMPTS = ["person", "window"]


@pytest.fixture()
def session(carphone, backend):
    with VideoSession(carphone, backend) as s:
        yield s


def _direct_transformers(model_dir, video, prompts, start, max_frames, both):
    """What calling transformers by hand gives: whole video in a session, its own iterator."""
    from transformers import Sam3VideoModel, Sam3VideoProcessor

    model = Sam3VideoModel.from_pretrained(model_dir).eval()
    processor = Sam3VideoProcessor.from_pretrained(model_dir)
    with av.open(video) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    state = processor.init_video_session(video=frames, inference_device="cpu", dtype=torch.float32)
    processor.add_text_prompt(state, prompts)
    limit = None if max_frames is None else max_frames - 1
    runs = [dict(start_frame_idx=start, max_frame_num_to_track=limit)]
    if both:
        runs.append(dict(start_frame_idx=start, max_frame_num_to_track=limit, reverse=True))
    results = []
    for kwargs in runs:
        for out in model.propagate_in_video_iterator(state, **kwargs):
            post = processor.postprocess_outputs(state, out)
            label_of = {i: text for text, ids in post["prompt_to_obj_ids"].items() for i in ids}
            ids = post["object_ids"].numpy()
            results.append((out.frame_idx, ids, [label_of[int(i)] for i in ids], post["scores"].numpy(),
                            post["boxes"].numpy(), post["masks"].numpy()))
    return results


@pytest.mark.parametrize(
    "start, direction, limit",
    # whole-clip runs go past the tracker's memory reach, so dropping old memory is checked too
    [(0, "forward", 30), (60, "both", 30), (0, "forward", None), (60, "both", None)],
)
def test_engine_equals_transformers_called_directly(carphone, backend, test_model_dir, start, direction, limit,
                                                    monkeypatch):
    # our frame loop against transformers' own, exactly: with transformers' per-object tracker (the
    # batched one agrees with it to float rounding, IoU >= 0.999: tests/test_batched_tracker.py)
    monkeypatch.setattr(backend.model.tracker_model, "batch_objects", False)
    with VideoSession(carphone, backend) as s:
        s.detect(start, ", ".join(PROMPTS))
        ours = list(s.propagate(direction, max_frames=limit))
    direct = _direct_transformers(test_model_dir, carphone, PROMPTS, start, limit, both=direction == "both")
    assert [r.frame_index for r in ours] == [d[0] for d in direct]
    assert sum(len(r) for r in ours) > 0, "the small model must produce objects for this test to mean anything"
    for r, (frame, ids, labels, scores, boxes, masks) in zip(ours, direct):
        assert r.obj_ids.tolist() == (ids + 1).tolist(), frame  # ours count from 1
        assert r.labels == labels
        np.testing.assert_array_equal(r.scores, scores)
        np.testing.assert_array_equal(r.boxes_xyxy, boxes)
        np.testing.assert_array_equal(r.masks, masks)


@pytest.mark.parametrize(
    "direction, limit",
    [("forward", None), ("backward", None), ("both", None), ("both", 7), ("backward", 100)],
)
def test_directions_cover_exactly_the_expected_frames(session, direction, limit):
    start = 50
    session.detect(start, "person")
    got = [r.frame_index for r in session.propagate(direction, max_frames=limit)]
    assert got == frame_order(session.info.num_frames, start, direction, limit)
    assert len(got) == len(set(got))


def test_results_are_whole_source_size_and_ids_keep_their_label(session):
    session.detect(10, "person, window")
    results = list(session.propagate("forward", max_frames=40))
    label_of: dict[int, str] = {}
    for r in results:
        assert r.masks.shape[1:] == (144, 176)
        assert ((r.boxes_xyxy >= 0) & (r.boxes_xyxy <= 176)).all()
        for obj_id, label in zip(r.obj_ids.tolist(), r.labels):
            assert label_of.setdefault(obj_id, label) == label
    assert {"person", "window"} <= set(label_of.values())


def test_held_back_frames_reach_the_caller_on_stop(session):
    """SAM3 holds each frame's output back ~15 frames; a stop must still release them, in order."""
    session.detect(0, "person")
    delay = session.backend.model.hotstart_delay
    assert delay > 1
    steps = []
    real_step = session._session._step
    session._session._step = lambda i, rev: (steps.append(i), real_step(i, rev))
    got = []
    for r in session.propagate("forward"):
        got.append(r.frame_index)
        if len(steps) == delay + 5:
            session.stop()
    processed = [0] + steps  # the detect frame ran in detect()
    assert got == processed, "every processed frame is yielded once, in processing order"
    assert len(got) == delay + 6 < session.info.num_frames


def test_removed_object_stays_removed(session):
    preview = session.detect(0, "person, window")
    results = list(session.propagate("forward", max_frames=20))
    seen = sorted({i for r in results for i in r.obj_ids.tolist()})
    assert seen, "needs objects"
    victim = seen[0]
    session.detect(0, "person, window")
    session.remove_object(victim)
    again = list(session.propagate("forward", max_frames=20))
    assert all(victim not in r.obj_ids.tolist() for r in again)
    assert len(preview) > 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.detect(120, "person"), "outside this video"),
        (lambda s: s.detect(-1, "person"), "outside this video"),
        (lambda s: s.detect(0, " , ,"), "prompt is empty"),
        (lambda s: s.detect(0, "x" * 300), "300 characters long"),
        (lambda s: s.detect(0, "person", threshold=1.5), "from 0 to 1"),
        (lambda s: list(s.propagate("sideways")), "Run detect|Unknown direction"),
    ],
)
def test_bad_requests_get_a_sentence(session, call, message):
    with pytest.raises(BadRequestError, match=message):
        call(session)


def test_tracker_memory_stays_bounded(session):
    """transformers keeps every frame's tracker output; the session keeps only what is read."""
    reach = session.backend.memory_reach
    session.detect(0, "person, window")
    for _ in session.propagate("forward"):
        pass
    per_obj = session._session.state.output_dict_per_obj.values()
    kept = max(len(o["non_cond_frame_outputs"]) for o in per_obj)
    assert session.info.num_frames > 2 * reach + 2
    assert kept <= 2 * (reach + 1)


@pytest.mark.parametrize("direction", ["forward", "both"])
def test_frames_prepared_ahead_in_a_thread_give_the_same_results(backend, carphone, direction):
    """SAM3_PREFETCH_FRAMES (on by default on CUDA): same frames, ids and masks as without it,
    and its thread ends with the session, also after a stop."""
    import copy
    import threading

    from sam3_video.session import VideoSession

    runs = {}
    for ahead in (0, 3):
        ahead_backend = copy.copy(backend)  # same model and lock, another prefetch setting
        ahead_backend.prefetch_frames = ahead
        with VideoSession(carphone, ahead_backend) as session:
            session.detect(30, "person, window")
            runs[ahead] = [(r.frame_index, r.obj_ids.tolist(), r.masks) for r in session.propagate(direction, max_frames=12)]
            for r in session.propagate("forward", max_frames=30):  # a second plan, stopped early
                if r.frame_index == 35:
                    session.stop()
    assert [r[:2] for r in runs[3]] == [r[:2] for r in runs[0]] and len(runs[0]) == (12 if direction == "forward" else 23)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(runs[0], runs[3]))
    assert not [t for t in threading.enumerate() if t.name == "sam3-prefetch"]


def test_compiled_image_encoder_gives_the_same_results_in_one_graph(backend, carphone):
    """SAM3_COMPILE: the detector's image encoder is captured whole by torch.compile (fullgraph:
    a graph break would raise), every frame goes through the compiled graph, and frames, ids and
    masks are those of the plain model. The capture is checked with a counting backend (no C
    compiler needed); inductor's code generation is torch's and is timed by bench/gpu_bench.py."""
    import copy
    import threading

    import torch

    from sam3_video.backends.transformers import compile_backbone
    from sam3_video.session import VideoSession

    calls = {"graphs": 0, "runs": 0}

    def counting(graph, example_inputs):
        calls["graphs"] += 1

        def run(*args):
            calls["runs"] += 1
            return graph.forward(*args)

        return run

    compiled = copy.copy(backend)
    compiled.model = copy.deepcopy(backend.model)
    compiled.lock = threading.RLock()
    torch._dynamo.reset()
    compile_backbone(compiled.model, "default", backend=counting)
    runs = {}
    for name, b in (("plain", backend), ("compiled", compiled)):
        with VideoSession(carphone, b) as session:
            session.detect(5, "person, window")
            runs[name] = [(r.frame_index, r.obj_ids.tolist(), r.masks) for r in session.propagate("forward", max_frames=6)]
    assert [r[:2] for r in runs["compiled"]] == [r[:2] for r in runs["plain"]] and len(runs["plain"]) == 6
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(runs["plain"], runs["compiled"]))
    assert calls["graphs"] == 1  # one graph: same input size every frame, no recompiling
    assert calls["runs"] == 6  # the detect frame and the 5 after it


def test_unknown_compile_mode_is_one_sentence():
    from sam3_video.backends.transformers import compile_backbone
    from sam3_video.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="Unknown SAM3_COMPILE 'fast'. Use off, default"):
        compile_backbone(None, "fast")


def test_tracking_bookkeeping_stays_bounded(backend, carphone, monkeypatch):
    """transformers deep-copies its tracking bookkeeping every frame and lets it grow with the
    frames done; the session keeps what can still be read (the results equal transformers' own:
    test_engine_equals_transformers_called_directly). Untrimmed, the same run keeps every frame's."""
    from sam3_video.backends.transformers import TransformersSession

    def bookkeeping(trim: bool):
        monkeypatch.setattr(TransformersSession, "trim_metadata", trim)
        with VideoSession(carphone, backend) as s:
            s.detect(0, "person, window", 0.0)
            ids = [r.obj_ids.tolist() for r in s.propagate("forward")]
            state = s._session.state
            return ids, (len(state.obj_id_to_tracker_score_frame_wise), len(state.suppressed_obj_ids))

    kept_ids, kept = bookkeeping(True)
    whole_ids, whole = bookkeeping(False)
    assert kept_ids == whole_ids and sum(map(len, kept_ids)) > 0
    assert whole == (120, 120) and kept == (1, 1)


@pytest.mark.parametrize("reverse, frame, anchor, first, settled", [
    (False, 100, 0, (5, 40), {1, 2}),  # forward from 0, far on: both past their hot-start, no backward pass to come
    (False, 30, 0, (5, 40), {1}),  # first seen at 40: still within reach of the frames to come
    (False, 120, 60, (70, 90), {2}),  # a backward pass from 59 could still count 70 (70 < 59 + 15), not 90
    (True, 20, 60, (5, 40), {2}),  # backward at 20: 40 is out of reach now (>= 20 + 15), 5 is not
])
def test_bookkeeping_lists_are_cut_only_when_no_decision_can_read_them(reverse, frame, anchor, first, settled):
    """The unmatched- and overlap-frame lists of an object are cut to the threshold they are
    compared with, and only once no frame still to come can see the object within its hot-start
    window (the same `len >= threshold` answer for ever after)."""
    from types import SimpleNamespace

    from sam3_video.backends.transformers import TransformersSession

    model = SimpleNamespace(hotstart_delay=15, hotstart_unmatch_thresh=8, hotstart_dup_thresh=8)
    state = SimpleNamespace(obj_id_to_tracker_score_frame_wise={frame - 1: {}, frame: {}},
                            suppressed_obj_ids={frame - 1: set(), frame: set()},
                            obj_first_frame_idx={1: first[0], 2: first[1]},
                            unmatched_frame_inds={1: list(range(20)), 2: list(range(20))},
                            overlap_pair_to_frame_inds={(1, 2): list(range(20)), (2, 1): list(range(20))},
                            obj_ids=[1, 2], removed_obj_ids=set(), trk_keep_alive={1: 0, 2: 0},
                            obj_id_to_score={1: 0.5, 2: 0.5})
    session = SimpleNamespace(state=state, backend=SimpleNamespace(model=model), _anchor=anchor, _pending=[],
                              _pruned=set())
    TransformersSession._forget_old_metadata(session, frame, reverse)
    assert list(state.obj_id_to_tracker_score_frame_wise) == [frame] and list(state.suppressed_obj_ids) == [frame]
    assert {k for k, v in state.unmatched_frame_inds.items() if len(v) == 8} == settled
    assert all(v == list(range(20)) for k, v in state.unmatched_frame_inds.items() if k not in settled)
    assert {k[1] for k, v in state.overlap_pair_to_frame_inds.items() if len(v) == 8} == settled
    state.obj_ids, state.removed_obj_ids = [2], {1}  # 1 removed for good: its bookkeeping goes, 2's stays
    TransformersSession._forget_old_metadata(session, frame, reverse)
    assert 1 not in state.unmatched_frame_inds and 1 not in state.trk_keep_alive and 1 not in state.obj_id_to_score
    assert (2, 1) not in state.overlap_pair_to_frame_inds and (1, 2) in state.overlap_pair_to_frame_inds
    assert 2 in state.unmatched_frame_inds and 2 in state.trk_keep_alive and 2 in state.obj_id_to_score
