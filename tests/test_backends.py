"""Loading: the same code loads the small model and the real one; failures are one sentence."""

from __future__ import annotations

import pytest

from sam3_video.backends import load_backend, prepare_hub_model
from sam3_video.errors import ModelUnavailableError


def test_backend_is_loaded_once_per_process(test_model_dir, backend):
    again = load_backend(test_model_dir, backend="transformers", device="cpu", dtype="auto")
    assert again is backend
    assert backend.name == "transformers" and backend.device == "cpu"
    # the thresholds saved in the small model's config are read back through from_pretrained
    assert backend.default_thresholds == pytest.approx((0.44, 0.46))


@pytest.mark.parametrize(
    "model, reason",
    [
        ("facebook/sam3", "HF_HUB_OFFLINE is set"),
        ("bad id!!", "not a hub repository id"),
        ("./no/such/folder", "no such file or folder"),
    ],
)
def test_unloadable_models_raise_one_sentence(model, reason):
    with pytest.raises(ModelUnavailableError) as caught:
        load_backend(model, device="cpu")
    text = str(caught.value)
    assert reason in text and model in text and "HF_TOKEN" in text and "make-test-model" in text
    assert "\n" not in text


def test_local_folders_skip_the_hub(test_model_dir):
    assert prepare_hub_model(test_model_dir, ("model.safetensors",)) is False
