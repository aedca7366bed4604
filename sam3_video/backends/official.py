"""SAM3 through Meta's `sam3` package (`build_sam3_video_predictor`); CUDA only.

What this adapter works around (sam3 0.1.4, read from its source):
- one text prompt per session: each `add_prompt(text=...)` resets the session, so several
  phrases run one pass each; ids are made unique as `local_id * n_phrases + phrase_index + 1`, and the
  results of earlier passes wait on disk (not in memory) until the last pass merges them;
- an mp4 given as `resource_path` is decoded with OpenCV without rotation and reaches the model
  unscaled (facebookresearch/sam3#493); a folder of frames is scaled correctly, so the session is
  given our decoded, rotated frames as numbered JPEG files in a temporary folder;
- building the model switches on bf16 autocast in the building thread only, so every call here
  runs under an explicit autocast (the app calls from worker threads);
- it holds the whole video on the GPU (about 6 MB a frame as float16 from a frame folder) and
  buffers up to `hotstart_delay` frames inside its own iterator: a stop loses those.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from typing import Callable, Iterator, Sequence

import numpy as np

from ..config import DEFAULTS
from ..errors import BackendUnavailableError
from ..types import FrameResult, VideoInfo
from ..video import VideoReader
from . import load_errors, prepare_hub_model
from .base import apply_threshold

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "sam3.pt"
JPEG_QUALITY = 95


def frame_result_from_official(
    frame_index: int,
    outputs: dict,
    phrase: str,
    height: int,
    width: int,
    phrase_index: int = 0,
    n_phrases: int = 1,
) -> FrameResult:
    """Convert one frame of the predictor's output into a `FrameResult`.

    outputs: `out_obj_ids` (n,) int, `out_probs` (n,) float, `out_boxes_xywh` (n, 4) normalised
    to 0-1 by the frame's width and height, `out_binary_masks` (n, H, W) bool at the source size.
    """
    ids = np.asarray(outputs["out_obj_ids"], dtype=np.int64).reshape(-1)
    n = len(ids)
    masks = np.asarray(outputs["out_binary_masks"], dtype=bool).reshape(n, *np.shape(outputs["out_binary_masks"])[-2:])
    if n and masks.shape[1:] != (height, width):
        import cv2

        masks = np.stack(
            [cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool) for m in masks]
        )
    if not n:
        masks = np.zeros((0, height, width), bool)
    xywh = np.asarray(outputs["out_boxes_xywh"], dtype=np.float64).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float64)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) * scale
    return FrameResult(
        frame_index=int(frame_index),
        obj_ids=ids * n_phrases + phrase_index + 1,  # unique across phrases, from 1
        labels=[phrase] * n,
        scores=np.asarray(outputs["out_probs"], dtype=np.float32).reshape(-1),
        boxes_xyxy=xyxy.astype(np.float32),
        masks=masks,
    )


def _checkpoint_path(model_id: str) -> str | None:
    """Local file, folder holding sam3.pt, or hub repo id (downloaded with HF_TOKEN)."""
    if os.path.isfile(model_id):
        return model_id
    if os.path.isdir(model_id):
        path = os.path.join(model_id, CHECKPOINT_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no file named {CHECKPOINT_NAME} in {model_id}")
        return path
    from huggingface_hub import hf_hub_download

    offline = prepare_hub_model(model_id, (CHECKPOINT_NAME,))
    return hf_hub_download(model_id, CHECKPOINT_NAME, local_files_only=offline)


class OfficialBackend:
    """Meta's video predictor, loaded once and shared. It runs under bfloat16 autocast whatever
    `dtype` says (the predictor is built that way); `random_weights` builds it without a checkpoint
    (the GPU benches)."""

    name = "sam3"

    def __init__(self, model_id: str, device: str, dtype: str = "bfloat16", random_weights: bool = False):
        if not str(device).startswith("cuda"):
            raise BackendUnavailableError(
                "Meta's sam3 package runs only on a CUDA GPU and none is in use here. Use --backend "
                "transformers (runs on the CPU too) or run on a GPU machine."
            )
        try:
            import sam3.model_builder as builder
            import torch
        except ImportError as err:
            raise BackendUnavailableError(
                f"Meta's sam3 package is not installed ({err}). pip install -r requirements.txt, or use --backend transformers."
            ) from None
        from ..testmodel import clip_bpe_path

        self.model_id = "random-init" if random_weights else model_id
        self.device = device
        self.lock = threading.RLock()
        with load_errors(model_id):
            checkpoint = None if random_weights else _checkpoint_path(model_id)
        download = builder.download_ckpt_from_hf
        if random_weights:  # the builder downloads facebook/sam3 whenever no checkpoint is given
            builder.download_ckpt_from_hf = lambda *a, **k: None
        try:
            with torch.cuda.device(torch.device(device)), load_errors(model_id):
                self.predictor = builder.build_sam3_video_predictor(checkpoint_path=checkpoint, bpe_path=clip_bpe_path())
        finally:
            builder.download_ckpt_from_hf = download
        self.model = self.predictor.model
        if DEFAULTS.compile != "off":  # the predictor builds its model without sam3's compile switch
            log.warning("SAM3_COMPILE=%s applies to the transformers backend only; sam3 runs uncompiled.", DEFAULTS.compile)
        self.default_thresholds = (float(self.model.score_threshold_detection), float(self.model.new_det_thresh))
        self.postprocessing = "sam3 perflib"  # Meta's own mask NMS and hole filling

    def autocast(self):
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16)

    def set_threshold(self, threshold: float | None) -> None:
        apply_threshold(self.model, self.default_thresholds, threshold)

    def request(self, **req) -> dict:
        with self.lock, self.autocast():
            return self.predictor.handle_request(req)

    def stream(self, **req) -> Iterator[dict]:
        it = self.predictor.handle_stream_request(req)
        while True:
            with self.lock, self.autocast():
                item = next(it, None)
            if item is None:
                return
            yield item

    def open(self, path: str, info: VideoInfo) -> "OfficialSession":
        return OfficialSession(self, path, info)


class _Spill:
    """Results of earlier phrase passes, one compressed file per frame, read back once."""

    def __init__(self, root: str):
        self.dir = tempfile.mkdtemp(prefix="spill-", dir=root)

    def _path(self, frame_index: int, phrase_index: int) -> str:
        return os.path.join(self.dir, f"{frame_index}-{phrase_index}.npz")

    def put(self, r: FrameResult, phrase_index: int) -> None:
        np.savez_compressed(self._path(r.frame_index, phrase_index), ids=r.obj_ids, scores=r.scores,
                            boxes=r.boxes_xyxy, masks=np.packbits(r.masks, axis=-1), labels=np.array(r.labels, dtype=str))

    def take(self, frame_index: int, phrase_index: int, height: int, width: int) -> FrameResult | None:
        path = self._path(frame_index, phrase_index)
        if not os.path.exists(path):
            return None
        with np.load(path) as z:
            masks = np.unpackbits(z["masks"], axis=-1, count=width).astype(bool).reshape(-1, height, width)
            r = FrameResult(frame_index, z["ids"], list(z["labels"]), z["scores"], z["boxes"], masks)
        os.remove(path)
        return r


EDITS_UNSUPPORTED = (
    "Meta's SAM3 predictor accepts clicks only on frames it has already propagated, so it cannot fix the "
    "detection preview; use the transformers backend for refining, adding or example boxes."
)


class OfficialSession:
    edits: frozenset[str] = frozenset()  # see EDITS_UNSUPPORTED
    reader = None  # the frames go to the predictor as JPEG files: no decoder to share

    def __init__(self, backend: OfficialBackend, path: str, info: VideoInfo):
        import cv2

        self.backend = backend
        self.info = info
        self.workdir = tempfile.mkdtemp(prefix="sam3v-official-")
        frames = os.path.join(self.workdir, "frames")
        os.makedirs(frames)
        with VideoReader(path, info) as reader:  # rotated, correctly scaled frames for the predictor
            for i, rgb in enumerate(reader):
                cv2.imwrite(os.path.join(frames, f"{i}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        self.session_id = backend.request(type="start_session", resource_path=frames)["session_id"]
        self.phrases: tuple[str, ...] = ()
        self.threshold: float | None = None
        self.detect_frame: int | None = None
        self._preview: FrameResult | None = None
        self._fresh = False  # the predictor holds the single phrase's detect state, unpropagated
        self._removed: set[int] = set()

    def _prompt(self, phrase_index: int) -> FrameResult:
        b = self.backend
        with b.lock:
            b.set_threshold(self.threshold)
            out = b.request(type="add_prompt", session_id=self.session_id, frame_index=self.detect_frame,
                            text=self.phrases[phrase_index])
        n = len(self.phrases)
        for gid in self._removed:  # re-detection on the same frame gives the same local ids
            if (gid - 1) % n == phrase_index:
                try:
                    b.request(type="remove_object", session_id=self.session_id, obj_id=(gid - 1) // n,
                              is_user_action=False)
                except (AssertionError, KeyError, RuntimeError):
                    pass
        return self._convert(out["frame_index"], out["outputs"], phrase_index)

    def _convert(self, frame_index: int, outputs: dict, phrase_index: int) -> FrameResult:
        r = frame_result_from_official(frame_index, outputs, self.phrases[phrase_index], self.info.height,
                                       self.info.width, phrase_index, len(self.phrases))
        return r.without(self._removed)

    def detect(self, frame_index: int, phrases: Sequence[str], threshold: float | None = None) -> FrameResult:
        self.phrases, self.threshold, self.detect_frame = tuple(phrases), threshold, frame_index
        self._removed = set()
        self._preview = FrameResult.merge([self._prompt(p) for p in range(len(self.phrases))])
        self._fresh = len(self.phrases) == 1
        return self._preview

    def _pass(self, phrase_index: int, indices: list[int], reverse: bool) -> Iterator[FrameResult]:
        if not self._fresh:
            self._prompt(phrase_index)
        self._fresh = False
        first, n = indices[0], len(indices)
        if reverse:
            start, count = first + 1, n  # the predictor's backward pass starts after its start frame
            if first == self.detect_frame and first + 1 >= self.info.num_frames:
                assert self._preview is not None  # detect made it
                yield self._preview.select([label == self.phrases[phrase_index] for label in self._preview.labels])
                start, count = first, n - 1
        else:
            start, count = first, n - 1  # forward yields start .. start+count
        if count <= 0 and reverse:
            return
        stream = self.backend.stream(type="propagate_in_video", session_id=self.session_id,
                                     propagation_direction="backward" if reverse else "forward",
                                     start_frame_index=start, max_frame_num_to_track=count)
        for item in stream:
            yield self._convert(item["frame_index"], item["outputs"], phrase_index)

    def propagate(self, frame_indices: Sequence[int], reverse: bool,
                  should_stop: Callable[[], bool] = lambda: False) -> Iterator[FrameResult]:
        indices = list(frame_indices)
        if not indices:
            return
        wanted = set(indices)
        last = len(self.phrases) - 1
        spill = _Spill(self.workdir) if last > 0 else None
        try:
            for p in range(last):  # earlier phrases: run the pass, park results on disk
                for r in self._pass(p, indices, reverse):
                    if should_stop():
                        break
                    assert spill is not None  # made when there are earlier phrases
                    spill.put(r, p)
                if should_stop():  # a frame is whole only after every phrase's pass
                    return
            for r in self._pass(last, indices, reverse):
                if r.frame_index not in wanted:
                    continue
                parts = [spill.take(r.frame_index, p, *self.info.size) for p in range(last)] if spill else []
                yield FrameResult.merge([x for x in parts if x is not None] + [r])
                if should_stop():
                    return
        finally:
            if spill:
                shutil.rmtree(spill.dir, ignore_errors=True)

    def remove_object(self, obj_id: int) -> None:
        n = max(1, len(self.phrases))
        self._removed.add(int(obj_id))
        local, phrase_index = divmod(int(obj_id) - 1, n)
        if self.phrases and phrase_index == n - 1 or n == 1:  # the last phrase's pass is the live one
            try:
                # not a "user action": the predictor would then only fetch cached frames on the next
                # propagation (sam3 0.1.4 parse_action_history_for_propagation), and none exist yet
                self.backend.request(type="remove_object", session_id=self.session_id, obj_id=local,
                                     is_user_action=False)
            except (AssertionError, KeyError, RuntimeError):
                pass  # not tracked (any more): filtering by id is enough

    def refine(self, frame_index: int, obj_id: int, points, labels) -> FrameResult:
        raise BackendUnavailableError(EDITS_UNSUPPORTED)

    def add_object(self, frame_index: int, label: str, box=None, points=None, labels=None) -> tuple[int, FrameResult]:
        raise BackendUnavailableError(EDITS_UNSUPPORTED)

    def exemplar(self, frame_index: int, box, positive: bool = True) -> FrameResult:
        raise BackendUnavailableError(EDITS_UNSUPPORTED)

    def resume(self, frame_index, phrases, threshold, seed, first_seen, last_id) -> FrameResult:
        raise BackendUnavailableError("Meta's predictor cannot start from an earlier run's masks; use the transformers "
                                      "backend to continue a run, or start a new run.")

    def close(self) -> None:
        try:
            self.backend.request(type="close_session", session_id=self.session_id)
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            import torch

            torch.cuda.empty_cache()
