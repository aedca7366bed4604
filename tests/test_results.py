import json

import numpy as np

from sam3_video.results import ResultsWriter, decode_mask, encode_mask, read_results
from sam3_video.types import FrameResult


def _random_result(rng, frame_index, n, h=37, w=53):
    masks = rng.random((n, h, w)) > 0.6
    return FrameResult(
        frame_index,
        np.arange(n) * 7 + 1,
        [["car", "person", "人"][i % 3] for i in range(n)],
        rng.random(n).astype(np.float32),
        (rng.random((n, 4)) * 50).astype(np.float32),
        masks,
    )


def test_rle_round_trip_is_exact():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (37, 53), (144, 176), (3, 1000)]:
        mask = rng.random(shape) > 0.5
        assert np.array_equal(decode_mask(encode_mask(mask)), mask)
    assert not decode_mask(encode_mask(np.zeros((5, 6), bool))).any()


def test_results_file_round_trip_is_lossless(tmp_path):
    rng = np.random.default_rng(1)
    written = [_random_result(rng, i, n) for i, n in [(2, 3), (0, 0), (1, 2)]]
    (tmp_path / "run.json").write_text(json.dumps({"video": {"height": 37, "width": 53}}))
    writer = ResultsWriter(tmp_path)
    for r in written:
        writer.write(r)
    writer.close()
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["frame_index"] == 2
    back = list(read_results(tmp_path))
    assert [r.frame_index for r in back] == [0, 1, 2]
    for r in back:
        original = next(w for w in written if w.frame_index == r.frame_index)
        assert np.array_equal(r.obj_ids, original.obj_ids)
        assert r.labels == original.labels
        assert np.array_equal(r.scores, original.scores)  # float32 survives JSON exactly
        assert np.array_equal(r.boxes_xyxy, original.boxes_xyxy)
        assert np.array_equal(r.masks, original.masks)
        assert r.masks.shape[1:] == (37, 53)
