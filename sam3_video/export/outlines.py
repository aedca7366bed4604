"""Exact outlines of a mask: polygons through the centres of its edge pixels that fill back to it.

Shared by the labelme writer (a polygon per connected part, its holes cut in) and the CVAT writer
(one outline an object: parts and holes joined, traced on the mask doubled in size).

A part's outline and each of its holes' (its loops) are traced by cv2.findContours (RETR_CCOMP:
8-connected parts, 4-connected holes) on the mask's bounding rectangle; their points are exactly
the mask's pixels with background (or the frame's edge) left, right, above or below. The loops
are joined into one by zero-width slits, each walked out and back:

- a hole, along the row of its leftmost point, leftwards through its part's own pixels to the
  first pixel with background on its left: a point of the part's outline or of a hole further
  left (joined before it). The slit covers only mask pixels, so a fill that draws the edge too
  (labelme's `shape_to_mask`, cv2.fillPoly) draws nothing outside the mask;
- parts (for one outline an object) by the shortest runs of background along a row from one
  part to the next, shortest first, each between parts not yet joined (a spanning tree); a
  part with no such run to the others, by the nearest pair of points (rare).

A slit is passed twice, in opposite directions, so it adds nothing to a filled area and, in a fill
by crossings, leaves every other pixel's parity as it was: the fill is the mask. Row slits never
cross each other or an outline (each is a run of pixels of one kind between its ends). The joins
form a tree, walked from the leftmost part: a loop's points from where it is entered, each loop
joined to it walked in after the point its slit leaves from, and that point again. All of it is
numpy work on the loops' points at once but for a few steps per loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..rle import Crop

Box = Sequence[int]  # [x, y, width, height] of a mask's pixels
Mask = np.ndarray | Crop  # a full-frame (H, W) bool mask, or one inside its rectangle (results.EncodedFrame.crops)


def part_outlines(mask: Mask, box: Box | None = None) -> list[np.ndarray]:
    """(H, W) bool -> one outline per connected part (8-connected), (n, 2) int32 x, y, every hole
    of the part cut in, as traced (corners only, nothing simplified away). Parts too thin to
    enclose an area (a pixel, a line) keep their outline with a point repeated (3 points at
    least), which a fill with the edge draws as the pixels themselves. `box`: the mask's
    [x, y, width, height] where known (EncodedFrame.boxes), else found here; not needed for a `Crop`."""
    outlines, ends = part_outlines_packed(mask, box)
    return np.split(outlines, ends[:-1])


def part_outlines_packed(mask: Mask, box: Box | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`part_outlines` in one (n, 2) array, and where each outline ends in it."""
    loops = _Loops.of(mask, box)
    if loops is None:
        return np.zeros((0, 2), np.int32), np.zeros(0, np.int64)
    outlines, ends = _corners(*loops.walk(join_parts=False))
    short = np.flatnonzero(np.diff(ends, prepend=0) < 3)
    if len(short):  # a pixel or a line of pixels: its points, one repeated
        pieces = np.split(outlines, ends[:-1])
        for k in short:
            pieces[k] = np.concatenate([pieces[k], pieces[k][:1], pieces[k][:1]])[:3]
        ends = np.cumsum([len(p) for p in pieces])
        outlines = np.concatenate(pieces)
    return outlines, ends


def joined_outline(mask: Mask, box: Box | None = None) -> np.ndarray:
    """(H, W) bool -> one outline, (n, 2) int32 x, y: every part and hole joined by slits (for a
    format with one polygon an object); (0, 2) for an empty mask."""
    loops = _Loops.of(mask, box)
    if loops is None:
        return np.zeros((0, 2), np.int32)
    return _corners(*loops.walk(join_parts=True))[0]


