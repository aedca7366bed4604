"""One video of a batch: the job (where it is, what to find, where its outputs go) and its report.

The driver (`batch.py`) makes the jobs and the reports; the workers (`cluster.py`) run the jobs and
report on them. Both import these types from here, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import runfolder
from .types import RunOptions, stride_for_fps


@dataclass
class VideoJob:
    """One video of the batch: where it is, what to find, where its outputs go."""

    video: str
    out_dir: str
    prompts: tuple[str, ...]
    start_frame: int = 0
    direction: str = "forward"
    max_frames: int | None = None
    threshold: float | None = None
    stride: int = 1  # every Nth frame
    target_fps: float | None = None  # or: the stride that brings this video's frame rate nearest to it

    def options(self) -> RunOptions:
        """The run's options (a `target_fps` is turned into this video's stride: the video is probed)."""
        stride = self.stride
        if self.target_fps is not None:
            from .video import probe

            stride = stride_for_fps(probe(self.video), self.target_fps)
        return RunOptions.of(self.prompts, self.start_frame, self.direction, self.max_frames,  # type: ignore[arg-type]
                          self.threshold, stride=stride)


@dataclass
class VideoReport:
    video: str
    out_dir: str
    status: str  # "complete", "skipped" (already complete), "failed", "stopped"
    frames: int = 0
    objects_per_label: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    worker: str = ""  # host:pid of the Ray actor that held the model for this video
    node: str = ""  # the Ray node id it ran on (the last attempt's)
    retries: list[str] = field(default_factory=list)  # why each earlier attempt was cut off (a lost worker)

    @classmethod
    def of(cls, video: str, record: runfolder.RunRecord) -> "VideoReport":
        return cls(video, record.out_dir, record.status, record.frames_done, record.objects_per_label, record.elapsed_s,
                   record.error)
