"""Shared fixtures: the small random SAM3 is built once per test run, loaded through the same code
as the real model, and the real clips come from ../shared/media (or $SAM3_MEDIA)."""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # labelme (used to read our files back) imports Qt
warnings.filterwarnings("ignore", message=".*kernels.*")

from tests.media import media_dir  # noqa: E402


@pytest.fixture(scope="session")
def media() -> str:
    return media_dir()


@pytest.fixture(scope="session")
def carphone(media) -> str:
    return os.path.join(media, "carphone_pristine.mp4")


@pytest.fixture(scope="session")
def test_model_dir(tmp_path_factory) -> str:
    from sam3_video.testmodel import make_test_model

    return make_test_model(tmp_path_factory.mktemp("sam3-small"))


@pytest.fixture(scope="session")
def backend(test_model_dir):
    from sam3_video.backends import load_backend

    return load_backend(test_model_dir, backend="auto", device="cpu")
