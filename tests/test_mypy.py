"""The package and the app type-check clean with the project's own mypy configuration
([tool.mypy] in pyproject.toml: which files, which libraries are read as untyped)."""

from __future__ import annotations

import os

from mypy import api

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_finds_nothing(monkeypatch):
    monkeypatch.chdir(REPO)  # the configuration's `files` are relative to the repository
    out, err, status = api.run(["--config-file", "pyproject.toml", "--no-error-summary"])
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert errors == [] and status == 0, out + err
