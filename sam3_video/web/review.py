"""Review a run at a glance: the timeline of its objects on the page, the objects table after a
run, and the same facts for API clients (`/timeline`, and `objects` in the summary).

The facts come from sam3_video/timeline.py (each object's frames with a mask, as ranges), read from
the run folder's results.jsonl as it grows (`FolderTimeline`: a look reads only the lines added
since the last one), so the timeline grows during a run at the pace of its progress line. Here
they get the run's shape (the frames it sets out to cover, where it started, where it was continued
from) and become HTML: one row per object in its colour, every frame of the run a column, or a bin
of columns when the run has more frames than a bar has pixels (MAX_BINS).

A click on a row's bar names the object and where along the bar (0 to 1); `frame_at` turns that
into the run's frame there.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..runfolder import read_record
from ..timeline import FolderTimeline
from ..types import ordinal
from .previews import swatch

MAX_BINS = 600  # columns of a bar at most: wider than a phone's bar, about a desktop's
SHADES = {1: 0.35, 2: 0.65}  # a bin where an object has a mask on a third, two thirds of its frames (all: 1)
HEADERS = ["id", "label", "colour", "first", "last", "frames", "gaps", "missing", "best score", "here"]
#: The objects table's label: it lists a detection's objects, and after a run the run's (run_table).
TABLE_LABEL = ("Objects (after a run, the run's: first and last frame, frames with a mask, gaps inside its span "
               "and the frames missing in them, best score, score on the slider's frame)")


@dataclass(frozen=True)
class Shape:
    """What a run of the page sets out to do: frames `first` to `last` every `stride`-th (an
    earlier run's kept ones included), from `start` going `direction`; `continued` the frame it
    continued an earlier run from, keeping `kept` (first and last) of that run's frames."""

    first: int
    last: int
    start: int
    direction: str
    stride: int = 1
    continued: int | None = None
    kept: tuple[int, int] | None = None


@dataclass
class Review:
    """A workspace's view of its latest run: the folder followed, the run's shape, and what the
    visitor picked (the frame the slider is on, the object whose row is highlighted)."""

    folder: str
    reader: FolderTimeline
    shape: Shape | None = None
    frame: int | None = None
    selected: int | None = None
    facts: dict = field(default_factory=dict)

    @classmethod
    def of(cls, folder: str, shape: Shape | None) -> "Review":
        stride = shape.stride if shape is not None else None
        return cls(folder, FolderTimeline(folder, stride), shape)


def run_facts(review: Review, running: bool, num_frames: int | None = None) -> dict:
    """The facts of `review`'s run now, for API clients and the page: status, the frames it
    covers (`covers`: what it sets out to do; `frame_range`: what is done), its start and
    direction, where it was continued from, and per object (timeline.py)."""
    facts = review.reader.update()
    record = read_record(review.folder)
    shape = review.shape
    done = facts["frame_range"]
    stride = facts["stride"]
    if shape is not None:
        covers = [shape.first, shape.last]
        start, direction = shape.start, shape.direction
        continued = None if shape.continued is None else {"frame": shape.continued,
                                                          "kept": list(shape.kept) if shape.kept else None}
    else:  # a folder the page did not start (or from before): what its record says
        start = record.start.frame if record is not None else (done[0] if done else 0)
        direction = (record.direction if record is not None else None) or "forward"
        covers = list(done) if done else [start, start]
        earlier = record.continued_from if record is not None else None
        continued = None if not earlier else {"frame": earlier.get("frame"), "kept": None}
    if done:
        covers = [min(covers[0], done[0]), max(covers[1], done[1])]
    status = "running" if running else (record.status if record is not None else "running")
    out = {"status": status, "stride": stride, "covers": covers, "frame_range": done,
           "frames_done": facts["frames_done"], "start_frame": start, "direction": direction,
           "continued_from": continued, "objects": facts["objects"]}
    if num_frames is not None:
        out["num_frames"] = num_frames
    review.facts = out
    return out


def grid(facts: dict) -> tuple[int, int, int]:
    """(first frame, stride, columns) of the run's axis."""
    lo, hi = facts["covers"]
    stride = max(1, int(facts["stride"]))
    return lo, stride, (hi - lo) // stride + 1


def frame_at(facts: dict, x: float | None, obj_id: int | None = None) -> int:
    """The run's frame at `x` (0 to 1) along a bar, kept to the frames done; `x` None: the
    object's first frame with a mask (else the first frame done)."""
    lo, stride, n = grid(facts)
    done = facts["frame_range"] or [lo, lo]
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(x):
        obj = next((o for o in facts["objects"] if o["id"] == obj_id), None)
        return obj["first"] if obj is not None and obj["first"] is not None else done[0]
    frame = lo + min(n - 1, int(max(0.0, float(x)) * n)) * stride  # the frame's column under the click
    return int(min(done[1], max(done[0], frame)))


def _bins(n: int) -> tuple[int, np.ndarray]:
    """(bins, the bin of each column) for `n` columns."""
    count = min(n, MAX_BINS)
    return count, (np.arange(n) * count) // n


def _positions(ranges: Sequence[Sequence[int]], lo: int, stride: int, n: int) -> np.ndarray:
    """The columns (bool, n) that `ranges` of frames cover."""
    cover = np.zeros(n + 1, np.int32)
    for a, b in ranges:
        i, j = max(0, (a - lo) // stride), min(n - 1, (b - lo) // stride)
        if i <= j:
            cover[i] += 1
            cover[j + 1] -= 1
    return np.cumsum(cover[:n]) > 0


def _bar(obj: dict, lo: int, stride: int, n: int, count: int, which: np.ndarray, done: np.ndarray,
         done_per_bin: np.ndarray) -> str:
    """An object's row as SVG (viewBox: `count` wide, 10 high): its colour where it has a mask
    (paler where only some frames of a bin have one), and over it a red line where it is missing
    inside its span (a bin with one frame missing shows it); alike bins side by side are one box."""
    has = _positions(obj["ranges"], lo, stride, n)
    span = _positions([[obj["first"], obj["last"]]], lo, stride, n) if obj["first"] is not None else has
    has_per_bin = np.bincount(which, weights=has, minlength=count)
    share = np.minimum(1.0, has_per_bin / np.maximum(1.0, done_per_bin))
    level = np.where(has_per_bin > 0, np.ceil(share * 3).astype(int), 0)  # 1-3: a third, two, all of a bin's frames
    missing = np.bincount(which, weights=span & done & ~has, minlength=count) > 0
    colour = html.escape(obj["colour"])
    paths = []  # one path per shade (a bar of 600 bins is a few kilobytes, however ragged)
    for shade in (1, 2, 3):
        d = "".join(f"M{k} 1h{j - k}v8h-{j - k}z" for k, j, value in _runs(level) if value == shade)
        if d:
            paths.append(f'<path d="{d}" fill="{colour}"' + (f' fill-opacity="{SHADES[shade]}"' if shade < 3 else "")
                         + "/>")
    d = "".join(f"M{k} 3.5h{j - k}v3h-{j - k}z" for k, j, value in _runs(missing) if value)
    if d:
        paths.append(f'<path class="tl-gap" d="{d}"/>')
    return "".join(paths)


def _runs(values: np.ndarray) -> list[tuple[int, int, object]]:
    """[(start, end, value)] of the stretches of equal `values` (end exclusive)."""
    if len(values) == 0:
        return []
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, len(values)]
    return [(int(a), int(b), values[a].item()) for a, b in zip(starts, ends)]


def _pct(frame: int, lo: int, stride: int, n: int) -> float:
    """Where `frame` is along a bar, in percent (the middle of its column)."""
    return round(100 * ((frame - lo) / stride + 0.5) / n, 3)


def _anchor(pct: float) -> str:
    """A label's place on the axis at `pct`: starting there near the left end, ending there near
    the right end (never past the bar), else centred on it."""
    if pct < 25:
        return f"left:{pct}%"
    if pct > 75:
        return f"right:{round(100 - pct, 3)}%"
    return f"left:{pct}%;transform:translateX(-50%)"


def _frames(a: int, b: int) -> str:
    return f"frame {a}" if a == b else f"frames {a}-{b}"


def heading(facts: dict) -> str:
    """The run in one line: what it covers, every how many frames, where it started and how it
    went, where it was continued from, how far it got."""
    lo, hi = facts["covers"]
    every = "every frame" if facts["stride"] == 1 else f"every {ordinal(facts['stride'])} frame"
    ways = {"both": "both ways", "forward": "forward", "backward": "backward"}.get(facts["direction"], "")
    parts = [f"Run over {_frames(lo, hi)}, {every}", f"started at frame {facts['start_frame']}, {ways}"]
    continued = facts.get("continued_from")
    if continued and continued.get("frame") is not None:
        kept = continued.get("kept")
        parts.append(f"continued from frame {continued['frame']}"
                     + (f" ({_frames(*kept)} kept from the earlier run)" if kept else ""))
    done = facts["frame_range"]
    count = facts["frames_done"]
    parts.append(f"{facts['status']}: {count} frame{'s' if count != 1 else ''} done"
                 + (f" ({_frames(*done)})" if done else ""))
    return " · ".join(parts)


def timeline_html(facts: dict | None, frame: int | None = None, selected: int | None = None) -> str:
    """The timeline of a run (`run_facts`) as HTML for the page ("" when there is none): a line
    about the run, an axis with its first and last frame, where it started, where it was
    continued from and the slider's `frame`, then a row per object (`selected` highlighted)."""
    if not facts:
        return ""
    lo, stride, n = grid(facts)
    hi = facts["covers"][1]
    count, which = _bins(n)
    done_frames = _positions([facts["frame_range"]], lo, stride, n) if facts["frame_range"] else np.zeros(n, bool)
    done_per_bin = np.bincount(which, weights=done_frames, minlength=count)
    continued = facts.get("continued_from")
    marks = []
    if continued and continued.get("frame") is not None:  # where it started, too
        marks.append(("tl-continued", continued["frame"], f"continued from {continued['frame']}"))
    if not marks or marks[0][1] != facts["start_frame"]:
        marks.append(("tl-start", facts["start_frame"], f"start {facts['start_frame']}"))
    if frame is not None and lo <= frame <= hi:
        marks.append(("tl-cursor", frame, f"frame {frame}"))
    marker_html = "".join(f'<span class="tl-mark {cls}" style="left:{_pct(f, lo, stride, n)}%" title="{html.escape(t)}">'
                          f"</span>" for cls, f, t in marks)
    labels = "".join(f'<span class="tl-label {cls}" style="{_anchor(_pct(f, lo, stride, n))}">{html.escape(t)}</span>'
                     for cls, f, t in marks if cls != "tl-cursor")
    done = facts["frame_range"]
    band = ""
    if done:
        a, b = (done[0] - lo) / stride, (done[1] - lo) / stride + 1
        band = f'<span class="tl-done" style="left:{100 * a / n:.3f}%;width:{100 * (b - a) / n:.3f}%"></span>'
    rows = []
    for obj in facts["objects"]:
        ident = int(obj["id"])
        text = f"#{ident} {obj['label']}"
        if obj["first"] is None:
            about = f"{text}: no frame with a mask"
        else:
            gaps = len(obj["gaps"])
            about = (f"{text}: {_frames(obj['first'], obj['last'])}, {obj['frames']} with a mask"
                     + (f", {gaps} gap{'s' if gaps != 1 else ''} ({obj['gap_frames']} frames missing)" if gaps else "")
                     + (f", best score {obj['best_score']:.2f} on frame {obj['best_frame']}"
                        if obj["best_score"] is not None else ""))
        swatch = html.escape(obj["colour"])
        chosen = " tl-selected" if selected == ident else ""
        rows.append(
            f'<div class="tl-row{chosen}" data-id="{ident}" title="{html.escape(about)}" tabindex="0">'
            f'<span class="tl-name"><i style="background:{swatch}"></i>{html.escape(text)}</span>'
            f'<span class="tl-track">{band}'
            f'<svg class="tl-bar" viewBox="0 0 {count} 10" preserveAspectRatio="none" role="img" '
            f'aria-label="{html.escape(about)}">{_bar(obj, lo, stride, n, count, which, done_frames, done_per_bin)}</svg>'
            f"{marker_html}</span></div>")
    if not rows:
        rows.append('<div class="tl-row tl-none"><span class="tl-name"></span>'
                    '<span class="tl-note">No object yet.</span></div>')
    binned = f" Each column is {math.ceil(n / count)} frames (the run has more frames than the bar has room for)." \
        if count < n else ""
    return (f'<div class="tl" data-first="{lo}" data-last="{hi}" data-stride="{stride}">'
            f'<p class="tl-head">{html.escape(heading(facts))}</p>'
            f'<div class="tl-row tl-axis"><span class="tl-name">frame</span><span class="tl-track">'
            f'<span class="tl-end tl-first">{lo}</span>{labels}<span class="tl-end tl-last">{hi}</span></span></div>'
            + "".join(rows) +
            '<p class="tl-key"><i class="tl-key-mask"></i> mask <i class="tl-key-gap"></i> missing inside its span '
            '<i class="tl-key-start"></i> start <i class="tl-key-continued"></i> continued from '
            f"· Click a row: that frame, that object.{binned}</p></div>")


#: The page's script for the timeline (gr.HTML's js_on_load): a click on a row's bar says which
#: object and where along the bar (0 to 1); on its name, or Enter on the row, the object alone
#: (its first frame).
CLICK_JS = """
element.addEventListener('click', (event) => {
  const row = event.target.closest('.tl-row[data-id]');
  if (!row) return;
  const bar = row.querySelector('.tl-track');
  const r = bar.getBoundingClientRect();
  const onBar = event.target.closest('.tl-track') !== null && r.width > 0;
  const x = onBar ? Math.min(1, Math.max(0, (event.clientX - r.left) / r.width)) : null;
  trigger('click', {x: x, id: Number(row.dataset.id)});
});
element.addEventListener('keydown', (event) => {  // Enter on a row (Tab reaches each): its first frame
  const row = event.target.closest('.tl-row[data-id]');
  if (row && event.key === 'Enter') trigger('click', {x: null, id: Number(row.dataset.id)});
});
"""

CSS = """
#timeline .tl { font-size: 0.85rem; }
#timeline .tl-head, #timeline .tl-key { margin: 0.2rem 0; overflow-wrap: anywhere; }
#timeline .tl-key { color: var(--body-text-color-subdued); }
#timeline .tl-key i { display: inline-block; width: 1.2em; height: 0.6em; vertical-align: middle; }
#timeline .tl-key-mask { background: #888; }
#timeline .tl-key-gap { border-top: 2px solid #e0245e; height: 0 !important; }
#timeline .tl-key-start { border-left: 2px solid var(--body-text-color); width: 0 !important; height: 1em !important; }
#timeline .tl-key-continued { border-left: 2px dashed #f59e0b; width: 0 !important; height: 1em !important; }
#timeline .tl-row { display: grid; grid-template-columns: minmax(0, 8.5em) minmax(0, 1fr); gap: 0.4rem;
                    align-items: center; min-height: 1.4rem; cursor: pointer; border-radius: 3px; }
#timeline .tl-row:hover { background: var(--background-fill-secondary); }
#timeline .tl-selected { outline: 2px solid var(--body-text-color); background: var(--background-fill-secondary); }
#timeline .tl-axis { cursor: default; min-height: 1.6rem; }
#timeline .tl-axis:hover { background: none; }
#timeline .tl-name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
#timeline .tl-name i { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; border-radius: 2px;
                       vertical-align: -0.05em; border: 1px solid rgba(0, 0, 0, 0.4); }
#timeline .tl-track { position: relative; display: block; height: 1.1rem; min-width: 0; }
#timeline .tl-axis .tl-track { height: 2rem; }
#timeline .tl-done { position: absolute; top: 0; bottom: 0; background: var(--background-fill-secondary);
                     border-radius: 2px; }
#timeline .tl-bar { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
#timeline .tl-gap { fill: #e0245e; }
#timeline .tl-mark { position: absolute; top: -2px; bottom: -2px; width: 0; pointer-events: none;
                     border-left: 2px solid var(--body-text-color); }
#timeline .tl-continued { border-left: 2px dashed #f59e0b; }
#timeline .tl-cursor { border-left: 2px solid #2563eb; }
#timeline .tl-end, #timeline .tl-label { position: absolute; bottom: 0; white-space: nowrap; font-size: 0.75rem;
                                         line-height: 1; }
#timeline .tl-first { left: 0; }
#timeline .tl-last { right: 0; }
#timeline .tl-label { top: 0; bottom: auto; padding: 0 0.2em;
                      background: var(--body-background-fill); }
#timeline .tl-label.tl-continued { border: none; color: #b45309; }
#timeline .tl-note { color: var(--body-text-color-subdued); }
@media (max-width: 760px) { #timeline .tl-row { grid-template-columns: minmax(0, 7em) minmax(0, 1fr); } }
"""


def run_table(facts: dict | None, here: dict[int, float] | None = None, selected: int | None = None):
    """The objects table after a run: one row per object of the run, its colour cell painted,
    the `selected` object's row marked; `here`: the score of each object with a mask on the
    slider's frame (None: not known, as during a run). A pandas Styler, like previews.object_table."""
    import pandas as pd

    rows = []
    for o in (facts or {}).get("objects", []):
        score_here = None if here is None else here.get(o["id"])
        rows.append([o["id"], o["label"], o["colour"], o["first"], o["last"], o["frames"], len(o["gaps"]),
                     o["gap_frames"], o["best_score"], score_here])
    frame = pd.DataFrame(rows, columns=HEADERS)

    def mark(row) -> list[str]:
        on = selected is not None and row["id"] == selected
        return ["font-weight: bold; text-decoration: underline" if on else ""] * len(row)

    style = frame.style.apply(mark, axis=1).map(swatch, subset=["colour"])
    return style.format({"best score": _score, "here": _score, "first": _whole, "last": _whole}, na_rep="-")


def _score(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _whole(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else str(int(value))
