"""SAM3 through transformers' `Sam3VideoModel` / `Sam3VideoProcessor` (CPU and CUDA).

Frames are not handed to transformers up front (that would hold the whole video at 1008x1008
float on the device, about 12 MB a frame): the inference session gets a lazy frame store that
decodes and preprocesses a frame when the model asks for it, with the same video processor that
`init_video_session(video=...)` would use. The session is otherwise a normal non-streaming one,
so SAM3's warm-up heuristics ("hotstart") and backward propagation work as in transformers.

The per-frame loop is ours rather than `propagate_in_video_iterator`: the same model calls in the
same order, the same hotstart hold-back, but frames held back are released when the user stops
instead of being lost, and the detect step's frame is not run twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from ..config import DEFAULTS
from ..errors import BackendUnavailableError, BadRequestError
from ..types import FrameResult, VideoInfo
from ..video import VideoReader
from . import load_errors, prepare_hub_model
from . import batched_tracker, frame_reads, handoff, lean_vit, postprocess
from . import transformers_edits as user_edits
from .base import apply_threshold

#: SAM3_COMPILE values: off, or the torch.compile mode used for the detector's image encoder.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")

log = logging.getLogger(__name__)
USER_PROMPT_ID = 1000  # prompt ids of user labels that are not phrases: never run by the detector


class _LazyFrames(Mapping):
    """`processed_frames` for a transformers session: index -> preprocessed (3, S, S) tensor.

    Frames are decoded and preprocessed when the model asks for them, or, once `plan` has said
    which frames come next, by a thread of their own up to `ahead` frames before the model asks
    (decoding and resizing run while the model works; at most `ahead` tensors wait). Without a
    plan, or with `ahead` 0, everything happens in the caller's thread, as before.
    """

    def __init__(self, reader: VideoReader, video_processor, device, dtype, keep: int = 4, ahead: int = 0):
        self._reader = reader
        self._processor = video_processor
        self._device = device
        self._dtype = dtype
        self._keep = keep
        self._ahead = ahead
        self._cache: OrderedDict = OrderedDict()
        self._cond = threading.Condition()
        self._plan: dict[int, int] = {}  # frame index -> position in the planned order
        self._order: list[int] = []
        self._next = 0  # position the worker prepares next
        self._wanted = -1  # position of the latest frame the model asked for
        self._ready: dict[int, object] = {}
        self._busy: int | None = None  # frame the worker is preparing
        self._version = 0  # bumped by every plan: work for an older plan is dropped
        self._worker: threading.Thread | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._reader)

    def __iter__(self):
        return iter(range(len(self)))

    def __contains__(self, index) -> bool:
        return isinstance(index, int) and 0 <= index < len(self)

    def _prepare(self, index: int):
        rgb = self._reader[index]
        pixels = self._processor(videos=rgb[None], device=self._device, return_tensors="pt").pixel_values_videos[0][0]
        return pixels.to(self._device, dtype=self._dtype)

    def plan(self, order: Sequence[int]) -> None:
        """The frames the model will ask for, in this order: prepare them ahead from now on."""
        if self._ahead <= 0:
            return
        with self._cond:
            self._order, self._plan = list(order), {i: p for p, i in enumerate(order)}
            self._next, self._wanted, self._version = 0, -1, self._version + 1
            self._ready.clear()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="sam3-prefetch", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (self._next < len(self._order) and self._next <= self._wanted + self._ahead):
                    self._cond.wait()
                if self._closed:
                    return
                index, version = self._order[self._next], self._version
                self._next += 1
                if index in self._ready or index in self._cache:
                    continue
                self._busy = index
            try:
                pixels = self._prepare(index)
            except Exception:  # the model's own request prepares it again and raises in its thread
                pixels = None
            with self._cond:
                self._busy = None
                if pixels is not None and version == self._version and not self._closed:
                    self._ready[index] = pixels
                self._cond.notify_all()

    def __getitem__(self, index: int):
        with self._cond:
            if index in self._plan:  # the model reached this frame: the worker may go further
                self._wanted = max(self._wanted, self._plan[index])
                self._cond.notify_all()
            while self._busy == index:
                self._cond.wait()
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
            pixels = self._ready.pop(index, None)
        if pixels is None:
            pixels = self._prepare(index)
        with self._cond:
            self._cache[index] = pixels
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
        return pixels


def _close_frames(state) -> None:
    if isinstance(state.processed_frames, _LazyFrames):
        state.processed_frames.close()


def check_compile_mode(mode: str) -> str:
    """`mode` if it is one of COMPILE_MODES, else BackendUnavailableError with the choices."""
    if mode not in COMPILE_MODES:
        raise BackendUnavailableError(f"Unknown SAM3_COMPILE '{mode}'. Use off, default, reduce-overhead or max-autotune.")
    return mode


def compile_backbone(model, mode: str, backend="inductor") -> None:
    """Compile the detector's image encoder of `model` in place with torch.compile (`mode` one of
    COMPILE_MODES; "off" does nothing). It holds half the model's weights and always sees one frame
    of the model's fixed size, so it compiles once, as a single graph (`fullgraph`: a graph break
    is an error, not a silent slowdown). Compiling happens on the first frame, not here.
    `backend` is torch.compile's; tests give another one to check the capture without a C compiler.

    Raises:
        BackendUnavailableError: an unknown mode.
    """
    if check_compile_mode(mode) == "off":
        return
    options = {"mode": mode} if backend == "inductor" else {}
    model.detector_model.vision_encoder.compile(backend=backend, fullgraph=True, **options)


def check_max_objects(value: int) -> int:
    """SAM3_MAX_OBJECTS as given (0: no cap), or BackendUnavailableError for a negative one."""
    if int(value) < 0:
        raise BackendUnavailableError(f"SAM3_MAX_OBJECTS is {value}; give the most objects to track at once, or 0 for no cap.")
    return int(value)


def cap_sentence(cap: int) -> str:
    """What to tell the user when the object cap binds."""
    return (f"This app tracks at most {cap} object{'s' if cap != 1 else ''} at once, and that many are tracked now: objects found "
            "after that are left out. Use a narrower phrase, remove objects you do not need, or run it "
            "on your own GPU (SAM3_MAX_OBJECTS).")


class TransformersBackend:
    """A loaded `Sam3VideoModel` + processor, shared by every session of the process."""

    name = "transformers"

    def __init__(self, model_id: str, device: str, dtype: str, compile: str | None = None):
        import torch
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        self.compile_mode = check_compile_mode(compile or DEFAULTS.compile)  # before the long load
        self.model_id = model_id
        self.device = device
        self.torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        auto = 2 if str(device).startswith("cuda") else 0
        self.prefetch_frames = auto if DEFAULTS.prefetch_frames == "auto" else int(DEFAULTS.prefetch_frames)
        offline = prepare_hub_model(model_id, ("model.safetensors", "model.safetensors.index.json"))
        with load_errors(model_id):
            self.processor = Sam3VideoProcessor.from_pretrained(model_id, local_files_only=offline)
            model = Sam3VideoModel.from_pretrained(model_id, dtype=self.torch_dtype, local_files_only=offline)
        self.model = model.to(device).eval()
        lean_vit.install(self.model.detector_model.vision_encoder.backbone, DEFAULTS.lean_encoder)
        compile_backbone(self.model, self.compile_mode)
        batched_tracker.install(self.model.tracker_model, DEFAULTS.batch_tracker)  # one pass for all objects
        batched_tracker.fixed_decoder_coords(self.model)  # no size read back from the device per layer
        self.postprocessing = postprocess.install(DEFAULTS.device_cleanup)  # mask NMS and hole filling
        frame_reads.install(self.model, DEFAULTS.few_reads)  # the frame's plan from two device reads
        self.max_objects = check_max_objects(DEFAULTS.max_objects)
        if self.max_objects:  # transformers keeps the best-scoring new detections up to this
            self.model.max_num_objects = min(int(self.model.max_num_objects), self.max_objects)
        self.lock = threading.RLock()  # one model, many sessions: calls and thresholds go one at a time
        self.default_thresholds = (float(self.model.score_threshold_detection), float(self.model.new_det_thresh))
        tracker = self.model.config.tracker_config
        # frames away from the tracked one whose stored outputs the tracker reads, with a margin
        self.memory_reach = 2 * max(int(tracker.num_maskmem), int(tracker.max_object_pointers_in_encoder))

    def open(self, path: str, info: VideoInfo) -> "TransformersSession":
        return TransformersSession(self, path, info)

    def set_threshold(self, threshold: float | None) -> None:
        apply_threshold(self.model, self.default_thresholds, threshold)


class TransformersSession:
    """One video in a transformers inference session.

    Edits (`refine`, `add_object`, `exemplar`) are accepted on the detect frame between `detect`
    and `propagate`. They are deterministic: the same calls on a fresh session give the same ids
    and masks, so a caller may rebuild a session by replaying them.
    """

    edits = frozenset({"refine", "add_object", "exemplar", "continue"})
    trim_metadata = True  # see _forget_old_metadata (bench/frame_time.py measures both ways)

    def __init__(self, backend: TransformersBackend, path: str, info: VideoInfo):
        self.backend = backend
        self.info = info
        self.reader = VideoReader(path, info, cache_bytes=DEFAULTS.frame_cache_mb * 1024 * 1024)
        self._threshold: float | None = None
        self._phrases: tuple[str, ...] = ()
        self._removed: set[int] = set()
        self._pending: list = []  # raw outputs held back by the hotstart delay, oldest first
        self._pruned: set[int] = set()  # removed objects whose bookkeeping is gone (_forget_old_metadata)
        self._processed_unyielded: int | None = None  # frame run by detect, not yet yielded
        self.notice: str | None = None  # a sentence for the user, set when the object cap binds
        self._anchor: int | None = None  # the detect frame: a backward pass reads memory near it
        self.state: Any = None  # transformers' Sam3VideoInferenceSession, once opened
        self._reset_edits()

    def _reset_edits(self) -> None:
        self._protected: set[int] = set()  # raw ids of clicked or added objects: kept through warm-up
        self._user_prompts: dict[int, str] = {}  # prompt id -> label of added objects that is no phrase
        self._base: dict[int, tuple] = {}  # raw id -> (box, logits (1, 1, h, w)) the clicks correct
        self._exemplars: list[tuple[tuple[float, ...], bool]] = []  # (box x0, y0, x1, y1; positive)

    # -- state -----------------------------------------------------------------------------
    def _new_state(self):
        b = self.backend
        state = b.processor.init_video_session(
            video=None, inference_device=b.device, video_storage_device=b.device, dtype=b.torch_dtype
        )
        if self.state is not None:  # a new detect: the old frames' thread stops
            _close_frames(self.state)
        state.processed_frames = _LazyFrames(self.reader, b.processor.video_processor, b.device, b.torch_dtype,
                                             ahead=b.prefetch_frames)
        state.video_height, state.video_width = self.info.height, self.info.width
        # transformers creates it only when the detector adds objects: a step after objects were
        # added by box or click on a frame where nothing was detected would fail without it
        state.obj_with_new_inputs = []
        return state

    def _step(self, frame_index: int, reverse: bool):
        """Run the model on one frame and hold its output back as SAM3 does."""
        model = self.backend.model
        with self.backend.lock, self._phrases_only():
            self.backend.set_threshold(self._threshold)
            out = model(inference_session=self.state, frame_idx=frame_index, reverse=reverse)
            user_edits.protect(self.state, self._protected, model.max_trk_keep_alive)
        if model.hotstart_delay > 0:
            self.state.hotstart_removed_obj_ids.update(out.removed_obj_ids)
        cap = self.backend.max_objects
        if cap and self.notice is None and len(self.state.obj_ids) >= cap:
            self.notice = cap_sentence(cap)
            log.warning(self.notice)
        self._pending.append(out)
        self._forget_old_memory(frame_index)
        if self.trim_metadata:
            self._forget_old_metadata(frame_index, reverse)

    @contextmanager
    def _phrases_only(self):
        """Hide the labels of added objects that are no phrase from the detector (no text to run)."""
        hidden = {pid: self.state.prompts.pop(pid) for pid in self._user_prompts}
        try:
            yield
        finally:
            self.state.prompts.update(hidden)

    def _forget_old_memory(self, frame_index: int) -> None:
        """Drop per-frame tracker outputs the tracker can no longer read.

        The tracker reads a non-conditioning frame's output only from the `num_maskmem` frames
        and the `max_object_pointers_in_encoder` frames next to the frame it tracks; transformers
        keeps every frame's output (memory features included) for the whole video, so memory grew
        with video length. Outputs near the current frame and near the detect frame (where a
        backward pass starts) are kept, twice the reach, so the results are unchanged.
        """
        reach = self.backend.memory_reach
        anchor = self._anchor
        for per_obj in self.state.output_dict_per_obj.values():
            frames = per_obj["non_cond_frame_outputs"]
            if len(frames) <= 2 * reach:
                continue
            for f in [f for f in frames if abs(f - frame_index) > reach and (anchor is None or abs(f - anchor) > reach)]:
                del frames[f]

    def _forget_old_metadata(self, frame_index: int, reverse: bool) -> None:
        """Keep the tracker's bookkeeping as long as what it can still read, not the whole video.

        transformers deep-copies this bookkeeping on every frame, and parts of it grow with the
        frames done: every frame's tracker scores and suppressed ids (only the current frame's
        are read again); per object, the frames it went unmatched or overlapped another (read as
        a count, only while the object is within its hot-start window); and the scores, keep-alive
        counts and overlap lists of every object ever removed (hundreds over a long video). So a
        long video cost time per frame growing with the frame index. Here the past frames' entries
        go, an object's lists are cut to the threshold they are compared with once no frame still
        to come (this direction, then the backward pass a "both" run makes from the anchor) can
        count them within its hot-start window, and removed objects' entries go: the same
        decisions, in bounded time.
        """
        state, model = self.state, self.backend.model
        for per_frame in (state.obj_id_to_tracker_score_frame_wise, state.suppressed_obj_ids):
            for f in [f for f in per_frame if f != frame_index]:
                del per_frame[f]
        delay, anchor = model.hotstart_delay, self._anchor

        def settled(obj_id) -> bool:  # no hot-start decision about it can come any more
            first = state.obj_first_frame_idx.get(obj_id)
            if first is None:
                return False
            if reverse:  # frames only go down from here
                return first >= frame_index + delay
            # forward, and then maybe backward from the anchor (frames anchor - 1 down to 0)
            return first <= frame_index - delay and (not anchor or first >= anchor - 1 + delay)

        for lists, cap, key in ((state.unmatched_frame_inds, model.hotstart_unmatch_thresh, lambda k: k),
                                (state.overlap_pair_to_frame_inds, model.hotstart_dup_thresh, lambda k: k[1])):
            for k, frames in lists.items():
                if len(frames) > cap and settled(key(k)):
                    del frames[:-cap]
        # objects removed for good (SAM3 never reuses an id) and no longer tracked: the hot-start
        # loops skip them and only tracked objects' keep-alive counts are read; the latest output
        # shares the score dict, so its own objects keep their scores until the next frame
        gone = state.removed_obj_ids.difference(state.obj_ids).difference(self._pruned)
        if gone:
            latest = self._pending[-1].obj_id_to_mask if self._pending else {}
            for obj_id in gone:
                state.unmatched_frame_inds.pop(obj_id, None)
                state.trk_keep_alive.pop(obj_id, None)
                if obj_id not in latest:
                    state.obj_id_to_score.pop(obj_id, None)
                    self._pruned.add(obj_id)
            for pair in [p for p in state.overlap_pair_to_frame_inds if p[1] in gone]:
                del state.overlap_pair_to_frame_inds[pair]

    def _release(self, end: bool) -> list[FrameResult]:
        """Outputs whose hold-back is over (all of them at the end of a run)."""
        delay = self.backend.model.hotstart_delay
        if end or delay <= 0:
            ready, self._pending = self._pending, []
        elif len(self._pending) >= delay:
            ready, self._pending = self._pending[:1], self._pending[1:]
        else:
            ready = []
        return [self._to_result(out) for out in ready]

    def _to_result(self, out) -> FrameResult:
        return handoff.frame_result(self.state, out, self._removed)

    # -- the BackendSession interface ------------------------------------------------------
    def _start_over(self, frame_index: int, phrases: Sequence[str], threshold: float | None) -> None:
        """A fresh inference session with these phrases, started on `frame_index` (detect, resume)."""
        self.state = self._new_state()  # a fresh session numbers objects as transformers does
        self._pending, self._removed, self._pruned = [], set(), set()
        self.notice = None
        self._reset_edits()
        self._phrases, self._threshold = tuple(phrases), threshold
        self._anchor = frame_index
        self.backend.processor.add_text_prompt(self.state, list(self._phrases))

    def detect(self, frame_index: int, phrases: Sequence[str], threshold: float | None = None) -> FrameResult:
        self._start_over(frame_index, phrases, threshold)
        self._step(frame_index, reverse=False)
        self._processed_unyielded = frame_index
        out = self._pending[-1]
        return self._to_result(out)

    def resume(self, frame_index: int, phrases: Sequence[str], threshold: float | None, seed: FrameResult,
               first_seen: Mapping[int, int], last_id: int) -> FrameResult:
        """Start over from known objects on `frame_index` (an earlier run's result there) instead
        of a detection: each keeps its id and label and is tracked from its mask; the phrases find
        new objects on the following frames, numbered above `last_id`. Edits work as after `detect`."""
        model = self.backend.model
        if len(seed) > model.max_num_objects:
            raise BadRequestError(f"Frame {frame_index} has {len(seed)} objects; the model tracks at most "
                                  f"{model.max_num_objects} at once. Remove some, or start a new run.")
        self._start_over(frame_index, phrases, threshold)
        state = self.state
        with self.backend.lock:
            state.max_obj_id = max(state.max_obj_id, int(last_id) - 1)  # ids are never reused
            raws = [user_edits.register_object(model, state, frame_index, self._prompt_id(label), obj_id - 1,
                                               first_seen.get(obj_id, frame_index))
                    for obj_id, label in zip(seed.obj_ids.tolist(), seed.labels)]
            out = user_edits.seed_objects(model, state, frame_index, raws, seed.masks, seed.scores.tolist())
        self._pending = [out]
        self._processed_unyielded = frame_index
        return self._to_result(out)

    def propagate(
        self,
        frame_indices: Sequence[int],
        reverse: bool,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[FrameResult]:
        if self.state is None:
            raise RuntimeError("detect() must run before propagate()")
        indices = list(frame_indices)
        if isinstance(self.state.processed_frames, _LazyFrames):
            self.state.processed_frames.plan(indices)
        skip_first = bool(indices) and indices[0] == self._processed_unyielded and bool(self._pending)
        if not skip_first:
            yield from self._release(end=True)  # leftovers of an earlier run, if any
        self._processed_unyielded = None
        error: BaseException | None = None
        for pos, index in enumerate(indices):
            if pos == 0 and skip_first:
                continue
            if should_stop():
                break
            try:
                self._step(index, reverse)
            except Exception as err:  # e.g. out of memory: keep what was processed, then report
                error = err
                break
            yield from self._release(end=False)
        # frames already processed always reach the caller, also when it stops early
        yield from self._release(end=True)
        if error is not None:
            raise error

    def remove_object(self, obj_id: int) -> None:
        raw = int(obj_id) - 1  # transformers counts from 0
        with self.backend.lock:
            if self.state is not None:
                self.state.remove_object(raw, strict=False)
        self._removed.add(raw)
        self._protected.discard(raw)
        self._base.pop(raw, None)

    # -- edits on the detect frame ---------------------------------------------------------
    def _editable(self, frame_index: int):
        """The detect step's raw output, when `frame_index` can still be edited."""
        if self.state is None or self._processed_unyielded != frame_index or not self._pending:
            raise BadRequestError(
                f"Frame {frame_index} can only be edited right after detect on it, before propagating; "
                "run detect on it again, then edit.")
        return self._pending[-1]

    def _show(self, frame_index: int, obj_id: int, logits) -> FrameResult:
        """Put an edited object's mask (1, h, w) into the pending detect output; the frame's result."""
        fresh = user_edits.with_user_mask(self.state, self._pending[-1], frame_index, obj_id, logits)
        self._pending[-1] = fresh  # propagation yields the detect frame with the edit
        self._protected.add(obj_id)
        return self._to_result(fresh)

    @user_edits.all_or_nothing
    def refine(self, frame_index: int, obj_id: int, points: Sequence[tuple[float, float]],
               labels: Sequence[int]) -> FrameResult:
        """Correct one object with clicks (every click so far for it on this frame; 1 adds, 0 removes).

        The clicks correct the object's mask as detected (or the box it was added with), so the
        result depends only on the clicks given, not on earlier refine calls. Clicks that leave
        the object no mask are refused (BadRequestError) and change nothing.
        """
        self._editable(frame_index)
        raw = int(obj_id) - 1
        if raw in self._removed or raw not in self.state.obj_ids:
            raise BadRequestError(f"Object {obj_id} is not tracked on this frame (removed or never found), "
                                  "so it cannot be refined; add it as a new object instead.")
        model = self.backend.model
        with self.backend.lock:
            if raw not in self._base:
                self._base[raw] = (None, user_edits.object_logits(self.state, frame_index, raw))
            box, prev = self._base[raw]
            logits = user_edits.prompt_object(model, self.state, frame_index, raw, points, labels, box, prev)
            return user_edits.require_mask(self._show(frame_index, raw, logits), obj_id, (
                f"Those clicks leave object #{obj_id} with an empty mask (the model sees nothing of it there); "
                "click inside the object, or remove it instead."))

    @user_edits.all_or_nothing
    def add_object(self, frame_index: int, label: str, box: tuple[float, float, float, float] | None = None,
                   points: Sequence[tuple[float, float]] | None = None,
                   labels: Sequence[int] | None = None) -> tuple[int, FrameResult]:
        """Start tracking something the text missed, from a box and/or clicks; returns its new id
        (above every id so far) and the frame's result. A label equal to a phrase joins that
        phrase's objects (masks of one phrase do not overlap); any other label is its own group.
        An object the model finds nothing of is refused (BadRequestError) and changes nothing."""
        self._editable(frame_index)
        model, state = self.backend.model, self.state
        if len(state.obj_ids) >= model.max_num_objects:
            if self.backend.max_objects and len(state.obj_ids) >= self.backend.max_objects:
                raise BadRequestError(cap_sentence(self.backend.max_objects) + " Remove one before adding another.")
            raise BadRequestError(f"This session already tracks {len(state.obj_ids)} objects, the most the model "
                                  "tracks at once; remove one before adding another.")
        with self.backend.lock:
            raw = user_edits.register_object(model, state, frame_index, self._prompt_id(label))
            self._base[raw] = (None if box is None else tuple(map(float, box)), None)
            logits = user_edits.prompt_object(model, state, frame_index, raw, points, labels, box, None)
            where = "in that box; draw it larger or click inside the object" if box is not None else \
                "at those clicks; click inside the object, or draw a box around it"
            return raw + 1, user_edits.require_mask(self._show(frame_index, raw, logits), raw + 1,
                                                    f"The model found nothing {where}.")

    def _prompt_id(self, label: str) -> int:
        """The prompt group of an added object's label (a hidden one for a label that is no phrase)."""
        for pid, text in self.state.prompts.items():
            if text == label:
                return pid
        pid = USER_PROMPT_ID + len(self._user_prompts)
        self._user_prompts[pid] = self.state.prompts[pid] = label
        return pid

    @user_edits.all_or_nothing
    def exemplar(self, frame_index: int, box: tuple[float, float, float, float], positive: bool = True) -> FrameResult:
        """Detect again on this frame with every phrase plus the example boxes so far ("more like
        this", or with `positive=False` "not like this"). What it finds that no object covers (removed
        ones included) becomes new objects; with a negative example, detected objects it no longer
        finds are removed. Objects the user clicked or added are kept. An example that changes
        nothing is refused (BadRequestError) and is not kept for the next ones."""
        self._editable(frame_index)
        self._exemplars.append((tuple(float(v) for v in box), bool(positive)))
        model, state = self.backend.model, self.state
        out = self._pending[-1]
        with self.backend.lock, self._phrases_only():
            self.backend.set_threshold(self._threshold)
            det, prompt_of = user_edits.exemplar_detections(model, state, frame_index, self._exemplars)
        fresh, matched = user_edits.match_detections(model, det, out.obj_id_to_mask)
        before = self._to_result(out)
        if not positive:  # detected objects the examples now rule out
            for raw in [r for r in out.obj_id_to_mask if r not in matched | self._protected | self._removed]:
                self.remove_object(raw + 1)
        found, fresh = fresh, fresh[: max(0, model.max_num_objects - len(state.obj_ids))]
        with self.backend.lock:
            new = user_edits.add_detected_objects(model, state, frame_index, det["mask"][fresh],
                                             [prompt_of[i] for i in fresh])
            for raw, i in zip(new, fresh):
                self._pending[-1] = user_edits.with_user_mask(state, self._pending[-1], frame_index, raw,
                                                         det["mask"][i][None], float(det["scores"][i]))
            self._protected.update(new)
        return user_edits.require_change(before, self._to_result(self._pending[-1]), positive, len(found) > len(fresh))

    def close(self) -> None:
        if self.state is not None:
            _close_frames(self.state)
        self.state = None
        self._pending = []
        self.reader.close()
        if str(self.backend.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
