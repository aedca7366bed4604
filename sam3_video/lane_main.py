"""The process of one lane (lanes.py): `python -m sam3_video.lane_main`, its settings and then a
results line per frame on stdin, `w` / `e <sentence>` / `c <facts>` lines on stdout."""

from __future__ import annotations

import json
import sys

from .types import VideoInfo
from .writing import FileWriter, lower_priority


def main() -> None:
    """A lane's process: settings, then results lines, on stdin; see the module."""
    lower_priority()
    source, out = sys.stdin.buffer, sys.stdout.buffer
    settings = json.loads(source.readline())
    info = settings["info"]
    info["timestamps"] = tuple(info.get("timestamps") or ())
    writer = FileWriter(settings["out_dir"], settings["wanted"], VideoInfo(**info), settings["prompts"],
                        settings["first_frame"], settings["stride"], settings["offset"], processes=0, part=True)
    failed = False
    for line in source:
        if not failed:
            try:
                writer.write(json.loads(line))
            except Exception as err:  # later frames are not written; the files are still closed
                failed = True
                out.write(b"e " + json.dumps(f"{type(err).__name__}: {err}").encode("utf-8") + b"\n")
        if not failed:
            out.write(b"w\n")
        out.flush()
    error = writer.close(None)
    facts, errors = writer.part_facts
    out.write(b"c " + json.dumps({"facts": facts, "errors": errors,
                                  "error": None if error is None else f"{type(error).__name__}: {error}"}).encode("utf-8")
              + b"\n")
    out.flush()


if __name__ == "__main__":
    main()
