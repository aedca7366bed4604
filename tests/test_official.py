"""Meta's sam3 backend: runs only on CUDA, so here its conversion and rules are checked with
outputs shaped like the predictor's (see backends/official.py); bench/gpu_check.py runs it for real."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_video.backends import resolve_backend
from sam3_video.backends.official import OfficialBackend, _Spill, frame_result_from_official
from sam3_video.errors import BackendUnavailableError
from sam3_video.types import FrameResult


def _outputs(h=6, w=10):
    masks = np.zeros((2, h, w), bool)
    masks[0, 1:3, 2:5] = True  # rows 1-2, cols 2-4
    masks[1, 4:6, 0:10] = True
    return {
        "out_obj_ids": np.array([3, 8], np.int64),
        "out_probs": np.array([0.9, 0.55], np.float32),
        # the predictor's boxes: x, y, w, h normalised by the frame size (from masks_to_boxes)
        "out_boxes_xywh": np.array([[2 / w, 1 / h, 2 / w, 1 / h], [0, 4 / h, 9 / w, 1 / h]], np.float32),
        "out_binary_masks": masks,
        "frame_stats": {"num_obj_tracked": 2, "num_obj_dropped": 0},
    }


def test_conversion_to_frame_result():
    r = frame_result_from_official(7, _outputs(), "car", height=6, width=10)
    assert r.frame_index == 7 and r.obj_ids.tolist() == [4, 9] and r.labels == ["car", "car"]
    np.testing.assert_allclose(r.boxes_xyxy, [[2, 1, 4, 2], [0, 4, 9, 5]], atol=1e-5)
    np.testing.assert_array_equal(r.scores, np.float32([0.9, 0.55]))
    assert r.masks.shape == (2, 6, 10) and r.masks[0, 1, 2] and not r.masks[0, 0, 0]


def test_phrase_passes_get_distinct_ids():
    a = frame_result_from_official(0, _outputs(), "car", 6, 10, phrase_index=0, n_phrases=3)
    b = frame_result_from_official(0, _outputs(), "tree", 6, 10, phrase_index=2, n_phrases=3)
    merged = FrameResult.merge([a, b])
    assert a.obj_ids.tolist() == [10, 25] and b.obj_ids.tolist() == [12, 27]  # local * 3 + phrase + 1
    assert merged.labels == ["car", "tree", "car", "tree"]


def test_empty_frame_and_resized_masks():
    empty = {"out_obj_ids": np.zeros(0, np.int64), "out_probs": np.zeros(0, np.float32),
             "out_boxes_xywh": np.zeros((0, 4), np.float32), "out_binary_masks": np.zeros((0, 6, 10), bool)}
    r = frame_result_from_official(1, empty, "car", 6, 10)
    assert len(r) == 0 and r.masks.shape == (0, 6, 10)
    bigger = frame_result_from_official(1, _outputs(), "car", 12, 20)
    assert bigger.masks.shape == (2, 12, 20) and bigger.masks[0, 2:6, 4:10].all()


def test_spill_round_trip(tmp_path):
    r = frame_result_from_official(4, _outputs(), "人", 6, 10)
    spill = _Spill(str(tmp_path))
    spill.put(r, 1)
    back = spill.take(4, 1, 6, 10)
    assert back.obj_ids.tolist() == r.obj_ids.tolist() and back.labels == r.labels
    np.testing.assert_array_equal(back.masks, r.masks)
    assert spill.take(4, 1, 6, 10) is None, "taken once"


def test_cpu_is_refused_with_a_sentence():
    with pytest.raises(BackendUnavailableError, match="only on a CUDA GPU"):
        OfficialBackend("facebook/sam3", "cpu")


def test_auto_rule(tmp_path):
    assert resolve_backend("auto", "facebook/sam3") == "transformers"
    assert resolve_backend("auto", "/models/sam3.pt") == "sam3"
    (tmp_path / "sam3.pt").write_bytes(b"")
    assert resolve_backend("auto", str(tmp_path)) == "sam3"
    (tmp_path / "config.json").write_text("{}")
    assert resolve_backend("auto", str(tmp_path)) == "transformers"
    assert resolve_backend("sam3", "facebook/sam3") == "sam3"
    with pytest.raises(BackendUnavailableError):
        resolve_backend("onnx", "facebook/sam3")


def test_removal_is_not_a_user_action_so_propagation_still_runs(carphone, tmp_path):
    """sam3 0.1.4 answers the first propagation after a user-action removal with cached frames only
    (none exist before propagating), which would lose every object."""
    import threading
    from contextlib import nullcontext

    from sam3_video.backends.official import OfficialSession
    from sam3_video.video import probe

    calls = []

    class FakeBackend:
        lock = threading.RLock()

        def request(self, **req):
            calls.append(req)
            return {"session_id": "s1"}

        def set_threshold(self, threshold):
            pass

        def autocast(self):
            return nullcontext()

    session = OfficialSession(FakeBackend(), carphone, probe(carphone))
    try:
        session.phrases = ("car",)
        session.remove_object(4)
        removal = [c for c in calls if c["type"] == "remove_object"]
        assert removal == [{"type": "remove_object", "session_id": "s1", "obj_id": 3, "is_user_action": False}]
    finally:
        calls.clear()
        import shutil

        shutil.rmtree(session.workdir, ignore_errors=True)
