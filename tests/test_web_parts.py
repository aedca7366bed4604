"""The web app's small parts on their own, no model: how long a GPU call asks for, how a long run is
split into calls and what its progress says, what a click means, how it is drawn and what is said
about it, the summary line, the Objects table's colours, and which callers get toasts."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from sam3_video.config import GpuBudget
from sam3_video.errors import Sam3VideoError
from sam3_video.types import Edit, FrameResult, frame_order
from sam3_video.web import clicks
from sam3_video.web.gradio_glue import from_page
from sam3_video.web.previews import ObjectRow, draw, object_table
from sam3_video.web.runs import (
    Leg,
    Plan,
    RunSummary,
    request_stop,
    stop_requested,
    summary_line,
    summary_of,
)
from sam3_video.web.service import eta_stable


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


@pytest.mark.parametrize("start, direction, limit, kept, done, said", [
    (20, "both", None, (), 25, "forward 20/20 · backward 5/20"),
    (20, "both", None, (), 3, "forward 3/20 · backward 0/20"),
    (0, "both", None, (), 40, "forward 40/40"),
    (10, "backward", None, (), 4, "backward 4/11"),
    (12, "forward", 10, tuple(range(12)), 15, "kept 12 · forward 3/10"),
])
def test_a_run_says_its_phase(start, direction, limit, kept, done, said):
    plan = Plan.of(40, start, direction, limit, kept)
    assert plan.phases(done) == said and plan.new + plan.kept == plan.total


def test_time_left_is_said_once_the_pace_is_known():
    assert [eta_stable(n, 39) for n in (0, 6, 9, 10, 38, 39)] == [False, False, False, True, True, False]
    assert not eta_stable(20, 100) and eta_stable(25, 100)


def test_the_summary_is_one_line_for_people():
    summary = {"status": "complete", "frames": 39, "frames_expected": 39, "frame_range": [81, 119],
               "objects_per_label": {"car": 5, "person": 5}, "seconds": 26.4}
    assert summary_line(summary) == "complete: 39 frames (81-119), 10 objects (5 car, 5 person), 26 s"
    stopped = {**summary, "status": "stopped", "stopped_by": "you", "frames": 20, "frame_range": [81, 100]}
    assert summary_line(stopped) == "stopped by you: 20 of 39 frames (81-100), 10 objects (5 car, 5 person), 26 s"
    assert summary_line({"status": "failed", "frames": 0, "error": "Boom."}) == "failed: 0 frames. Boom."


@pytest.mark.parametrize("headers, page", [({"origin": "http://127.0.0.1:7860", "x-gradio-user": "app"}, True),
                                          ({"origin": "http://x", "x-gradio-user": "api"}, False),
                                          ({"x-gradio-user": "mcp"}, False), ({"origin": "http://x"}, False)])
def test_errors_are_toasts_only_for_the_page(headers, page):
    assert from_page(gr.Request(headers=headers)) is page
    assert from_page(None) is False


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


def test_clicks_are_marked_where_they_were_made():
    edits = [Edit("refine", 3, ((1, 2), (5, 6)), (1, 0)), Edit("add_object", box=(0, 0, 2, 2), label="x"),
             Edit("exemplar", box=(1, 1, 3, 3), positive=False)]
    assert clicks.marks(edits, (7, 8)) == [("positive", (1, 2)), ("negative", (5, 6)), ("box", (0, 0, 2, 2)),
                                           ("counter-example", (1, 1, 3, 3)), ("corner", (7, 8))]
    assert clicks.marks([], None) == []


@pytest.mark.parametrize("mark, colour", [(clicks.Mark("positive", (30, 20)), (0, 220, 0)),
                                          (clicks.Mark("negative", (30, 20)), (235, 0, 0)),
                                          (clicks.Mark("corner", (30, 20)), (255, 255, 255))])
def test_a_click_is_drawn_where_it_was_made(mark, colour):
    frame = np.full((60, 80, 3), 90, np.uint8)
    out = draw(frame, None, [mark])
    assert (frame == 90).all()  # the caller's frame is not painted
    ys, xs = np.nonzero((out != 90).any(axis=2))
    assert abs(ys.mean() - 20) < 1.5 and abs(xs.mean() - 30) < 1.5
    assert (out == colour).all(axis=2).any()
    big = draw(np.zeros((2160, 3840, 3), np.uint8), None, [clicks.Mark("box", (400, 400, 800, 600))])
    assert big.shape[1] == 1280 and big[133:135, 150:250].any()  # drawn at the shrunk size, where the box was


def test_clicks_on_one_object_are_read_together():
    edits = clicks.merged([], Edit("refine", 3, ((1, 1),), (1,)))
    edits = clicks.merged(edits, Edit("add_object", box=(0, 0, 2, 2), label="x"))
    edits = clicks.merged(edits, Edit("refine", 3, ((2, 2),), (0,)))
    assert edits == [Edit("add_object", box=(0, 0, 2, 2), label="x"), Edit("refine", 3, ((1, 1), (2, 2)), (1, 0))]


def test_what_the_model_made_of_a_click_is_said():
    m = np.ones((4, 4), bool)
    before, after = _result([m], [1]), _result([m, m], [1, 2])
    add = Edit("add_object", box=(0, 0, 2, 2), label="bike")
    assert clicks.outcome(add, "added a new 'bike' object", before, after) == "added a new 'bike' object: id #2"
    assert "found nothing in that box" in clicks.outcome(add, "added a new 'bike' object", before, before)
    gone = clicks.outcome(Edit("refine", 1, ((1, 1),), (1,)), "positive point on object #1", before,
                          FrameResult.empty(0, 4, 4))
    assert "the model dropped #1" in gone and "Undo all clicks" in gone
    point = Edit("refine", 1, ((1, 1),), (1,))
    assert clicks.outcome(point, "p", before, _result([m, m], [1, 2])) == "p: #1 updated"
    assert clicks.outcome(point, "p", after, before) == "p: #1 updated; the model dropped #2"
    assert "mask of #1 is empty" in clicks.outcome(point, "p", before, _result([~m], [1]))
    assert "mask is empty" in clicks.outcome(add, "added", before, _result([m, ~m], [1, 2]))
    more = clicks.outcome(Edit("exemplar", box=(0, 0, 2, 2)), "searched", before, after)
    assert more == "searched: new: #2"


def test_a_stop_request_and_the_summary_live_in_the_run_folder(tmp_path):
    assert not stop_requested(str(tmp_path))
    request_stop(str(tmp_path))
    request_stop(str(tmp_path / "gone"))  # a folder already deleted: nothing to stop
    assert stop_requested(str(tmp_path))
    assert summary_of(str(tmp_path))["status"] == "failed" and "run.json" in summary_of(str(tmp_path))["error"]
    RunSummary.from_json({"status": "stopped", "frames": 3}).write(str(tmp_path))
    assert summary_of(str(tmp_path)) == {"status": "stopped", "frames": 3}


def test_the_objects_table_paints_each_colour():
    table = gr.Dataframe(headers=["id", "label", "score", "colour"]).postprocess(
        object_table([ObjectRow(3, "car", 0.91234, "#ffff00"), ObjectRow(4, "person", 0.5, "#000080")]))
    assert table.data == [[3, "car", 0.912, "#ffff00"], [4, "person", 0.5, "#000080"]]  # what API clients get
    assert table.metadata["styling"][0][3] == "background-color: #ffff00; color: #000"
    assert table.metadata["styling"][1][3] == "background-color: #000080; color: #fff"
    assert table.metadata["display_value"][1][2] == "0.500"