class _Loops:
    """A mask's loops as cv2.findContours traces them (RETR_CCOMP) inside its rectangle: `walk`
    gives the outlines through them. A mask of parts without holes (and, for one outline, of one
    part) needs no slit: its loops are walked as traced, the leftmost first; others go through
    `_Traced`. Both give the same points (tests/test_export.py)."""

    def __init__(self, crop: np.ndarray, contours, parent: np.ndarray, offset: tuple[int, int]):
        self.crop, self.contours, self.parent, self.offset = crop, contours, parent, offset

    @classmethod
    def of(cls, mask: Mask, box: Box | None) -> _Loops | None:
        if isinstance(mask, Crop):  # already inside its rectangle
            x, y, (h, w) = mask.x, mask.y, mask.pixels.shape
            pixels = np.asarray(mask.pixels, bool).view(np.uint8)
        else:
            pixels = np.asarray(mask, bool).view(np.uint8)  # zero-copy
            x, y, w, h = cv2.boundingRect(pixels) if box is None else box
            pixels = pixels[y : y + h, x : x + w]
        if w == 0 or h == 0:
            return None
        crop = np.ascontiguousarray(pixels)
        contours, hierarchy = cv2.findContours(crop, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        if hierarchy is None:
            return None
        return cls(crop, contours, hierarchy[0][:, 3], (x, y))

    def walk(self, join_parts: bool, slits: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`_Traced.walk` of these loops; `slits`: whether to go through `_Traced` (None: when needed)."""
        if slits is None:
            slits = bool((self.parent != -1).any()) or (join_parts and len(self.contours) > 1)
        if slits:
            return _Traced(self.crop, self.contours, self.parent, join_parts, self.offset).walk()
        # each loop from its first point, the loops by their leftmost point, then as traced
        lefts = [int(c[:, 0, 0].min()) for c in self.contours]
        order = sorted(range(len(self.contours)), key=lambda k: (lefts[k], k))
        points = np.concatenate([self.contours[k] for k in order]).reshape(-1, 2)
        ends = np.cumsum([len(self.contours[k]) for k in order])
        return points + np.asarray(self.offset, points.dtype), ends


class _Traced:
    """A mask's loops (all their points, in one array) and the slits that join them: `up[k]`, the
    point (a row of `points`) loop k is entered from, -1 for a loop walked first; `entry[k]`, the
    point of loop k where it is entered."""

    def __init__(self, crop: np.ndarray, contours, parent: np.ndarray, join_parts: bool, offset: tuple[int, int]):
        h, w = crop.shape
        n = len(contours)
        self.sizes = sizes = np.array([len(c) for c in contours])
        self.start = start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.points = points = np.concatenate(contours).reshape(-1, 2)
        self.offset = np.asarray(offset, points.dtype)
        self.owner = owner = np.repeat(np.arange(n), sizes)
        self.is_hole = is_hole = parent != -1
        self.part = part = np.where(is_hole, parent, np.arange(n))
        x, y = points[:, 0].astype(np.int64), points[:, 1].astype(np.int64)
        # each loop's leftmost point (the top one of those): where a hole is entered
        key = x * h + y
        at_min = np.flatnonzero(key == np.minimum.reduceat(key, start)[owner])
        entry = at_min[np.searchsorted(owner[at_min], np.arange(n))]
        self.rank = rank = np.empty(n, np.int64)
        rank[np.lexsort((np.arange(n), is_hole, x[entry]))] = np.arange(n)  # left first; a part before its holes
        self.entry = entry.copy()
        self.up = np.full(n, -1, np.int64)
        self._pixels: np.ndarray | None = None  # made when first asked (_point_at)
        holes = np.flatnonzero(is_hole)
        self.bg_left = np.zeros(len(x), bool)  # the points with background on their left
        self.bg_left[x > 0] = crop[y[x > 0], x[x > 0] - 1] == 0
        if len(holes):
            # leftwards along the entry's row, through mask pixels, to the first with background
            # (or the frame's edge) on its left: the last such point on the row up to the entry
            stops = self.bg_left | (x == 0)
            stop_keys = np.sort(y[stops] * w + x[stops])
            ex, ey = x[entry[holes]], y[entry[holes]]
            to_x = stop_keys[np.searchsorted(stop_keys, ey * w + ex, side="right") - 1] - ey * w
            target = self._point_at(to_x, ey)
            fine = target >= 0
            fine[fine] = rank[owner[target[fine]]] < rank[holes[fine]]  # a loop joined before it
            self.up[holes[fine]] = target[fine]
            for k in holes[~fine]:  # never seen: the nearest point of the loops of its part before it
                rows = np.arange(start[k], start[k] + sizes[k])
                self.up[k], self.entry[k] = self._nearest(rows, (rank[owner] < rank[k]) & (part[owner] == part[k]))
        if join_parts and (~is_hole).sum() > 1:
            self._join_parts(crop, x, y)

    def _join_parts(self, crop: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        """Slits between the parts (see the module): a spanning tree over the parts, walked from the
        leftmost part; a part entered at a loop other than its outline (a hole, where a part lies
        inside it) is re-rooted there."""
        owner, part, n = self.owner, self.part, len(self.sizes)
        h, w = crop.shape
        group = part[owner]
        pairs: list[tuple[int, int]] = []  # rows (a, b) of each slit between parts
        joined = list(range(n))  # union-find over the parts
        # background runs along a row: from a point with background on its right to the next point
        # with background on its left (on that row)
        open_right = np.zeros(len(x), bool)
        open_right[x + 1 < w] = crop[y[x + 1 < w], x[x + 1 < w] + 1] == 0
        starts, ends = np.flatnonzero(open_right), np.flatnonzero(self.bg_left)
        if len(starts) and len(ends):
            end_keys = y[ends] * w + x[ends]
            by_key = np.argsort(end_keys, kind="stable")
            pos = np.searchsorted(end_keys[by_key], y[starts] * w + x[starts] + 1)
            starts, pos = starts[pos < len(ends)], pos[pos < len(ends)]
            stops = ends[by_key[pos]]
            keep = (y[stops] == y[starts]) & (group[starts] != group[stops])
            starts, stops = starts[keep], stops[keep]
            length = x[stops] - x[starts]
            ga, gb = group[starts], group[stops]
            pair = np.minimum(ga, gb) * n + np.maximum(ga, gb)
            first = np.lexsort((length, pair))  # per pair of parts, its shortest run
            first = first[np.concatenate([[True], pair[first][1:] != pair[first][:-1]])] if len(first) else first
            for k in first[np.argsort(length[first], kind="stable")]:
                if _find(joined, ga[k]) != _find(joined, gb[k]):
                    pairs.append((int(starts[k]), int(stops[k])))
                    _union(joined, ga[k], gb[k])
        parts = np.flatnonzero(~self.is_hole)
        first_part = parts[np.argmin(self.rank[parts])]
        for k in parts[np.argsort(self.rank[parts])]:  # what no run reached: the nearest pair
            main = _find(joined, first_part)
            if _find(joined, k) != main:
                groups = np.array([_find(joined, j) for j in range(n)])
                mine = np.flatnonzero((groups[group] == groups[k]) & ~self.is_hole[owner])
                pairs.append(self._nearest(mine, groups[group] == main))
                _union(joined, k, main)
        # enter each part from the one it is joined to, the leftmost part first
        near: dict[int, list[tuple[int, int]]] = {}
        for a, b in pairs:
            near.setdefault(int(group[a]), []).append((a, b))
            near.setdefault(int(group[b]), []).append((b, a))
        seen, stack = {int(first_part)}, [int(first_part)]
        while stack:
            for a, b in near.get(stack.pop(), ()):
                g = int(group[b])
                if g not in seen:
                    seen.add(g)
                    self._enter(int(owner[b]), a, b)
                    stack.append(g)

    def _enter(self, k: int, a: int, b: int) -> None:
        """Loop k is entered at point b from point a: the slits from k up to its part's outline
        are walked the other way round."""
        while k >= 0:
            up, entry = int(self.up[k]), int(self.entry[k])
            self.up[k], self.entry[k] = a, b
            if up < 0:
                return
            a, b, k = entry, up, int(self.owner[up])

    def walk(self) -> tuple[np.ndarray, np.ndarray]:
        """Per loop walked first (leftmost first), the outline through it and every loop joined to
        it, one after the other in an (n, 2) array of frame coordinates, and where each ends in it.
        An outline is a loop's points from its entry, then that point again (for a
        loop entered by a slit), each loop joined to it walked in after the point its slit leaves
        from, and that point again."""
        owner, start, sizes, up = self.owner, self.start, self.sizes, self.up
        n, count = len(sizes), len(self.points)
        parent = np.where(up >= 0, owner[np.maximum(up, 0)], -1)
        joined = np.flatnonzero(parent >= 0)
        roots = np.flatnonzero(parent < 0)
        roots = roots[np.argsort(self.rank[roots])]
        kids: list[list[int]] = [[] for _ in range(n)]
        parent_list = parent.tolist()
        for c in joined.tolist():
            kids[parent_list[c]].append(c)
        order, stack = [], roots.tolist()[::-1]  # parents before their loops
        while stack:
            k = stack.pop()
            order.append(k)
            stack.extend(kids[k])
        length = (sizes + (parent >= 0)).tolist()  # its own points, and its entry again when joined
        for k in reversed(order):  # its loops before it: with each loop joined to it, and the way back
            if parent_list[k] >= 0:
                length[parent_list[k]] += length[k] + 1
        # where each point lands in its loop's walk: its place from the entry, after the walks
        # inserted before it
        inserted = np.zeros(count, np.int64)
        np.add.at(inserted, up[joined], np.array(length)[joined] + 1)
        local = np.arange(count) - start[owner]
        first = (self.entry - start) * (parent >= 0)  # a loop walked first starts at its first point
        ordered = start[owner] + (local + first[owner]) % sizes[owner]  # the points from each entry
        before = np.cumsum(inserted[ordered]) - inserted[ordered]
        place = np.empty(count, np.int64)
        place[ordered] = local + before - before[start[owner]]
        at_list, total = [0] * n, 0  # where each loop starts in the tour
        after: dict[int, int] = {}  # a point -> how many points the slits to its children put after it so far
        place_list, up_list = place.tolist(), up.tolist()
        for k in order:  # parents first
            p = parent_list[k]
            if p < 0:
                at_list[k], total = total, total + length[k]
            else:
                a = up_list[k]
                at_list[k] = at_list[p] + place_list[a] + 1 + after.get(a, 0)
                after[a] = after.get(a, 0) + length[k] + 1
        at, lengths = np.array(at_list), np.array(length)
        tour = np.empty(total, np.int64)
        tour[at[owner] + place] = np.arange(count)
        tour[at[joined] + lengths[joined] - 1] = self.entry[joined]  # back at the entry
        tour[at[joined] + lengths[joined]] = up[joined]  # back where the slit left from
        return self.points[tour] + self.offset, np.sort(at[roots] + lengths[roots])

    def _point_at(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Rows of `points` at pixels (x, y), of the loop first in rank there; -1 where no loop passes."""
        points, n, count = self.points, len(self.sizes), len(self.points)
        if self._pixels is None:  # by pixel, then rank, then row: a pixel's first entry is the one wanted
            self._width = int(points[:, 0].max()) + 1
            pixel = points[:, 1].astype(np.int64) * self._width + points[:, 0]
            self._pixels = np.sort((pixel * n + self.rank[self.owner]) * count + np.arange(count))
        pixels = self._pixels
        wanted = (y.astype(np.int64) * self._width + x) * n * count
        hit = pixels[np.minimum(np.searchsorted(pixels, wanted), count - 1)]
        found = (x >= 0) & (x < self._width) & (hit // (n * count) == wanted // (n * count))
        return np.where(found, hit % count, -1)

    def _nearest(self, rows: np.ndarray, allowed: np.ndarray) -> tuple[int, int]:
        """(allowed point, point of `rows`): the nearest pair (rows of `points`; `rows` whole loops).
        Coarse to fine: the nearest pair of samples of each side (every loop's first point and
        every step-th) bounds the distance; a point of the nearest pair lies within that, plus the
        other side's step along its loop, of the other side's samples, and only such points are
        compared."""
        x, y = self.points[:, 0].astype(np.int32), self.points[:, 1].astype(np.int32)
        theirs = np.flatnonzero(allowed)

        def sample(side: np.ndarray) -> tuple[np.ndarray, float]:
            step = max(1, len(side) // 64)
            keep = np.zeros(len(side), bool)
            keep[::step] = True
            keep[np.flatnonzero(np.diff(self.owner[side], prepend=-1))] = True
            return side[keep], (step - 1) * np.sqrt(2)  # a point's way along its loop to a sample

        def to(side: np.ndarray, other: np.ndarray) -> np.ndarray:  # squared distances, side x other
            dx, dy = x[side, None] - x[None, other], y[side, None] - y[None, other]
            return dx * dx + dy * dy

        mine_s, mine_slack = sample(rows)
        theirs_s, theirs_slack = sample(theirs)
        bound = np.sqrt(to(mine_s, theirs_s).min())  # the distance of a pair: the nearest is no farther
        rows = rows[np.sqrt(to(rows, theirs_s).min(axis=1)) <= bound + theirs_slack + 1e-9]
        theirs = theirs[np.sqrt(to(theirs, mine_s).min(axis=1)) <= bound + mine_slack + 1e-9]
        k = int(np.argmin(to(theirs, rows)))
        return int(theirs[k // len(rows)]), int(rows[k % len(rows)])


def _find(joined: list[int], k: int) -> int:
    k = int(k)
    while joined[k] != k:
        joined[k] = joined[joined[k]]
        k = joined[k]
    return k


def _union(joined: list[int], a: int, b: int) -> None:
    joined[_find(joined, a)] = _find(joined, b)


def _corners(outlines: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of closed outlines (one after the other, each ending at `ends`) where the step
    changes (what cv2.CHAIN_APPROX_SIMPLE keeps): the same polygons, without the points inside
    straight runs; outlines of under 3 points as they are."""
    starts = np.concatenate([[0], ends[:-1]])
    after = np.diff(outlines, axis=0, append=outlines[:1])  # the step to the next point
    after[ends - 1] = outlines[starts] - outlines[ends - 1]  # an outline's last point: back to its first
    before = np.roll(after, 1, axis=0)
    before[starts] = after[ends - 1]
    keep = (before != after).any(axis=1) | (len(outlines) < 3)
    if len(ends) == 1:
        return outlines[keep], np.array([keep.sum()])
    which = np.repeat(np.arange(len(ends)), ends - starts)
    keep |= (ends - starts)[which] < 3
    return outlines[keep], np.cumsum(np.bincount(which[keep], minlength=len(ends)))
