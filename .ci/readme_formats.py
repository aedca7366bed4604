"""Rewrite the README's table of annotation formats from the registered writers
(`sam3_video.export.formats_table`), between its `<!-- formats:start -->` and
`<!-- formats:end -->` lines: python .ci/readme_formats.py [README.md]. With --check it changes
nothing and exits 1 when the README is not up to date."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sam3_video.export import with_formats_table  # noqa: E402  (the checkout's own package)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [a for a in argv if a != "--check"]
    path = paths[0] if paths else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new = with_formats_table(text)
    if new == text:
        return 0
    if check:
        print(f"{path}: the table of formats is not the registered writers'; run python .ci/readme_formats.py")
        return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"{path}: table of formats rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
