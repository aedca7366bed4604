"""What every annotation writer shares: the run's context, category ids, file names, a disk spill.

Writers receive `EncodedFrame`s in processing order (forward, then backward for "both") and must
write files in frame order that cover exactly the frames they received, so formats that are one
file per video keep their records in a `Spill` on disk until `close()`: memory holds only
offsets, however long the video.
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from array import array
from dataclasses import dataclass, field
from typing import IO, ClassVar, Iterator, Sequence

from ..results import EncodedFrame
from ..types import VideoInfo


class Writer(ABC):
    """One annotation format, registered by name in `export.FORMATS`. The contract, which
    tests/test_export_contract.py checks for every registered format:

    - `files`: what the format writes in annotations/, as paths inside it ("name/" is a folder).
      After `close()` each one exists, and the writer has left nothing else there (its spills are
      hidden files, removed on close). manifest.json lists them under "formats".
    - `described` and `opens_in`: the format's row of the README's table (one line of markdown
      each: what the files hold, and the tools that read them); `export.formats_table` renders it.
    - `needs_image`: whether `write` reads `frame.image` (the decoded frame, e.g. to ship JPEGs).
      A run decodes the video only when an output says it needs it (writing.py), so a writer that
      says False must never read it.
    - `write(frame)` for every frame, in processing order (forward, then backward for "both");
      the files cover exactly those frames, in frame order. `close()` once: files final.
    - `manifest()`: what a reader of the format must know (id maps, limits): a JSON-ready dict
      written into manifest.json under the format's name after `close()`; None (the default):
      nothing to add.
    """

    files: ClassVar[tuple[str, ...]]
    described: ClassVar[str]
    opens_in: ClassVar[str]
    needs_image: ClassVar[bool] = False

    def __init__(self, folder: str, context: ExportContext):
        self.folder, self.context = folder, context

    @abstractmethod
    def write(self, frame: EncodedFrame) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def manifest(self) -> dict | None:
        return None


class Categories:
    """Label -> category id (from 1): the prompts in order first, then any new label as it appears."""

    def __init__(self, labels: Sequence[str] = ()):
        self._ids: dict[str, int] = {}
        for label in labels:
            self.id_of(label)

    def id_of(self, label: str) -> int:
        if label not in self._ids:
            self._ids[label] = len(self._ids) + 1
        return self._ids[label]

    def as_list(self) -> list[dict]:
        return [{"id": i, "name": name, "supercategory": "object"} for name, i in self._ids.items()]


@dataclass
class ExportContext:
    """Facts every writer needs about the run."""

    info: VideoInfo  # the whole video: frames are named by its own indices, whatever the stride
    categories: Categories = field(default_factory=Categories)
    stride: int = 1  # the run did every `stride`-th frame: offset, offset + stride, ... (0 <= offset < stride)
    offset: int = 0

    @property
    def video_name(self) -> str:
        return os.path.splitext(os.path.basename(self.info.path))[0] or "video"

    def frame_name(self, index: int) -> str:
        """'00012' for frame 12: at least 5 digits (as DAVIS), more for longer videos."""
        return f"{index:0{max(5, len(str(max(0, self.info.num_frames - 1))))}d}"


def present(frame: EncodedFrame) -> Iterator[int]:
    """Indices of the objects with at least one mask pixel (an empty mask means 'not visible')."""
    return (k for k, area in enumerate(frame.areas) if area > 0)


class Spill:
    """Text records kept in a hidden file, read back by integer key in key order."""

    def __init__(self, folder: str, name: str):
        fd, self.path = tempfile.mkstemp(prefix=f".{name}-", suffix=".spill", dir=folder)
        self._file: IO[bytes] = os.fdopen(fd, "w+b")
        self._offsets: dict[int, array] = {}

    def add(self, key: int, record) -> None:
        """Append a JSON-serialisable record under `key`."""
        self._file.seek(0, os.SEEK_END)
        self._offsets.setdefault(int(key), array("q")).append(self._file.tell())
        self._file.write(json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n")

    def keys(self) -> list[int]:
        return sorted(self._offsets)

    def get(self, key: int) -> list:
        """The records under `key`, in the order they were added."""
        self._file.flush()
        out = []
        for offset in self._offsets.get(int(key), ()):
            self._file.seek(offset)
            out.append(json.loads(self._file.readline()))
        return out

    def close(self) -> None:
        self._file.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


class AtomicText:
    """A text file written under a temporary name and renamed into place on `commit()`, so a
    reader never sees half a file."""

    def __init__(self, path: str):
        self.path = path
        self._tmp = path + ".part"
        self.file: IO[str] = open(self._tmp, "w", encoding="utf-8")

    def write(self, text: str) -> None:
        self.file.write(text)

    def commit(self) -> None:
        self.file.close()
        os.replace(self._tmp, self.path)


def write_bytes(path: str, data: bytes) -> None:
    """A whole file, under a temporary name renamed into place."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
