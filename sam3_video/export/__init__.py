"""Annotation formats, by name, and the `annotations/` folder + `annotations.zip` they make.

    writer = Annotations(out_dir, ["coco", "mot"], context)
    for frame in frames: writer.write(frame)   # EncodedFrame, in any order
    writer.close(manifest)                     # files final, manifest.json written, zip made

Each writer says what its files hold and what opens them (`described`, `opens_in`);
`formats_table()` makes the README's table of formats from them, between the README's
FORMATS_TABLE_START and FORMATS_TABLE_END comments (`python .ci/readme_formats.py` rewrites it,
tests/test_export_contract.py checks it). docs/formats.md says, per format, which tool reads it
and how.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Sequence

from ..errors import BadRequestError
from ..results import EncodedFrame
from ..runfolder import ANNOTATIONS, ANNOTATIONS_MANIFEST, ANNOTATIONS_ZIP, zip_folder
from .base import Categories, ExportContext, Writer
from .coco import CocoWriter
from .cvat import CvatWriter
from .davis import DavisWriter
from .labelme import LabelmeWriter
from .mot import MotsWriter, MotWriter
from .ytvis import YtvisWriter

FORMATS: dict[str, type[Writer]] = {  # the one list of formats: CLI, SAM3_APP_OUTPUTS and README follow it
    "coco": CocoWriter,
    "ytvis": YtvisWriter,
    "mot": MotWriter,
    "mots": MotsWriter,
    "labelme": LabelmeWriter,
    "davis": DavisWriter,
    "cvat": CvatWriter,
}
#: what a run may write besides results.jsonl and run.json: the overlay video (overlay.py), then every format
OUTPUTS: tuple[str, ...] = ("overlay", *FORMATS)
FOLDER, ZIP, MANIFEST = ANNOTATIONS, ANNOTATIONS_ZIP, ANNOTATIONS_MANIFEST  # the run folder's names (runfolder.py)

FORMATS_TABLE_START, FORMATS_TABLE_END = "<!-- formats:start -->", "<!-- formats:end -->"  # in the README

__all__ = ["FORMATS", "OUTPUTS", "Annotations", "Categories", "ExportContext", "Writer", "get_writer", "check_formats",
           "check_outputs", "formats_table", "with_formats_table"]


def check_formats(names: Sequence[str]) -> list[str]:
    """Validate format names ('all' means every one); order kept, repeats dropped."""
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        if name == "all":
            out.extend(FORMATS)
        elif name in FORMATS:
            out.append(name)
        elif name:
            raise BadRequestError(f"Unknown annotation format '{name}'. Choose from: {', '.join(FORMATS)} (or all).")
    return list(dict.fromkeys(out))


def check_outputs(outputs: Sequence[str]) -> list[str]:
    """['overlay,coco'] or ['all'] -> the output names, checked ('overlay' first, then formats)."""
    names = [n.strip().lower() for item in outputs for n in str(item).split(",") if n.strip()]
    overlay = "overlay" in names or "all" in names
    try:
        formats = check_formats([n for n in names if n != "overlay"])
    except BadRequestError:
        raise BadRequestError(
            f"Unknown output in '{', '.join(names)}'. Choose from: {', '.join(OUTPUTS)} (or all)."
        ) from None
    return (["overlay"] if overlay else []) + formats


def formats_table() -> str:
    """The README's table of formats, a row per registered format in FORMATS order (markdown)."""
    rows = [f"| `{name}` | {writer.described} | {writer.opens_in} |" for name, writer in FORMATS.items()]
    return "\n".join(["| format | files | opens in |", "|---|---|---|", *rows])


def with_formats_table(text: str) -> str:
    """`text` (the README) with `formats_table()` between its FORMATS_TABLE_START and
    FORMATS_TABLE_END lines, in place of what was there."""
    try:
        start = text.index(FORMATS_TABLE_START) + len(FORMATS_TABLE_START)
        end = text.index(FORMATS_TABLE_END, start)
    except ValueError:
        raise ValueError(f"the text has no {FORMATS_TABLE_START} ... {FORMATS_TABLE_END} block") from None
    return f"{text[:start]}\n\n{formats_table()}\n\n{text[end:]}"


def get_writer(name: str, folder: str, context: ExportContext) -> Writer:
    return FORMATS[name](folder, context)


class Annotations:
    """Every chosen format at once: one sink for the pipeline.

    `mine`: the formats this object writes, when other processes write the rest (writing.py's lanes):
    the object that makes the folder (`clean`) writes none and finishes it (`finish`: manifest.json
    with every format's facts, the zip); each lane's writes its share (`clean=False`) and hands its
    facts over (`close_writers`)."""

    def __init__(self, out_dir: str, formats: Sequence[str], context: ExportContext,
                 mine: Sequence[str] | None = None, clean: bool = True):
        self.out_dir = out_dir
        self.folder = os.path.join(out_dir, FOLDER)
        self.zip_path = os.path.join(out_dir, ZIP)
        if clean:
            shutil.rmtree(self.folder, ignore_errors=True)  # a rerun into the same folder starts clean
            if os.path.exists(self.zip_path):
                os.remove(self.zip_path)
        os.makedirs(self.folder, exist_ok=not clean)
        self.context = context
        self.formats = check_formats(formats)
        self.writers = {name: get_writer(name, self.folder, context)
                        for name in (self.formats if mine is None else check_formats(mine))}
        self.frames = 0
        self._closed = False

    def write(self, frame: EncodedFrame) -> None:
        for writer in self.writers.values():
            writer.write(frame)
        self.frames += 1

    def close_writers(self) -> tuple[dict[str, dict | None], list[str]]:
        """Finish this object's formats: each one's manifest facts (None: none, or it failed) and a
        sentence per format that failed."""
        facts: dict[str, dict | None] = {}
        errors = []
        for name, writer in self.writers.items():
            try:
                writer.close()
                facts[name] = writer.manifest()  # what a format's reader must know (id maps, limits)
            except Exception as err:  # one broken format must not cost the others
                errors.append(f"{name}: {err}")
                facts[name] = None
        return facts, errors

    def close(self, manifest: dict | None = None) -> None:
        """Finish every format, write manifest.json and zip the folder (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.finish(manifest, *self.close_writers())

    def finish(self, manifest: dict | None, facts: dict[str, dict | None], errors: Sequence[str]) -> None:
        """Write manifest.json (the run's `manifest`, the categories, each format's files and `facts`)
        and zip the folder; raise when a format failed (`errors`)."""
        self._closed = True
        doc = dict(manifest or {})
        doc["categories"] = self.context.categories.as_list()
        doc["formats"] = {name: list(FORMATS[name].files) for name in self.formats}
        for name in self.formats:
            if facts.get(name) is not None:
                doc[name] = facts[name]
        if errors:
            doc["export_errors"] = list(errors)
        with open(os.path.join(self.folder, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, ensure_ascii=False)
        zip_folder(self.folder, self.zip_path)
        if errors:
            raise RuntimeError("some annotation formats could not be written: " + "; ".join(errors))
