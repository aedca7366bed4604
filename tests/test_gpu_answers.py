"""A GPU step's answers fit in one write of spaces' pipe (web/handoff.py). On ZeroGPU a worker that
the platform SIGKILLs in the middle of a longer answer leaves spaces' reader waiting for the rest
(a run's generator for 20 minutes): the visitor's run hangs instead of keeping its frames. The
frame drawn and a detection's masks go through files of the workspace instead, and the page
still gets them."""

from __future__ import annotations

import os
import pickle

import numpy as np

from sam3_video.progress import Progress
from sam3_video.web import gpu
from sam3_video.web.handoff import PIPE_BUF, Handoff


def sent_size(answer) -> int:
    """Bytes spaces writes to its pipe for `answer`: its OkResult pickled, after a 4-byte length."""
    from spaces.zero.types import OkResult

    return 4 + len(pickle.dumps(OkResult(answer)))


def test_every_answer_of_a_detection_and_a_run_fits_in_one_pipe_write(service, carphone, monkeypatch):
    sizes: dict[str, list[int]] = {"detect": [], "run": []}
    detect, run = gpu.detect_step, gpu.run_step

    def detect_measured(request):
        answer = detect(request)
        sizes["detect"].append(sent_size(answer))
        return answer

    def run_measured(request):
        for update in run(request):
            sizes["run"].append(sent_size(update))
            yield update

    monkeypatch.setattr(gpu, "detect_step", detect_measured)
    monkeypatch.setattr(gpu, "run_step", run_measured)
    service.open_video("g", carphone)
    shown = service.detect("g", 0, "person", None)
    assert shown.objects, "the small model must find objects for this test to mean anything"
    ws = service.workspaces.get("g")
    assert ws.preview is not None and ws.preview.masks.shape[1:] == (144, 176)  # the masks, taken from the file
    assert not os.path.exists(os.path.join(ws.dir, gpu.DETECTED_FILE))  # taken, then deleted
    items = list(service.propagate("g", "forward", 12))
    frames = [i.preview for i in items if isinstance(i, Progress) and i.preview is not None]
    assert items[-1].summary["status"] == "complete" and items[-1].summary["frames"] == 12
    assert frames and all(f.shape == (144, 176, 3) and f.dtype == np.uint8 for f in frames)  # the page's live frame
    assert len(sizes["detect"]) == 1 and len(sizes["run"]) >= 3, sizes
    assert max(sizes["detect"] + sizes["run"]) <= PIPE_BUF, sizes
    # (before: the detection's answer was its masks, the run's updates a 176x144 frame each: 76 KB)


def test_a_handoff_is_the_value_left_whole(tmp_path):
    path = str(tmp_path / "frame.pkl")
    first = Handoff.leave(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), path)
    later = Handoff.leave(np.ones((2, 2, 3), np.uint8), path)  # a newer frame drawn, in its place
    assert (first.take() == 1).all() and first == later  # the same file holds the newest value
    assert sorted(os.listdir(tmp_path)) == ["frame.pkl"]  # written whole, then renamed: no part left
    assert (later.take(remove=True) == 1).all() and not os.path.exists(path)
    assert later.take_or_none() is None  # gone: nothing to show, and no error for the run
    with open(path, "wb") as f:
        f.write(b"\x80\x05cut")  # a file cut off
    assert Handoff(path).take_or_none() is None
