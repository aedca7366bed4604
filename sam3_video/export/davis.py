"""DAVIS-style masks: one indexed (palette) PNG per processed frame, value = object index.

`davis/00012.png`: 0 = background, 1..N = the run's objects numbered in order of first appearance
(by frame; objects first seen on the same frame by track id; an object that shows no pixel in any
PNG, hidden under higher scores, takes no index), as the DAVIS 2017 evaluator reads
them: it counts objects by the largest index, reads 255 as void and takes the first frame's
objects as the ones to track. `manifest.json` holds `davis.index_to_track_id`. One object per
pixel: where masks overlap the higher score wins. Palette entry v is the overlay colour of the
object with index v, so the PNGs look like the overlay video.

An 8-bit PNG holds indices 1..254 (255 is void): past the 254th object to appear (in the order
frames were processed) objects are left out of these files and listed in the manifest
(`davis.left_out_track_ids`); every other format keeps them. Streaming: each PNG is written as
its frame arrives, numbered in arrival order; a run that went backward (arrival order is not frame
order) has the files whose numbers change rewritten once at `close()`.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..render import color_for
from ..results import EncodedFrame
from .base import ExportContext, Writer

MAX_OBJECTS = 254  # indices 1..254; 255 is DAVIS's void
LIMIT_NOTE = (f"indices 1..{MAX_OBJECTS} in order of first appearance (255 is void in DAVIS); objects past the "
              f"{MAX_OBJECTS}th to appear are left out of the PNGs and kept by every other format")


class DavisWriter(Writer):
    files = ("davis/",)
    described = ("`davis/00012.png`: indexed PNG, 0 background, objects 1..N in order of first appearance "
                  "(never 255, DAVIS's void); `manifest.json` maps index -> id (`davis.index_to_track_id`)")
    opens_in = "DAVIS 2017 evaluator, VOS tools"

    def __init__(self, folder: str, context: ExportContext):
        self.dir = os.path.join(folder, "davis")
        os.makedirs(self.dir, exist_ok=True)
        super().__init__(folder, context)
        self.left_out: set[int] = set()  # track ids
        self._index: dict[int, int] = {}  # track id -> index in the files written so far
        self._present: dict[int, list[int]] = {}  # frame -> track ids in its PNG

    def write(self, frame: EncodedFrame) -> None:
        # an object hidden under higher scores everywhere is not in the PNG
        shown = sorted(int(t) for t, area in zip(frame.obj_ids, frame.kept_areas) if area)
        for track in shown:
            if track not in self._index and track not in self.left_out:
                if len(self._index) < MAX_OBJECTS:
                    self._index[track] = len(self._index) + 1
                else:
                    self.left_out.add(track)
        if any(t not in self._index for t in shown):
            tracks = self._indexed_only(frame)
            shown = _shown(tracks)
            indices = _indices(tracks, self._index)
        else:  # each object's own pixels, inside its rectangle
            indices = np.zeros(frame.size, np.uint8)
            for track, kept, area in zip(frame.obj_ids.tolist(), frame.kept, frame.kept_areas):
                if area:
                    kept.of(indices)[kept.pixels] = self._index[track]
        self._present[frame.frame_index] = shown
        self._save(frame.frame_index, indices, self._index)

    def _indexed_only(self, frame: EncodedFrame) -> np.ndarray:
        """(H, W) track id per pixel of the objects with an index (higher score on top), 0 elsewhere."""
        out = np.zeros(frame.size, np.uint32)
        for k in np.argsort(frame.scores, kind="stable"):
            if int(frame.obj_ids[k]) in self._index:
                crop = frame.crops[k]
                crop.of(out)[crop.pixels] = frame.obj_ids[k]
        return out

    def _save(self, frame_index: int, indices: np.ndarray, index: dict[int, int]) -> None:
        """Write `indices` ((H, W) uint8 object indices by `index`, track id -> index), atomically."""
        image = Image.fromarray(indices)
        image.putpalette(_palette(index))  # an 8-bit grey image becomes indexed ("P") with this palette
        name = self.context.frame_name(frame_index)
        tmp = os.path.join(self.dir, f".{name}.png.part")
        image.save(tmp, format="PNG", compress_level=1)  # level 1: about as small here, several times faster
        os.replace(tmp, os.path.join(self.dir, f"{name}.png"))

    def close(self) -> None:
        """Renumber by first appearance in frame order where arrival order differed."""
        final: dict[int, int] = {}
        for f in sorted(self._present):
            for track in self._present[f]:
                final.setdefault(track, len(final) + 1)
        changed = {t for t, v in final.items() if self._index[t] != v}
        if changed:
            back = np.zeros(256, np.uint32)  # provisional index -> track id
            for t, v in self._index.items():
                back[v] = t
            for f, tracks in self._present.items():
                if changed.intersection(tracks):
                    path = os.path.join(self.dir, f"{self.context.frame_name(f)}.png")
                    with Image.open(path) as old:
                        self._save(f, _indices(back[np.asarray(old)], final), final)
        self._index = final

    def manifest(self) -> dict:
        return {"index_to_track_id": {str(v): t for t, v in sorted(self._index.items(), key=lambda tv: tv[1])},
                "left_out_track_ids": sorted(self.left_out), "max_objects": MAX_OBJECTS, "limit": LIMIT_NOTE}


def _indices(tracks: np.ndarray, index: dict[int, int]) -> np.ndarray:
    """(H, W) track ids -> (H, W) uint8 indices by `index` (track id -> index; 0 for the rest)."""
    lut = np.zeros(int(tracks.max(initial=0)) + 1, np.uint8)
    for track, v in index.items():
        if track < len(lut):
            lut[track] = v
    return lut[tracks]


def _shown(tracks: np.ndarray) -> list[int]:
    """The track ids on an (H, W) track-id image, ascending (0, the background, left out)."""
    ids = np.flatnonzero(np.bincount(tracks.ravel()))
    return ids[ids > 0].tolist()


def _palette(index: dict[int, int]) -> list[int]:
    """768 ints: black for 0, the overlay colour of its object for each index, grey for the rest."""
    colours = [(0, 0, 0)] + [(128, 128, 128)] * 255
    for track, v in index.items():
        colours[v] = color_for(track)
    return [c for rgb in colours for c in rgb]
