"""CVAT for video 1.1: one XML file whose tracks CVAT imports as tracks (Actions > Upload
annotations > "CVAT 1.1", on a task made from the source video).

`cvat_video.xml`:
    <annotations><version>1.1</version><meta><task> size, mode "interpolation", start/stop frame,
    labels (the phrases), original_size </task></meta>
    <track id label source="auto"> per object, holding on every frame it is visible a keyframe
    <polygon frame keyframe="1" outside="0" occluded="0" points="x,y;x,y;..." z_order="0"/>, and an
    outside="1" copy on the first frame after each run of visible frames (where CVAT's own export
    puts one), so the track does not carry on past them </track></annotations>
Frame = the video's frame index (a task made from the whole video). A run with a stride N put
its keyframes on the frames it did (offset, offset + N, ...) and the outside copy on the next of
those, never between: CVAT's import turns each frame into a task frame by (frame - start_frame) /
frame step and refuses one off that grid, so the file imports both into a task of the whole video
(CVAT interpolates the polygons between the frames done) and into one made with the meta's start
frame and frame step (`<frame_filter>step=N</frame_filter>`: the task's frames are the ones done
and the ones the stride would do). CVAT keeps mask shapes in
tracks only on their first frame (its importer turns a mask track into one shape), so tracks carry
polygons; a track holds one polygon a frame, so an object's parts are joined into one outline by
zero-width slits, as its holes are. CVAT's coordinates are pixel edges (pixel x covers x..x+1) and
it turns polygons into masks by area (datumaro, pycocotools), so the outline runs a quarter pixel
inside the mask's pixel edges (`cvat_outline`): every pixel's centre is inside, the slits cover
nothing, and the mask comes back as it was.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

from ..render import color_for, hex_color
from ..results import EncodedFrame
from .base import AtomicText, ExportContext, Spill, Writer, present
from ..rle import Crop
from .outlines import Box, Mask, joined_outline


def cvat_outline(mask: Mask, box: Box | None = None) -> np.ndarray:
    """(H, W) bool (or a `Crop` of one) -> one outline, (n, 2) float x, y in CVAT's pixel-edge coordinates, a quarter pixel
    inside the mask's edges: traced through the pixel centres of the mask doubled in size, whose
    centres lie at x + 0.25 and x + 0.75 of each original pixel x; parts and holes joined by slits.
    `box`: the mask's [x, y, width, height] where known (EncodedFrame.boxes), else found here."""
    if isinstance(mask, Crop):
        x, y, (h, w) = mask.x, mask.y, mask.pixels.shape
        pixels = np.ascontiguousarray(mask.pixels).view(np.uint8)
    else:
        pixels = np.asarray(mask, bool).view(np.uint8)
        x, y, w, h = cv2.boundingRect(pixels) if box is None else box
        pixels = pixels[y : y + h, x : x + w]
    if w == 0 or h == 0:
        return np.zeros((0, 2))
    doubled = cv2.resize(pixels, (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    return (joined_outline(doubled, (0, 0, 2 * w, 2 * h)) + 0.5) / 2 + (x, y)


class CvatWriter(Writer):
    files = ("cvat_video.xml",)
    described = ("`cvat_video.xml`: CVAT for video 1.1, one track per object, a polygon keyframe on every "
                  "frame it is visible (parts and holes joined into one outline), outside where it is not")
    opens_in = "CVAT (Upload annotations, CVAT 1.1, on a task made from the video)"

    def __init__(self, folder: str, context: ExportContext):
        self.path = os.path.join(folder, self.files[0])
        super().__init__(folder, context)
        self._spill = Spill(folder, "cvat")  # key: track id; records: [frame, label, points]

    def write(self, frame: EncodedFrame) -> None:
        r = frame
        for k in present(frame):
            self.context.categories.id_of(r.labels[k])
            outline = cvat_outline(frame.crops[k])
            if len(outline):
                points = ("%g,%g;" * len(outline) % tuple(outline.ravel().tolist()))[:-1]  # quarters: exact
                self._spill.add(int(r.obj_ids[k]), [r.frame_index, r.labels[k], points])

    def close(self) -> None:
        info, out, step = self.context.info, AtomicText(self.path), self.context.stride
        grid = range(self.context.offset, max(1, info.num_frames), step)  # the frames a task with this step has
        last, frame_filter = grid[-1], f"step={step}" if step > 1 else ""
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n'
                  f"    <task>\n      <name>{_text(self.context.video_name)}</name>\n"
                  f"      <size>{len(grid)}</size>\n      <mode>interpolation</mode>\n"
                  f"      <overlap>0</overlap>\n      <start_frame>{grid[0]}</start_frame>\n"
                  f"      <stop_frame>{last}</stop_frame>\n      <frame_filter>{frame_filter}</frame_filter>\n"
                  "      <labels>\n")
        for c in self.context.categories.as_list():
            out.write(f"        <label>\n          <name>{_text(c['name'])}</name>\n"
                      f"          <color>{hex_color(color_for(c['id']))}</color>\n          <type>polygon</type>\n"
                      f"          <attributes></attributes>\n        </label>\n")
        out.write(f"      </labels>\n      <original_size>\n        <width>{info.width}</width>\n"
                  f"        <height>{info.height}</height>\n      </original_size>\n    </task>\n  </meta>\n")
        for track_id in self._spill.keys():  # CVAT renumbers tracks on import; the id is ours
            shapes = sorted(self._spill.get(track_id))
            out.write(f"  <track id=\"{track_id}\" label={quoteattr(shapes[0][1])} source=\"auto\">\n")
            for k, (frame, _, points) in enumerate(shapes):
                out.write(_polygon(frame, points, outside=False))
                after = frame + step  # the next frame done (or that would have been)
                if after <= last and (k + 1 == len(shapes) or shapes[k + 1][0] != after):
                    out.write(_polygon(after, points, outside=True))  # hidden from here (or the run ended)
            out.write("  </track>\n")
        out.write("</annotations>\n")
        out.commit()
        self._spill.close()


def _polygon(frame: int, points: str, outside: bool) -> str:
    return (f'    <polygon frame="{frame}" keyframe="1" outside="{int(outside)}" occluded="0" '
            f'points="{points}" z_order="0">\n    </polygon>\n')


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
