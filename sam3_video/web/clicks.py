"""Clicks on the frame: what a click means (from the `Edit` the page's click mode stands for), and
what the model made of it, in words.

The page turns its click mode into an `Edit` with the parts a click cannot say (`app.py`):
`Edit("refine", labels=(1,))` a positive point, `labels=(0,)` a negative one, `obj_id` when the
visitor typed which object; `Edit("add_object", label=...)` a new object from a box;
`Edit("exemplar", positive=...)` "more like this" from a box. A point goes to the object under it;
a box takes two clicks, opposite corners. `marks` says what to draw of them on the frame.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import BadRequestError
from ..types import Edit, FrameResult

BOX_KINDS = ("add_object", "exemplar")


def object_at(result: FrameResult, x: float, y: float) -> int | None:
    """Id of the highest-scoring object whose mask holds pixel (x, y), or None."""
    h, w = result.size
    col, row = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
    hits = [k for k in range(len(result)) if result.masks[k, row, col]]
    return int(result.obj_ids[max(hits, key=lambda k: result.scores[k])]) if hits else None


class Click(NamedTuple):
    """What one click makes: an edit to apply (None for a box's first corner), the corner to keep
    for the next click, and a sentence."""

    edit: Edit | None
    corner: tuple[float, float] | None
    said: str


def read_click(intent: Edit, x: float, y: float, corner: tuple[float, float] | None, shown: FrameResult,
               default_label: str) -> Click:
    """The click at video pixel (x, y) meant as `intent`, on the frame whose objects are `shown`."""
    if intent.kind == "refine":
        target = intent.obj_id or object_at(shown, x, y)
        if not target:
            raise BadRequestError("Click inside an object, or type its id in 'Object to fix', to add a point to it.")
        positive = bool(intent.labels and intent.labels[0])
        edit = Edit("refine", int(target), ((x, y),), (1 if positive else 0,))
        return Click(edit, None, f"{'positive' if positive else 'negative'} point on object #{int(target)} "
                                 f"at ({x:.0f}, {y:.0f})")
    if intent.kind not in BOX_KINDS:
        raise BadRequestError(f"Unknown click '{intent.kind}'. Use a point (refine), a new object or more like this.")
    if corner is None:
        return Click(None, (x, y), f"first corner at ({x:.0f}, {y:.0f}); click the opposite corner")
    (x0, y0) = corner
    box = (min(x0, x), min(y0, y), max(x0, x), max(y0, y))
    if intent.kind == "exemplar":
        return Click(replace(intent, box=box), None, "searched for more objects like the one in the box")
    label = " ".join((intent.label or "").split()) or default_label
    return Click(Edit("add_object", box=box, label=label), None, f"added a new '{label}' object")


class Mark(NamedTuple):
    """A click to draw on the frame, in video pixels: a point ("positive", "negative", with `xy` =
    (x, y)), a box's first corner ("corner", (x, y)), or a box ("box" for a new object,
    "example" / "counter-example" for more (or not) like this, `xy` = (x0, y0, x1, y1))."""

    kind: str
    xy: tuple[float, ...]


def marks(edits: Sequence[Edit], corner: tuple[float, float] | None) -> list[Mark]:
    """What to draw of the clicks made on the frame (`edits`, in order) and a box's pending corner."""
    out = []
    for edit in edits:
        if edit.kind == "refine":
            out += [Mark("positive" if label else "negative", tuple(p)) for p, label in zip(edit.points, edit.labels)]
        elif edit.box is not None:
            kind = "box" if edit.kind == "add_object" else "example" if edit.positive else "counter-example"
            out.append(Mark(kind, tuple(edit.box)))
    if corner is not None:
        out.append(Mark("corner", tuple(corner)))
    return out


def merged(edits: Sequence[Edit], edit: Edit) -> list[Edit]:
    """`edits` with `edit` applied after them; a click on an object joins the earlier clicks on it
    (the model reads every click on an object together)."""
    edits = list(edits)
    if edit.kind == "refine":
        old = next((e for e in edits if e.kind == "refine" and e.obj_id == edit.obj_id), None)
        if old is not None:
            edits.remove(old)
            edit = Edit("refine", edit.obj_id, old.points + edit.points, old.labels + edit.labels)
    edits.append(edit)
    return edits


def outcome(edit: Edit, said: str, before: FrameResult, after: FrameResult) -> str:
    """`said` (what the click was), completed with what the model made of it."""
    old, new = set(before.obj_ids.tolist()), set(after.obj_ids.tolist())
    added, gone = sorted(new - old), sorted(old - new)
    empty = {int(i) for i, m in zip(after.obj_ids.tolist(), after.masks) if not m.any()}
    if edit.kind == "refine":
        if edit.obj_id not in new:
            return (f"{said}: the model dropped #{edit.obj_id} (it sees nothing of it on this frame now). Add a "
                    "positive point on it, or press Undo all clicks to go back.")
        if edit.obj_id in empty:
            return (f"{said}: the mask of #{edit.obj_id} is empty now. Add a positive point on it, or press Undo "
                    "all clicks to go back.")
        also = f"; the model dropped {_ids(gone)}" if gone else ""
        return f"{said}: #{edit.obj_id} updated{also}"
    if edit.kind == "add_object":
        if not added:
            return f"{said}, but the model found nothing in that box. Draw the box around the object."
        if added[0] in empty:
            return f"{said}: id #{added[0]}, but its mask is empty on this frame. Draw the box around the object."
        return f"{said}: id #{added[0]}"
    if edit.kind == "exemplar":
        parts = ([f"new: {_ids(added)}"] if added else []) + ([f"removed: {_ids(gone)}"] if gone else [])
        return f"{said}: " + ("; ".join(parts) if parts else "nothing new found")
    return said


def _ids(ids) -> str:
    return ", ".join(f"#{i}" for i in ids)
