"""Random visitors through the app's service, in-process (as tests/test_service.py), on the small
random SAM3 (CPU): detect, remove, clicks (points, new-object boxes, example boxes), Undo all
clicks, runs (each direction, with limits, stopped), Fix this frame and continue. Nothing may raise
but the project's own sentences; a step that fails leaves the workspace as it was (the page shows
a toast and stays as it was); every run's files read back."""

from __future__ import annotations

import dataclasses
import random

import pytest

from sam3_video.config import LIMITS
from sam3_video.errors import Sam3VideoError
from sam3_video.progress import Progress
from sam3_video.types import Edit
from sam3_video.web.runs import Outputs
from sam3_video.web.service import Service
from tests.test_edit_fuzz import FIRST_FRAMES, PHRASES, THRESHOLDS, check_run_folder

OPS = ("detect", "remove", "point", "point", "new_object", "example", "clear", "run", "run", "fix")


def workspace_view(ws) -> tuple:
    """What the page shows and the next run replays, as plain values (the box corner aside)."""
    preview = None if ws.preview is None else (ws.preview.obj_ids.tolist(), ws.preview.masks.tobytes())
    return (ws.start, ws.said, preview)


class PageVisitor:
    def __init__(self, seed: int, service: Service, video: str):
        self.rng = random.Random(seed)
        self.service, self.key = service, f"visitor{seed}"
        self.info, _ = service.open_video(self.key, video)
        self.steps: list[str] = []
        self.direction: str | None = None  # the way a fixed frame continues

    @property
    def ws(self):
        return self.service.workspaces.get(self.key)

    def xy(self) -> tuple[float, float]:
        return self.rng.uniform(0, self.info.width), self.rng.uniform(0, self.info.height)

    def step(self) -> None:
        op = self.rng.choice(OPS) if self.steps else "detect"
        self.before = workspace_view(self.ws)
        try:
            said = getattr(self, op)() or ""
        except Sam3VideoError as err:
            assert workspace_view(self.ws) == self.before, f"{op} failed ({err}) but changed the workspace"
            said = f"refused: {err}"
        self.steps.append(f"{op} {said}".strip())

    def detect(self) -> str:
        frame, phrases = self.rng.randrange(FIRST_FRAMES), ", ".join(self.rng.choice(PHRASES))
        shown = self.service.detect(self.key, frame, phrases, self.rng.choice(THRESHOLDS))
        self.direction = None
        return f"frame {frame} '{phrases}': {[o.id for o in shown.objects]}"

    def remove(self) -> str:
        ids = [int(i) for i in self.ws.preview.obj_ids] if self.ws.preview is not None else []
        victim = self.rng.choice(ids) if ids and self.rng.random() < 0.8 else 99
        self.service.remove(self.key, [victim])
        return f"#{victim}"

    def _click(self, intent: Edit, clicks: int) -> str:
        for _ in range(clicks):
            self.before = workspace_view(self.ws)  # a failing click leaves it as the click before left it
            shown = self.service.click(self.key, *self.xy(), intent)
        return shown.said

    def point(self) -> str:
        return self._click(Edit("refine", labels=(self.rng.randint(0, 1),)), 1)

    def new_object(self) -> str:
        return self._click(Edit("add_object", label=self.rng.choice(("", "thing"))), 2)

    def example(self) -> str:
        return self._click(Edit("exemplar", positive=self.rng.random() < 0.7), 2)

    def clear(self) -> str:
        self.service.clear_edits(self.key)

    def run(self) -> str:
        direction = self.direction or self.rng.choice(("forward", "backward", "both"))
        stop_after = self.rng.choice((None, None, 1, 2))
        items = []
        for item in self.service.propagate(self.key, direction, self.rng.randint(1, 3)):
            items.append(item)
            if stop_after is not None and isinstance(item, Progress) and item.done >= stop_after:
                self.service.stop(self.key)
        outputs = items[-1]
        assert isinstance(outputs, Outputs) and all(isinstance(i, Progress) for i in items[:-1])
        assert outputs.summary["status"] in ("complete", "stopped"), outputs.summary
        check_run_folder(self.ws.run_dir, self.info)
        return f"{direction}: {outputs.summary['status']}, {outputs.summary['frames']} frames"

    def fix(self) -> str:
        frames = self.service._run_frames(self.ws)
        index = self.rng.choice(sorted(frames.offsets)) if frames and frames.offsets else self.rng.randrange(3)
        shown, self.direction = self.service.fix_frame(self.key, index)
        return f"frame {index}: {[o.id for o in shown.objects]}"


@pytest.fixture(scope="module")
def service(test_model_dir, backend, tmp_path_factory):
    limits = dataclasses.replace(LIMITS, outputs="coco,mot")  # no overlay to encode: the runs are what is tried
    return Service(model=test_model_dir, device="cpu", root=str(tmp_path_factory.mktemp("root")), limits=limits)


@pytest.mark.parametrize("seed", range(4))
def test_random_visitors_through_the_service(seed, service, carphone):
    visitor = PageVisitor(seed, service, carphone)
    try:
        for _ in range(10):
            visitor.step()
    except Exception as err:
        trail = "\n  ".join(visitor.steps)
        raise AssertionError(f"seed {seed}, after:\n  {trail}\nraised {type(err).__name__}: {err}") from err
    finally:
        service.close_workspace(visitor.key)
