"""The web app's small parts on their own, no model: how long a GPU call asks for, how a long run is
split into calls, what a click means and what is said about it."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_video.config import GpuBudget
from sam3_video.errors import Sam3VideoError
from sam3_video.types import Edit, FrameResult, frame_order
from sam3_video.web import clicks
from sam3_video.web.runs import Leg, Plan, request_stop, stop_requested, summary_of, write_summary


def test_gpu_time_is_sized_from_the_work_and_capped():
    b = GpuBudget(start_s=10, per_frame_s=0.5, per_kept_frame_s=0.05, per_edit_s=2, max_s=0)
    assert (b.step(0), b.step(3)) == (10, 16)
    assert b.run(120) == 70 and b.run(120, kept=100, edits=1) == 77 and b.run(1) == 11  # rounded up
    assert not b.enforced  # no cap and not on ZeroGPU: a call runs as long as it needs
    capped = GpuBudget(start_s=10, per_frame_s=0.5, per_kept_frame_s=0.05, per_edit_s=2, max_s=60)
    assert capped.run(9) == 15 and capped.run(18000) == 60 and capped.step(40) == 60 and capped.enforced
    assert GpuBudget.margin_s(120) == 11 and GpuBudget.margin_s(8) == 2  # time kept to close the files


@pytest.mark.parametrize("start, direction, limit", [(0, "forward", None), (30, "both", 25), (90, "backward", 40),
                                                     (100, "both", None), (0, "both", None)])
def test_calls_that_stop_at_any_frame_cover_the_run_exactly(start, direction, limit):
    """Each call goes on where the last stopped (its folder holds a range without gaps); together
    they do every frame of the run, and stop where it ends."""
    n = 120
    frames = set(frame_order(n, start, direction, limit))
    plan = Plan.of(n, start, direction, limit)
    assert (plan.first, plan.last, plan.total) == (min(frames), max(frames), len(frames))
    for stop_after in (2, 7, 40):  # frames each call does before its time is up (its first one is redone)
        covered = frame_order(n, start, direction, limit)[:stop_after]
        calls = 1
        while (leg := plan.next_leg((min(covered), max(covered)))) is not None:
            calls += 1
            assert isinstance(leg, Leg) and leg.frame in covered  # it starts from a frame done (redone, seeded)
            covered = sorted(set(covered) | set(frame_order(n, leg.frame, leg.direction, leg.max_frames)[:stop_after]))
            assert covered == list(range(covered[0], covered[-1] + 1))  # never a gap
            assert calls < 200
        assert set(covered) == frames


def test_a_continued_run_counts_its_kept_frames():
    plan = Plan.of(120, 12, "forward", 10, kept=list(range(12)))
    assert (plan.first, plan.last, plan.total) == (0, 21, 22)
    assert plan.next_leg((0, 21)) is None and plan.next_leg((0, 15)) == Leg(15, "forward", 7)


def _result(masks, ids, scores=None) -> FrameResult:
    masks = np.array(masks, bool)
    return FrameResult(0, ids, ["car"] * len(ids), scores or [0.9] * len(ids), [[0, 0, 1, 1]] * len(ids), masks)


def test_a_point_goes_to_the_object_under_it_and_a_box_takes_two_clicks():
    a = np.zeros((10, 10), bool)
    a[2:5, 2:5] = True
    b = np.zeros((10, 10), bool)
    b[3:8, 3:8] = True
    shown = _result([a, b], [4, 9], [0.5, 0.8])
    click = clicks.read_click(Edit("refine", labels=(1,)), 3, 3, None, shown, "car")
    assert click.edit == Edit("refine", 9, ((3, 3),), (1,)) and click.said == "positive point on object #9 at (3, 3)"
    assert clicks.read_click(Edit("refine", obj_id=4, labels=(0,)), 7, 7, None, shown, "car").edit.obj_id == 4
    with pytest.raises(Sam3VideoError, match="Click inside an object"):
        clicks.read_click(Edit("refine", labels=(1,)), 0, 9, None, shown, "car")
    first = clicks.read_click(Edit("add_object", label=" red  bike "), 8, 1, None, shown, "car")
    assert first.edit is None and first.corner == (8, 1) and "opposite corner" in first.said
    second = clicks.read_click(Edit("add_object", label=" red  bike "), 2, 6, first.corner, shown, "car")
    assert second.edit == Edit("add_object", box=(2, 1, 8, 6), label="red bike") and second.corner is None
    unnamed = clicks.read_click(Edit("add_object"), 2, 6, (8, 1), shown, "car")
    assert unnamed.edit.label == "car"  # the first phrase
    example = clicks.read_click(Edit("exemplar", positive=False), 2, 6, (8, 1), shown, "car")
    assert example.edit == Edit("exemplar", box=(2, 1, 8, 6), positive=False)


def test_clicks_on_one_object_are_read_together():
    edits = clicks.merged([], Edit("refine", 3, ((1, 1),), (1,)))
    edits = clicks.merged(edits, Edit("add_object", box=(0, 0, 2, 2), label="x"))
    edits = clicks.merged(edits, Edit("refine", 3, ((2, 2),), (0,)))
    assert edits == [Edit("add_object", box=(0, 0, 2, 2), label="x"), Edit("refine", 3, ((1, 1), (2, 2)), (1, 0))]


def test_what_the_model_made_of_a_click_is_said():
    m = np.ones((4, 4), bool)
    before, after = _result([m], [1]), _result([m, m], [1, 2])
    add = Edit("add_object", box=(0, 0, 2, 2), label="bike")
    assert clicks.outcome(add, "added a new 'bike' object", before, after) == "added a new 'bike' object (#2)"
    assert "found nothing in that box" in clicks.outcome(add, "added a new 'bike' object", before, before)
    gone = clicks.outcome(Edit("refine", 1, ((1, 1),), (1,)), "positive point on object #1", before,
                          FrameResult.empty(0, 4, 4))
    assert "sees nothing of #1" in gone and "Undo all clicks" in gone
    more = clicks.outcome(Edit("exemplar", box=(0, 0, 2, 2)), "searched", before, after)
    assert more == "searched: new: #2"


def test_a_stop_request_and_the_summary_live_in_the_run_folder(tmp_path):
    assert not stop_requested(str(tmp_path))
    request_stop(str(tmp_path))
    request_stop(str(tmp_path / "gone"))  # a folder already deleted: nothing to stop
    assert stop_requested(str(tmp_path))
    assert summary_of(str(tmp_path))["status"] == "failed" and "run.json" in summary_of(str(tmp_path))["error"]
    write_summary(str(tmp_path), {"status": "stopped", "frames": 3})
    assert summary_of(str(tmp_path)) == {"status": "stopped", "frames": 3}
