"""The package's layering, read from its sources with `ast`: no import cycles, nothing inside the
package importing its root, the web side apart, writers sharing code only through export's own
helpers, and the version written once."""

from __future__ import annotations

import ast
import pathlib
import tomllib

import pytest

import sam3_video
from sam3_video.version import __version__

PACKAGE = pathlib.Path(sam3_video.__file__).parent
ROOT = PACKAGE.name


def _modules() -> dict[str, pathlib.Path]:
    """Every module's dotted name -> its file (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = (ROOT, *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, str]]:
    """What module `name` imports, anywhere in it (lazy imports too): (target, how it is written).
    `from X import y` counts as importing X.y when that is a module, else X."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, f"import {a.name}") for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                target = f"{base}.{alias.name}"
                written = f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                found.append((target if target in MODULES else base, written))
    return found


GRAPH = {name: {target for target, _ in _imports(name) if target != name} for name in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_the_package():
    assert _cycles(GRAPH) == []


def test_nothing_inside_the_package_imports_its_root():
    """The root (`sam3_video/__init__.py`) is the users' door; the version comes from version.py."""
    upward = [f"{name}: {written}" for name in MODULES if name != ROOT
              for target, written in _imports(name) if target == ROOT]
    assert upward == []


@pytest.mark.parametrize("engine", [m for m in MODULES if not m.startswith(f"{ROOT}.web")])
def test_only_the_web_side_imports_the_web_side(engine):
    assert [t for t in GRAPH[engine] if t.startswith(f"{ROOT}.web")] == []


@pytest.mark.parametrize("writer", [m for m in MODULES if m.startswith(f"{ROOT}.export.")])
def test_writers_share_code_only_through_export_helpers(writer):
    """A format borrows nothing from another format (shared outlines live in export/outlines.py),
    and no writer imports the engine (model, session, pipeline) or a door."""
    shared = {f"{ROOT}.export.base", f"{ROOT}.export.outlines"}
    siblings = {t for t in GRAPH[writer] if t.startswith(f"{ROOT}.export")} - shared
    assert siblings == set()
    engine = {f"{ROOT}.{m}" for m in ("backends", "session", "pipeline", "cli", "batch", "cluster", "writing")}
    assert {t for t in GRAPH[writer] if t in engine or t.startswith(f"{ROOT}.backends.")} == set()


def test_the_version_is_written_once():
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": f"{ROOT}.version.__version__"}
    assert sam3_video.__version__ == __version__
    written = [p.relative_to(PACKAGE).as_posix() for p in MODULES.values()
               if "__version__ =" in p.read_text(encoding="utf-8")]
    assert written == ["version.py"]
