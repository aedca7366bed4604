"""How the app reads the platform's refusals and sizes its GPU calls (web/gpucalls.py, web/runloop.py):
the words are spaces 0.51.3's own (spaces/zero/client.py, wrappers.py)."""

from __future__ import annotations

import gradio as gr
import pytest

from sam3_video.config import GpuBudget
from sam3_video.types import RunOptions, VideoInfo
from sam3_video.web.gpucalls import Pace, Refusal, readable, refusal
from sam3_video.web.gradio_glue import _user_error
from sam3_video.web.runloop import Sizer

QUOTA = "You have exceeded your free ZeroGPU quota (90s requested vs. 45s left). Try again in 23:59:00. "
LIMIT = "Space app has reached its GPU limit. Try re-running outside of examples if it happened after clicking one"
QUEUE = "No GPU was available after 60s [Create a free account](https://huggingface.co/join) to get a higher priority"


@pytest.mark.parametrize("text, kind, left", [
    (QUOTA, "quota", 45.0), (LIMIT, "quota", None), (QUEUE, "queue", None), ("GPU task aborted", "aborted", None),
    ("The requested GPU duration (300s) is larger than the maximum allowed", "illegal", None),
])
def test_the_platform_words_say_what_happened(text, kind, left):
    found = refusal(gr.Error(text))
    assert found is not None and found.kind == kind and found.left_s == left


def test_anything_else_is_no_refusal():
    assert refusal(RuntimeError("CUDA error: an illegal memory access")) is None
    assert refusal(ValueError("The prompt is empty")) is None


def test_links_work_in_a_toast_and_the_visitor_gets_the_platform_words():
    assert readable(QUEUE) == ('No GPU was available after 60s <a href="https://huggingface.co/join" '
                               'target="_blank">Create a free account</a> to get a higher priority')
    api = QUOTA + "Authenticate with a Hugging Face token for more quota - https://huggingface.co/settings/tokens"
    assert '<a href="https://huggingface.co/settings/tokens" target="_blank">' in readable(api)
    kept = 'Go <a href="https://huggingface.co/join">here</a>'
    assert readable(kept) == kept  # spaces' own <a> stays one link
    error = _user_error(gr.Error(QUEUE), "detect")
    assert "<a href=" in error.message and "[Create" not in error.message  # not escaped into raw markup
    assert "&lt;img" in _user_error(gr.Error("The prompt <img src=x> is odd"), "detect").message  # ours still are


def sizer(**figures) -> Sizer:
    return Sizer(GpuBudget(**{"start_s": 15, "per_frame_s": 0.5, "per_edit_s": 2, "per_kept_frame_s": 0.05,
                              "max_s": 60, **figures}), Pace(), learn=True)


def test_a_refused_call_asks_for_what_is_left_while_that_can_do_a_few_frames(monkeypatch):
    monkeypatch.setattr("sam3_video.web.runloop.duration_factor", lambda: 1.5)
    s = sizer()
    assert s.shorter(60, Refusal("quota", "", 45.0)) == 29  # floor(45 / 1.5) - 1
    assert s.shorter(60, Refusal("quota", "", 20.0)) is None  # 12 s < start-up and 3 frames (17 s)
    assert s.shorter(60, Refusal("quota", "", None)) == 30  # not said how much is left: half
    assert s.shorter(20, Refusal("quota", "", None)) is None
    assert s.shorter_step(15, Refusal("quota", "", 18.0)) == 11 and s.shorter_step(15, Refusal("quota", "", 6.0)) is None
    assert s.shorter_step(15, Refusal("queue", "")) is None


def test_calls_are_sized_from_the_pace_seen():
    s = sizer()
    assert s.run(100) == 60 and s.run(20) == 25  # the figures, capped
    s.pace.saw(frames=40, model_s=4.0, start_s=6.0)  # 0.1 s a frame, 6 s of start-up
    assert s.figures().per_frame_s == 0.125 and s.figures().start_s == 8.5
    assert s.run(20) == 11  # 8.5 + 20 x 0.125
    s.pace.saw(frames=10, model_s=3.0, start_s=None)  # a slower call: the slowest of the last ones counts
    assert s.figures().per_frame_s == 0.375
    assert Sizer(s.budget, s.pace, learn=False).run(20) == 25


def test_the_estimate_counts_calls_and_their_start_ups():
    s = sizer()
    info = VideoInfo("v.mp4", 640, 360, 1000, 25.0, 40.0)
    assert s.estimate(info, RunOptions.of(("car",), 0, "forward", 20)) == (25, 1)
    seconds, calls = s.estimate(info, RunOptions.of(("car",), 0, "forward", None))
    assert calls > 1 and seconds >= 15 + 0.5 * 1000 + (calls - 1) * 15
    assert s.estimate(info, RunOptions.of(("car",), 0, "forward", None, stride=5))[0] < seconds / 4
