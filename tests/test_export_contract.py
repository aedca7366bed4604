"""Every registered annotation format keeps the writer contract that export/base.py declares
(`Writer`: `files`, `needs_image`, `write`, `close`, `manifest`), and the one list of formats
(`export.FORMATS`) is what the CLI, the app's `SAM3_APP_OUTPUTS` and the README name (the README's
table of formats is made from the writers: `export.formats_table`)."""

from __future__ import annotations

import inspect
import json
import os
import re

import numpy as np
import pytest

from sam3_video.cli import _parser
from sam3_video.errors import BadRequestError
from sam3_video.export import (FORMATS, FORMATS_TABLE_END, FORMATS_TABLE_START, OUTPUTS, Annotations, Categories,
                                ExportContext, Writer, check_outputs, formats_table, with_formats_table)
from sam3_video.results import EncodedFrame
from sam3_video.types import FrameResult, VideoInfo

H, W = 48, 64
INFO = VideoInfo(path="/videos/contract.mp4", width=W, height=H, num_frames=9, fps=25.0, duration=0.36)
ORDER = [4, 5, 6, 3, 2]  # "both" from frame 4: forward, then backward
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _result(frame: int) -> FrameResult:
    """Two objects, the second one hidden (an empty mask) on frame 6; no objects at all on frame 2."""
    if frame == 2:
        return FrameResult(frame, [], [], [], np.zeros((0, 4)), np.zeros((0, H, W), bool))
    a = np.zeros((H, W), bool)
    a[5:20, 4 + frame:20 + frame] = True
    b = np.zeros((H, W), bool)
    if frame != 6:
        b[25:40, 30:50] = True
        b[30:35, 38:42] = False  # a hole
    boxes = [[4 + frame, 5, 20 + frame, 20], [30, 25, 50, 40] if frame != 6 else [0, 0, 0, 0]]
    return FrameResult(frame, [1, 2], ["car", "person"], [0.9, 0.6], boxes, np.stack([a, b]))


class _Frames:
    """EncodedFrames whose image, when read, is counted (or refused for a writer that said it does not need it)."""

    def __init__(self, allow_image: bool):
        self.allow_image, self.reads = allow_image, 0

    def image(self, frame: int) -> np.ndarray:
        if not self.allow_image:
            raise AssertionError("a writer whose needs_image is False read the frame's image")
        self.reads += 1
        y, x = np.mgrid[:H, :W]
        return np.stack([x * 4, y * 5, (x + y + 9 * frame) % 256], axis=-1).astype(np.uint8)

    def __iter__(self):
        return (EncodedFrame(_result(f), lambda f=f: self.image(f)) for f in ORDER)


def _written(folder) -> set[str]:
    """Every file and folder under `folder`, as relative paths ('name/' for a folder)."""
    out = set()
    for root, dirs, files in os.walk(folder):
        rel = os.path.relpath(root, folder)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        out |= {prefix + d + "/" for d in dirs} | {prefix + f for f in files}
    return out


def _covered(path: str, declared: tuple[str, ...]) -> bool:
    """Whether `path` is one of the declared files, inside a declared folder, or a folder above one."""
    return any(path == d or (d.endswith("/") and path.startswith(d)) or (path.endswith("/") and d.startswith(path))
               for d in declared)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_registered_format_keeps_the_writer_contract(name, tmp_path):
    cls = FORMATS[name]
    assert issubclass(cls, Writer) and not inspect.isabstract(cls)
    assert isinstance(cls.files, tuple) and cls.files and all(isinstance(f, str) and f for f in cls.files)
    assert not any(f.startswith(("/", ".")) or ".." in f.split("/") for f in cls.files)
    assert isinstance(cls.needs_image, bool)
    assert list(inspect.signature(cls.__init__).parameters) == ["self", "folder", "context"]

    frames = _Frames(allow_image=cls.needs_image)
    writer = cls(str(tmp_path), ExportContext(INFO, Categories(["car", "person"])))
    for frame in frames:
        writer.write(frame)
    writer.close()

    assert (frames.reads > 0) == cls.needs_image  # a writer that needs the image says so, and only then
    written = _written(tmp_path)
    for declared in cls.files:  # every declared file is there
        path = tmp_path / declared
        assert path.is_dir() if declared.endswith("/") else path.is_file() and path.stat().st_size > 0, declared
    assert [p for p in written if not _covered(p, cls.files)] == []  # and nothing else, no spill or .part left
    facts = writer.manifest()
    assert facts is None or isinstance(facts, dict)
    json.dumps(facts)


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_manifest_lists_each_formats_files_and_what_its_reader_must_know(name, tmp_path):
    annotations = Annotations(str(tmp_path), [name], ExportContext(INFO, Categories(["car", "person"])))
    for frame in _Frames(allow_image=True):
        annotations.write(frame)
    annotations.close({"status": "complete"})
    manifest = json.loads((tmp_path / "annotations" / "manifest.json").read_text())
    assert manifest["formats"] == {name: list(FORMATS[name].files)}
    facts = annotations.writers[name].manifest()
    assert manifest.get(name) == facts and (name in manifest) == (facts is not None)
    assert (tmp_path / "annotations.zip").is_file()


def test_outputs_are_the_overlay_then_every_registered_format():
    assert OUTPUTS == ("overlay", *FORMATS)
    assert check_outputs(["all"]) == list(OUTPUTS)
    with pytest.raises(BadRequestError, match="Choose from: " + re.escape(", ".join(OUTPUTS))):
        check_outputs(["overlay,kitti"])


def test_the_cli_names_every_output():
    segment = _parser()._subparsers._group_actions[0].choices["segment"]
    (outputs,) = [a for a in segment._actions if "--outputs" in a.option_strings]
    assert ", ".join(OUTPUTS) in outputs.help


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def test_the_readme_table_lists_exactly_the_registered_formats():
    text = _readme()
    table = text[text.index("| format | files | opens in |"):]
    table = table[:table.index("\n\n")]
    names = [m.group(1) for m in re.finditer(r"^\| `([a-z]+)` \|", table, flags=re.M)]
    assert sorted(names) == sorted(FORMATS) and len(names) == len(set(names))


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_describes_its_row_of_the_readme_table(name):
    writer = FORMATS[name]
    for said in (writer.described, writer.opens_in):
        assert isinstance(said, str) and said.strip() == said and said, "one line of markdown"
        assert "|" not in said and "\n" not in said, "a table cell: no bar, no line break"


def test_the_readme_table_is_made_from_the_writers():
    """The README's table between its formats:start and formats:end comments is formats_table():
    a writer's description changed without the README (or the README's table edited by hand)
    fails here; `python .ci/readme_formats.py` rewrites the README's block."""
    text = _readme()
    start, end = text.index(FORMATS_TABLE_START), text.index(FORMATS_TABLE_END)
    assert text[start + len(FORMATS_TABLE_START):end].strip() == formats_table()
    assert with_formats_table(text) == text


def test_the_readme_names_every_output_where_it_lists_them():
    """The CLI's usage line and the SAM3_APP_OUTPUTS setting list the outputs as the code has them."""
    listed = re.findall(r"overlay,[a-z,]+", _readme())
    assert len(listed) >= 2 and set(listed) == {",".join(OUTPUTS)}
