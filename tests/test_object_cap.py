"""SAM3_MAX_OBJECTS: the cap on objects one session tracks (public Spaces), with a sentence when it binds."""

from __future__ import annotations

import copy
import threading

import pytest

from sam3_video.backends.transformers import check_max_objects
from sam3_video.config import objects_for_memory
from sam3_video.errors import BackendUnavailableError, BadRequestError
from sam3_video.session import VideoSession


@pytest.fixture()
def capped(edit_backend):
    """A private copy of the edit backend (2 objects detected on carphone's frame 0) capped at 1."""
    private = copy.copy(edit_backend)
    private.model = copy.deepcopy(edit_backend.model)
    private.lock = threading.RLock()
    private.max_objects = 1
    private.model.max_num_objects = 1
    return private


def test_the_cap_keeps_the_best_detections_and_says_so(capped, edit_backend, carphone):
    with VideoSession(carphone, edit_backend) as s:
        free = s.detect(0, "person, window")
        assert s._session.notice is None
    assert len(free) > 1, "the uncapped model must find more than the cap for this test to mean anything"
    with VideoSession(carphone, capped) as s:
        first = s.detect(0, "person, window")
        assert len(first) == 1
        assert "at most 1 object" in s._session.notice
        with pytest.raises(BadRequestError, match="at most 1 object"):
            s.add_object(0, "thing", box=(10, 10, 60, 60))
        assert all(len(r) <= 1 for r in s.propagate("forward", max_frames=5))


def test_cap_setting():
    assert check_max_objects(0) == 0 and check_max_objects(7) == 7
    with pytest.raises(BackendUnavailableError, match="SAM3_MAX_OBJECTS"):
        check_max_objects(-1)
    assert objects_for_memory(48, 31, 0.26, 2) == 57  # the ZeroGPU default's arithmetic
    assert objects_for_memory(24, 31) == 1


def test_a_run_the_cap_bound_says_so_in_its_record_and_summary(capped, carphone, tmp_path):
    from sam3_video.pipeline import run
    from sam3_video.runfolder import read_record
    from sam3_video.types import RunOptions
    from sam3_video.web.runs import summary_line, summary_of

    record = run(carphone, RunOptions.of(prompts=("person", "window"), max_frames=3), tmp_path / "capped",
                 backend=capped, outputs=["mot"])
    assert record.complete and "at most 1 object" in (record.notice or "")
    assert read_record(str(tmp_path / "capped")).notice == record.notice  # run.json keeps it
    summary = summary_of(str(tmp_path / "capped"))
    assert summary["notice"] == record.notice
    assert summary_line(summary).endswith(record.notice)  # the page's status line and summary
