"""One progress type from the pipeline to the page (`progress.Progress`), and the run's summary
typed (`web.runs.RunSummary`) with the very keys API clients read."""

from __future__ import annotations

import json

import numpy as np

from sam3_video.progress import Progress
from sam3_video.types import FrameResult
from sam3_video.web.runs import RunSummary, summary_line, summary_of

#: summary.json as the app wrote it before RunSummary: a run stopped by its GPU time, continued
APP_SUMMARY = {"status": "stopped", "frames": 20, "frames_expected": 39, "frame_range": [81, 100],
               "objects_per_label": {"car": 5, "person": 5}, "seconds": 26.0, "notice": "Only 16 objects.",
               "gpu_calls": 2, "covers": [81, 119], "stride": 1, "stopped_by": "the GPU time limit"}


def test_progress_leaves_the_model_without_its_result():
    result = FrameResult.empty(3, 4, 5)
    p = Progress(3, 10, 2.5, 2.8, 1.2, result=result)
    image = np.zeros((2, 2, 3), np.uint8)
    sent = p.sent(image)
    assert (sent.done, sent.total, sent.fps, sent.eta_s, sent.result, sent.preview) == (3, 10, 2.5, 2.8, None, image)
    assert p.result is result and p.preview is None  # the job's own is unchanged
    assert Progress().total is None and not Progress().finished  # warming up: nothing known yet


def test_the_summary_keeps_the_keys_clients_read(tmp_path):
    summary = RunSummary.from_json(APP_SUMMARY)
    assert summary.to_json() == APP_SUMMARY and summary.stopped_by == "the GPU time limit"
    assert summary.line() == summary_line(APP_SUMMARY) == ("stopped by the GPU time limit: 20 of 39 frames (81-100), "
                                                           "10 objects (5 car, 5 person), 26 s. Only 16 objects.")
    summary.write(str(tmp_path))
    assert json.loads((tmp_path / "summary.json").read_text()) == APP_SUMMARY == summary_of(str(tmp_path))
    RunSummary.from_json({"status": "failed", "frames": 0, "error": "Boom."}).write(str(tmp_path))
    assert RunSummary.read(str(tmp_path)) == RunSummary("failed", 0, error="Boom.")


def test_a_summary_from_a_record_has_its_keys_even_when_empty():
    summary = RunSummary("running", 0, 12, None, {}, 0.5)
    assert summary.to_json() == {"status": "running", "frames": 0, "frames_expected": 12, "frame_range": None,
                                 "objects_per_label": {}, "seconds": 0.5}
    assert RunSummary.from_json({}).to_json() == {"status": "failed", "frames": 0}
