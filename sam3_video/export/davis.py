"""DAVIS-style masks: one indexed (palette) PNG per processed frame, value = object id.

`davis/00012.png`, 0 = background. Palette entry v is the overlay colour of object v, so the
PNGs look like the overlay video. One object per pixel: where masks overlap the higher score
wins. An 8-bit PNG holds ids 1-255; objects with larger ids are left out of these files (and
listed in the manifest); every other format keeps them. (Where such an object covers a smaller
id's pixels, those pixels show background.)
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from ..render import color_for
from ..results import EncodedFrame
from .base import ExportContext

MAX_ID = 255


def palette() -> list[int]:
    """768 ints: black for 0, then the overlay colour of each id."""
    colours = [(0, 0, 0)] + [color_for(i) for i in range(1, 256)]
    return [c for rgb in colours for c in rgb]


class DavisWriter:
    files = ("davis/",)

    def __init__(self, folder: str, context: ExportContext):
        self.dir = os.path.join(folder, "davis")
        os.makedirs(self.dir, exist_ok=True)
        self.context = context
        self.left_out: set[int] = set()
        self._palette = palette()

    def write(self, frame: EncodedFrame) -> None:
        r = frame.result
        ids = frame.id_image
        too_big = r.obj_ids > MAX_ID
        if too_big.any():
            self.left_out.update(r.obj_ids[too_big].tolist())
            ids = np.where(ids > MAX_ID, 0, ids)
        image = Image.fromarray(ids.astype(np.uint8))
        image.putpalette(self._palette)  # an 8-bit grey image becomes indexed ("P") with this palette
        name = self.context.frame_name(r.frame_index)
        tmp = os.path.join(self.dir, f".{name}.png.part")
        image.save(tmp, format="PNG", compress_level=1)  # level 1: about as small here, several times faster
        os.replace(tmp, os.path.join(self.dir, f"{name}.png"))

    def close(self) -> None:
        pass
