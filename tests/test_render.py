"""render(): a new frame every time, colours by id, lower scores under higher ones, only near objects."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_video.render import PALETTE, color_for, legend, line_width, render, tag_label, text_color
from sam3_video.types import FrameResult

GREY = 100


def frame_of(h: int, w: int, value: int = GREY) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def square(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """(h, w) bool, True on rows y0..y1-1 and columns x0..x1-1."""
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def result_of(masks, ids=None, scores=None, labels=None, boxes=None) -> FrameResult:
    """A FrameResult whose boxes are the masks' own (edges in pixels) unless given."""
    masks = np.asarray(masks, bool)
    n = len(masks)
    if boxes is None:
        boxes = []
        for m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0])
    return FrameResult(
        frame_index=0,
        obj_ids=np.arange(n) if ids is None else ids,
        labels=["car"] * n if labels is None else labels,
        scores=np.full(n, 0.9) if scores is None else scores,
        boxes_xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        masks=masks,
    )


def changed(out: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: where render changed a pixel."""
    return (out != frame).any(axis=-1)


def test_input_unchanged_and_read_only_input_works():
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    before = frame.copy()
    frame.flags.writeable = False
    out = render(frame, result_of([square(48, 64, 10, 30, 20, 40)]))
    assert np.array_equal(frame, before)
    assert out.shape == frame.shape and out.dtype == np.uint8
    assert out.flags.writeable and not np.shares_memory(out, frame)
    assert changed(out, frame).any()


@pytest.mark.parametrize("alpha", [0.2, 0.45, 1.0])
@pytest.mark.parametrize("obj_id", [0, 3, 25])
def test_mask_pixels_blend_toward_the_object_colour(alpha, obj_id):
    frame = frame_of(64, 64)
    out = render(frame, result_of([square(64, 64, 20, 50, 10, 50)], ids=[obj_id]), alpha=alpha)
    color = np.array(color_for(obj_id), float)
    expected = GREY * (1 - alpha) + color * alpha
    assert np.abs(out[35, 30].astype(float) - expected).max() <= 1  # the middle of the mask
    outside = out[60, 60].astype(float)  # below and right of the box: untouched
    assert np.array_equal(outside, [GREY] * 3)


def test_alpha_zero_leaves_the_inside_of_the_mask_alone():
    frame = frame_of(64, 64)
    out = render(frame, result_of([square(64, 64, 20, 50, 10, 50)]), alpha=0.0)
    assert np.array_equal(out[35, 30], frame[35, 30])


@pytest.mark.parametrize("labels", [False, True])
def test_pixels_far_from_masks_boxes_and_tags_are_unchanged(labels):
    h, w = 120, 200
    frame = np.random.default_rng(1).integers(0, 256, (h, w, 3), np.uint8)
    y0, y1, x0, x1 = 60, 90, 120, 160
    out = render(frame, result_of([square(h, w, y0, y1, x0, x1)]), labels=labels)
    allowed = np.zeros((h, w), bool)
    allowed[y0 - 3 : y1 + 3, x0 - 3 : x1 + 3] = True  # mask, outline and box lines
    if labels:
        allowed[y0 - 30 : y0, :] = True  # the tag above the box (kept inside the frame)
        assert changed(out, frame)[y0 - 30 : y0 - 3].any(), "no tag above the box"
    assert not (changed(out, frame) & ~allowed).any()


@pytest.mark.parametrize(
    "outline, boxes, labels",
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True), (True, True, True)],
)
def test_each_part_can_be_turned_off(outline, boxes, labels):
    h, w = 80, 120
    frame = frame_of(h, w)
    mask = np.zeros((h, w), bool)
    mask[40:60, 40:60] = True
    box = [[30, 35, 80, 70]]  # wider than the mask: box lines away from the mask
    out = render(frame, result_of([mask], boxes=box), outline=outline, boxes=boxes, labels=labels)
    diff = changed(out, frame)
    assert diff[50, 50]  # the fill
    assert diff[45, 30] == boxes  # left side of the box, outside the mask
    assert (tuple(out[40, 50]) == color_for(0)) == outline  # the mask's top edge: solid outline colour
    assert diff[:30].any() == labels  # the tag sits above the box top (y=35)


@pytest.mark.parametrize("size, thickness", [((100, 100), 1), ((200, 640), 2), ((1080, 1080), 3)])
def test_outline_follows_the_outer_edge_of_each_part_and_not_its_holes(size, thickness):
    """The outline is drawn `line_width` pixels wide along each part's outer edge, the frame's edge
    included where the mask is cut by it; a hole's edge gets none (ragged masks would be all lines)."""
    h, w = size
    assert line_width(h, w) == thickness
    frame = frame_of(h, w)
    mask = square(h, w, 20, 80, 0, 60)  # touches the left edge of the frame
    mask[40:60, 20:40] = False  # a hole
    out = render(frame, result_of([mask]), alpha=0.0, boxes=False, labels=False)
    solid = (out == color_for(0)).all(axis=-1)
    assert solid[20, 5:55].all() and solid[79, 5:55].all() and solid[25:75, 59].all()  # top, bottom, right
    assert solid[25:75, 0].all()  # cut by the frame's left edge: outlined along it
    assert not solid[38:62, 18:42].any()  # around and inside the hole: nothing drawn
    assert not solid[30, 30] and not changed(out, frame)[90:].any()  # inside the part, far below: nothing


def test_same_id_same_colour_across_calls():
    h, w = 40, 60
    frame = frame_of(h, w)
    mask = square(h, w, 10, 30, 10, 30)
    other = square(h, w, 5, 35, 35, 55)
    a = render(frame, result_of([mask], ids=[7]), outline=False, boxes=False, labels=False)
    b = render(frame, result_of([other, mask], ids=[2, 7]), outline=False, boxes=False, labels=False)
    assert np.array_equal(a[20, 20], b[20, 20])
    assert color_for(7) == color_for(7 + len(PALETTE)) == PALETTE[7]
    assert color_for(7) != color_for(8)


def test_palette_is_large_distinct_and_neighbours_differ_strongly():
    palette = np.array(PALETTE, int)
    assert len(PALETTE) >= 20
    assert ((palette >= 0) & (palette <= 255)).all()
    assert len(set(PALETTE)) == len(PALETTE)
    for step in (1, 2):
        neighbours = np.abs(palette - np.roll(palette, -step, axis=0)).sum(axis=1)
        assert neighbours.min() >= 150, f"ids {step} apart have too similar colours"


@pytest.mark.parametrize("high_first", [True, False])
@pytest.mark.parametrize("ids", [(1, 2), (9, 4)])
def test_higher_score_is_drawn_on_top(high_first, ids):
    h, w = 50, 50
    frame = frame_of(h, w)
    masks = [square(h, w, 10, 40, 10, 30), square(h, w, 10, 40, 20, 40)]  # overlap: columns 20..29
    scores = [0.9, 0.3] if high_first else [0.3, 0.9]
    high_id = ids[0] if high_first else ids[1]
    out = render(frame, result_of(masks, ids=list(ids), scores=scores), alpha=1.0, outline=False, boxes=False,
                 labels=False)  # fmt: skip
    assert tuple(out[25, 25]) == color_for(high_id)


def test_zero_objects_returns_a_copy():
    frame = np.random.default_rng(2).integers(0, 256, (24, 32, 3), np.uint8)
    out = render(frame, FrameResult.empty(0, 24, 32))
    assert np.array_equal(out, frame)
    assert not np.shares_memory(out, frame)


@pytest.mark.parametrize("size", [(16, 16), (1, 1), (17, 33), (143, 175), (5, 300), (300, 5)])
def test_tiny_and_odd_sizes(size):
    h, w = size
    frame = frame_of(h, w)
    mask = square(h, w, h // 4, max(h // 4 + 1, 3 * h // 4), w // 4, max(w // 4 + 1, 3 * w // 4))
    out = render(frame, result_of([mask], labels=["a very long label that will not fit"]))
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert changed(out, frame)[h // 4, w // 4]


@pytest.mark.parametrize(
    "box, edges",
    [([-20, -20, 500, 500], (0, 0, 63, 47)), ([0, 0, 0, 0], (0, 0, 0, 0)), ([30, 30, 10, 10], (10, 10, 29, 29)),
     ([np.nan, 0, 5, 5], (0, 0, 4, 4)), ([63.5, 47.5, 64, 48], (63, 47, 63, 47))],
)
def test_boxes_outside_or_degenerate_are_drawn_inside_the_frame(box, edges):
    """The box's outline, one pixel wide at this size, on exactly the first and last pixels it
    covers, clipped to the frame (corners swapped, NaN read as 0)."""
    frame = frame_of(48, 64)
    out = render(frame, result_of([np.zeros((48, 64), bool)], boxes=[box]), outline=False, labels=False)
    left, top, right, bottom = edges
    expected = np.zeros((48, 64), bool)
    expected[top : bottom + 1, [left, right]] = True
    expected[[top, bottom], left : right + 1] = True
    assert np.array_equal(changed(out, frame), expected)


def test_empty_mask_still_gets_its_box_and_tag():
    frame = frame_of(60, 120)
    out = render(frame, result_of([np.zeros((60, 120), bool)], boxes=[[40, 30, 80, 50]]))
    diff = changed(out, frame)
    assert diff[30, 60] and diff[:30].any()
    assert not diff[40, 60]  # inside the box, nothing filled


def test_tag_goes_inside_the_frame_when_the_box_touches_the_top():
    frame = frame_of(60, 120)
    out = render(frame, result_of([square(60, 120, 0, 40, 90, 120)]), alpha=0.0, outline=False, boxes=False)
    diff = changed(out, frame)
    assert diff[:15].any()  # tag below the top edge, not lost above it
    assert diff[:, 40:].any() and not diff[40:].any()


def test_wrong_sizes_are_value_errors():
    with pytest.raises(ValueError, match="resolution"):
        render(frame_of(20, 30), result_of([square(10, 15, 0, 5, 0, 5)]))
    with pytest.raises(ValueError, match="uint8"):
        render(np.zeros((20, 30, 3), np.float32), FrameResult.empty(0, 20, 30))
    with pytest.raises(ValueError, match="uint8"):
        render(np.zeros((20, 30), np.uint8), FrameResult.empty(0, 20, 30))


def test_legend_rows_match_the_drawn_colours():
    res = result_of([square(8, 8, 0, 2, 0, 2), square(8, 8, 4, 6, 4, 6)], ids=[3, 21], scores=[0.5, 0.75],
                    labels=["car", "tree"])  # fmt: skip
    rows = legend(res)
    assert [r[:2] for r in rows] == [(3, "car"), (21, "tree")]
    assert rows[1][2] == pytest.approx(0.75)
    for obj_id, _, _, hex_colour in rows:
        assert hex_colour == "#%02x%02x%02x" % color_for(obj_id)


@pytest.mark.parametrize("rgb, expected", [((255, 255, 51), (0, 0, 0)), ((38, 8, 158), (255, 255, 255))])
def test_text_colour_is_readable(rgb, expected):
    assert text_color(rgb) == expected


@pytest.mark.parametrize("label, drawn", [("car", "car "), ("café crème", "cafe creme "), ("Ölfass", "Olfass "),
                                          ("人", ""), ("東京 car", ""), ("автомобиль", ""), ("", "")])
def test_tags_draw_what_the_font_has_and_never_question_marks(label, drawn):
    """OpenCV's font is ASCII only: accents fold, another script leaves the label out (not '???')."""
    assert tag_label(label) == drawn
    frame = frame_of(60, 120)
    result = FrameResult(0, [3], [label], [0.9], np.array([[40, 30, 80, 50]], float), [square(60, 120, 30, 50, 40, 80)])
    plain = FrameResult(0, [3], [drawn.strip() or "x"], [0.9], result.boxes_xyxy, result.masks)
    assert np.array_equal(render(frame, result), render(frame, plain)) == bool(drawn.strip())
