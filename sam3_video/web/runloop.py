"""One run of the app as one or more GPU calls, and what the visitor keeps whatever ends them.

A run that needs more than one call goes as several (`runs.Plan`): each continues the folder of the
one before (sam3_video/continuation.py), so that the newest folder holds the whole run so far. Each
call asks for about what its work needs (`Sizer`: the figures of `config.GpuBudget`, or the pace
learned from earlier calls, capped), and a call the platform refuses for want of quota is tried
again shorter with what is left, down to one that can still do a few frames.

**Nothing done is lost.** Whatever ends a call (complete, Stop, refused before it starts, a queue
failure, killed at its duration, a crash), the workspace ends up on a valid run folder with every
frame done so far: the folder the call was writing, when it closed its files; a copy rewritten from
its results (sam3_video/salvage.py) when it was cut off with more frames than it started from;
else the folder before it (the earlier call's, or an earlier run's: a failure never hides a run).
The visitor's summary says what happened, in words, and the run can be continued (`continue_leg`).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Iterator

from .. import continuation
from ..config import GpuBudget
from ..errors import BadRequestError
from ..progress import Progress
from ..runfolder import RunRecord, read_record, write_record
from ..salvage import frames_in, rewrite
from ..types import RunOptions, VideoInfo, frame_order
from ..writing import Follower
from . import gpu, runs
from .gpucalls import Pace, Refusal, duration_factor, refusal
from .runs import Leg, Plan, RunSummary, RunUpdate
from .workspaces import Workspace, Workspaces

log = logging.getLogger(__name__)
MIN_FRAMES_PER_CALL = 3  # a shorter call than start-up plus this many frames is not worth its start-up


@dataclass
class Sizer:
    """How long each GPU call asks for: the configured figures, or the pace learned so far."""

    budget: GpuBudget
    pace: Pace
    learn: bool = True

    def figures(self) -> GpuBudget:
        """The budget with the learned start-up and per-frame seconds (a quarter more, for safety)."""
        if not self.learn:
            return self.budget
        frame_s, start_s = self.pace.frame_s, self.pace.start_s
        return replace(self.budget,
                       per_frame_s=round(1.25 * frame_s, 3) if frame_s else self.budget.per_frame_s,
                       start_s=round(1.25 * start_s + 1, 1) if start_s else self.budget.start_s)

    def run(self, frames: int, kept: int = 0, edits: int = 0, boost: float = 1.0) -> int:
        """A call for `frames` new frames after `kept` copied ones and `edits` clicks; `boost`
        times the figures (a call whose time was up before its first frame asks more)."""
        figures = self.figures()
        if boost != 1.0:
            figures = replace(figures, start_s=figures.start_s * boost, per_frame_s=figures.per_frame_s * boost)
        return figures.run(frames, kept, edits)

    def step(self, edits: int) -> int:
        return self.figures().step(edits)

    def smallest(self, kept: int = 0, edits: int = 0) -> int:
        """The shortest call worth starting: start-up and MIN_FRAMES_PER_CALL frames."""
        return self.figures().run(MIN_FRAMES_PER_CALL, kept, edits)

    def shorter(self, asked: int, refused: Refusal, kept: int = 0, edits: int = 0) -> int | None:
        """The duration to try after `asked` was refused for want of quota: what is left (the
        platform's figure divided by its factor), else half of `asked`; None when that is too
        short to do anything."""
        seconds = _asks_left(refused.left_s) if refused.left_s is not None else asked // 2
        return seconds if self.smallest(kept, edits) <= seconds < asked else None

    def shorter_step(self, asked: int, refused: Refusal | None) -> int | None:
        """A detection refused for want of quota: the seconds left (at the platform's factor), when
        the platform said and they are at least half of what was asked; else None."""
        if refused is None or refused.kind != "quota" or refused.left_s is None:
            return None
        seconds = _asks_left(refused.left_s)
        return seconds if asked / 2 <= seconds < asked else None

    def estimate(self, info: VideoInfo, options: RunOptions, kept: int = 0) -> tuple[int, int]:
        """(GPU seconds, calls) a run of `options` needs, roughly, start-ups included."""
        figures = self.figures()
        frames = len(frame_order(info.num_frames, options.start.frame, options.direction or "forward",
                                 options.max_frames, options.stride))
        needed = figures.start_s + figures.per_edit_s * len(options.start.edits) + figures.per_frame_s * frames \
            + figures.per_kept_frame_s * kept
        if figures.max_s <= 0 or needed <= figures.max_s:
            return math.ceil(needed), 1
        per_call = max(1.0, figures.max_s - figures.start_s - GpuBudget.margin_s(figures.max_s))
        calls = math.ceil(figures.per_frame_s * frames / per_call)
        return math.ceil(needed + (calls - 1) * figures.start_s), calls


def _asks_left(left_s: float) -> int:
    """The longest call that `left_s`, the quota the platform said is left, lets start (it counts
    each asked second `duration_factor` times), a second short."""
    return math.floor(left_s / duration_factor()) - 1


def ended_by(refused: Refusal | None, err: BaseException) -> tuple[str, str]:
    """(stopped_by, what to do) for a call that ended with `err`."""
    if refused is None:
        return "a failure", (f"The GPU call failed ({type(err).__name__}). Run it again; if it fails again, "
                             "report it with the server's log.")
    if refused.kind in ("quota", "illegal"):
        return "the GPU quota", (f"Continue when your quota renews, or log in for more ({refused.message})")
    if refused.kind == "queue":
        return "the GPU queue", f"No GPU was free in time; continue in a moment ({refused.message})"
    return "the end of the GPU call", ("The GPU call ended before its time (the platform stopped it, or its "
                                       "worker died); continue, and it goes on from the last frame kept")


class RunLoop:
    """Drives one run's GPU calls for a workspace (the caller holds it in use) and yields each
    call's `RunUpdate` with the call's number, then a `Progress` with `written` of its `total`
    frames while the files are finished after the last call, then the run's `RunSummary`.

    The GPU calls write results only; a `writing.Follower` writes the overlay and the annotations
    from them in this process, as frames land, and moves them into the run's final folder at the
    end: the visitor's GPU time goes to the model."""

    def __init__(self, workspaces: Workspaces, sizer: Sizer, outputs: tuple[str, ...]):
        self.workspaces, self.sizer, self.outputs = workspaces, sizer, outputs

    def legs(self, ws: Workspace, model, options: RunOptions, plan: Plan, kept: list[int]
             ) -> Iterator[tuple[int, RunUpdate] | Progress | RunSummary]:
        video, info = ws.need_video()
        here = replace(info, path=video)  # the workspace's own link (Gradio deletes its uploads)
        follower = Follower(tempfile.mkdtemp(prefix="writing-", dir=ws.dir), self.outputs, here)
        try:
            yield from self._legs(ws, model, options, plan, kept, follower)
        finally:
            follower.discard()  # (done already when the files were moved into the run's folder)

    def _legs(self, ws: Workspace, model, options: RunOptions, plan: Plan, kept: list[int], follower: Follower
              ) -> Iterator[tuple[int, RunUpdate] | Progress | RunSummary]:
        video, info = ws.need_video()
        before = previous = ws.run_dir  # what the visitor keeps if the first call does nothing

        def new_leg() -> str:
            """A new folder for the next call, the workspace's run from now on."""
            folder = self.workspaces.new_run_dir(ws, {previous, ws.continue_from})
            self.workspaces.set_run(ws, folder)
            return folder

        run_dir = new_leg()
        started, calls, seen, ended, boost = time.monotonic(), 0, None, None, 1.0
        first: RunRecord | None = None  # the first call's record: the run as the visitor asked it
        while True:
            new = len(frame_order(info.num_frames, options.start.frame, options.direction or "forward",
                                  options.max_frames, options.stride))
            seconds = self.sizer.run(new, len(kept), len(options.start.edits), boost)
            request = gpu.RunRequest(model, video, info, options, run_dir, ws.dir, seconds, self.sizer.budget.enforced)
            follower.follow(run_dir)  # the files are written from its results as they land, here
            last, err = RunUpdate(), None
            while True:  # the call, and shorter ones while the platform refuses it for want of quota
                calls += 1
                got = False
                try:
                    for update in gpu.run_step(request):
                        got, last = True, update.opened()
                        yield calls, last
                    break
                except Exception as caught:
                    refused = refusal(caught)
                    shorter = self.sizer.shorter(request.seconds, refused, len(kept), len(options.start.edits)) \
                        if refused is not None and refused.kind == "quota" and not got else None
                    if refused is None or shorter is None:
                        err = caught
                        break
                    log.info("GPU call of %s s refused (%s); trying %s s", request.seconds, refused.message, shorter)
                    request = replace(request, seconds=shorter)
            self._learn(last)
            if err is not None:
                ended = self._keep_done(ws, previous, len(kept), err, replace(info, path=video))
                break
            record = read_record(run_dir)
            if record is None:  # failed before it wrote anything (its sentence says why): back to the last record
                self.workspaces.prune_runs(ws, {previous, ws.continue_from})
                self.workspaces.set_run(ws, previous)
                raise BadRequestError(last.error or "The run failed before its first frame; run it again.")
            first = first or record
            done = record.frame_range
            stopped = runs.stop_requested(run_dir)
            if last.stopped_for == "time" and not stopped and (done is None or done == seen):
                # its time was up before one more frame (a start-up slower than budgeted): the same
                # leg again in a new folder, asking twice as long, while the cap allows
                if boost < 8 and self.sizer.run(new, len(kept), len(options.start.edits), 2 * boost) > request.seconds:
                    boost *= 2
                    run_dir = new_leg()
                    continue
                ended = {"stopped_by": "the GPU time limit",
                         "error": f"A GPU call of {request.seconds} s ended before one more frame was done; "
                                  "raise SAM3_MAX_GPU_SECONDS or SAM3_GPU_START_S."}
                if done is None:  # this call's empty folder is no run: keep the one before
                    self.workspaces.set_run(ws, previous)
                break
            going_on = last.stopped_for == "time" or record.complete
            leg = plan.next_leg(done, options.stride) if going_on and not stopped else None
            if leg is None:
                ended = ({"stopped_by": "you"} if runs.stop_requested(run_dir) else
                         {"stopped_by": "the GPU time limit"} if record.status == "stopped" else {})
                if last.error:  # the step's sentence for the visitor (run.json keeps the exception's own words)
                    ended["error"] = last.error
                break
            seen, previous, boost = done, run_dir, 1.0  # the frames done so far: what the visitor keeps if the next call fails
            kept = continuation.load(run_dir, leg.frame, leg.direction, info).kept
            options = replace(options, start=options.start.continuing(run_dir, leg.frame), direction=leg.direction,
                              max_frames=leg.max_frames)
            run_dir = new_leg()
        self.workspaces.prune_runs(ws, {ws.run_dir, ws.continue_from})
        final = ws.run_dir  # the folder with every frame done (_keep_done may have moved it)
        if final is None or final == before:  # not one frame of this run: the earlier run stays as it was
            why = (ended or {}).get("advice") or (ended or {}).get("error") or "run it again"
            raise BadRequestError(f"Nothing of this run was done: {why.rstrip('.')}."
                                  + (" Your earlier run and its files are kept." if before else ""))
        try:  # the rest of the files, written here after the GPU calls (the GPU is released)
            for written, total in follower.finish(final, as_asked(read_record(final), first)):
                yield Progress(total=total, written=written)
        except Exception as err:  # the results are kept; the summary says what went wrong
            log.error("writing the files of a run failed", exc_info=err)
            record = read_record(final)
            if record is not None:
                record.status, record.error = "failed", f"writing the outputs failed: {err}"
                write_record(final, record)
            ended = {**(ended or {}), "error": f"Writing the files failed ({err}); the results of every frame "
                                               "done are kept (results.jsonl). Run it again."}
        ended = {k: v for k, v in (ended or {}).items() if k != "advice"}
        summary = replace(RunSummary.read(final), seconds=round(time.monotonic() - started, 1), gpu_calls=calls,
                          covers=[plan.first, plan.last], stride=options.stride, **ended)
        if ended and "stopped_by" in ended and summary.status in ("failed", "running"):
            summary.status = "stopped"
        summary.write(final)
        yield summary

    def _learn(self, last: RunUpdate) -> None:
        """What the call's last update says it cost, for sizing the next calls."""
        if last.model_s and last.frames_run:
            self.sizer.pace.saw(last.frames_run, last.model_s, last.start_s)

    def _keep_done(self, ws: Workspace, previous: str | None, kept: int, err: BaseException,
                   info: VideoInfo) -> dict:
        """After a call that ended with `err`: the workspace on the folder with every frame done
        (see the module's docstring); returns what the summary says about it."""
        refused = refusal(err)
        if refused is None:
            log.error("a GPU call of a run failed", exc_info=err)
        stopped_by, advice = ended_by(refused, err)
        current = ws.run_dir
        record = read_record(current) if current else None
        closed = record is not None and record.status != "running"  # the step closed its files itself
        if current is not None and not closed and frames_in(current) > kept:  # cut off: write its frames again, here
            folder = self.workspaces.new_run_dir(ws, {current, previous, ws.continue_from})
            try:
                rewrite(current, folder, info, (), "stopped", advice)  # the results: the files follow them
                current, closed = folder, True
            except Exception as failed:  # keep the folder before it
                log.error("rewriting a cut-off run failed", exc_info=failed)
        if not closed or frames_in(current) == 0:
            current = previous
        self.workspaces.set_run(ws, current)
        self.workspaces.prune_runs(ws, {current, ws.continue_from})
        record = read_record(current) if current else None
        if record is None or not record.frame_range:
            return {"stopped_by": stopped_by, "advice": advice}
        span = "frames {}-{}".format(*record.frame_range)
        return {"stopped_by": stopped_by, "advice": advice,
                "error": f"Ended by {stopped_by} after {frames_in(current)} frames: the files for {span} are below. "
                         f"{advice}."}


def as_asked(record: RunRecord | None, first: RunRecord | None) -> RunRecord | None:
    """The record of a run's last GPU call (`record`), as the annotations' manifest gives it: the run
    the visitor asked for, as its first call (`first`) recorded it (its start point with the removed
    objects and corrections, its direction, frames and the run it continued from), and what the run
    did, as the last call recorded it. Each later call's run.json keeps its own start (its first
    frame, continued from the call before), which the next continuation reads."""
    if record is None or first is None or first is record:
        return record
    return replace(record, start=first.start, direction=first.direction, max_frames=first.max_frames,
                   continued_from=first.continued_from)


def continue_leg(folder: str) -> Leg | None:
    """Where the run in `folder` goes on, when it ended before it covered what it set out to
    (its summary's `covers`), or None."""
    covers = RunSummary.read(folder).covers
    record = read_record(folder)
    if record is None or not covers or not record.frame_range:
        return None
    stride = max(1, int(record.stride or 1))
    plan = Plan(int(covers[0]), int(covers[1]), stride=stride)
    return plan.next_leg(record.frame_range, stride)
