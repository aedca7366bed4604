"""backends/lean_vit.py: the image encoder's lean forward gives transformers' output on the small
model and the full-depth one (real layer counts: windowed and global layers, 32 of them)."""

from __future__ import annotations

import pytest
import torch

from sam3_video.backends import lean_vit


@pytest.fixture(scope="module")
def full_depth_dir(tmp_path_factory) -> str:
    from sam3_video.testmodel import make_test_model

    return make_test_model(tmp_path_factory.mktemp("full-depth"), seed=1, full_depth=True, score_spread=False)


def _vit(model_dir, dtype):
    from transformers import Sam3VideoModel

    return Sam3VideoModel.from_pretrained(model_dir, dtype=dtype).eval().detector_model.vision_encoder.backbone


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("which", ["small", "full depth"])
def test_lean_forward_gives_transformers_output(test_model_dir, full_depth_dir, which, dtype):
    vit = _vit(test_model_dir if which == "small" else full_depth_dir, dtype)
    size = vit.config.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dtype)
    with torch.inference_mode():
        want = vit(pixels).last_hidden_state
        lean_vit.install(vit)
        got = vit(pixels).last_hidden_state
        again = vit(pixels).last_hidden_state  # from the kept tables and fused weights
    assert got.shape == want.shape and got.dtype == want.dtype
    # the same arithmetic in the same order: bitwise equal on the CPU (a GPU may round the fused
    # qkv product differently, hence the cosine below as the bound that matters)
    assert torch.equal(got, want)
    assert torch.equal(again, want)
    assert torch.nn.functional.cosine_similarity(got.float().flatten(), want.float().flatten(), dim=0) > 0.9999


def test_lean_forward_follows_weights_loaded_after_install(test_model_dir):
    vit = _vit(test_model_dir, torch.float32)
    pixels = torch.randn(1, 3, vit.config.image_size, vit.config.image_size)
    lean_vit.install(vit)
    with torch.inference_mode():
        vit(pixels)  # fuses q, k and v
    state = {k: torch.randn_like(v) * 0.02 if k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight")) else v
             for k, v in vit.state_dict().items()}
    vit.load_state_dict(state)
    with torch.inference_mode():
        got = vit(pixels).last_hidden_state
        vit.lean_forward = False
        want = vit(pixels).last_hidden_state
    assert torch.equal(got, want)


def test_the_original_forward_runs_where_the_lean_one_does_not_apply(test_model_dir):
    vit = _vit(test_model_dir, torch.float32)
    lean_vit.install(vit)
    pixels = torch.randn(1, 3, vit.config.image_size, vit.config.image_size)
    with torch.inference_mode():
        out = vit(pixels, output_hidden_states=True)  # per-layer outputs: transformers' forward
    assert out.hidden_states is not None and len(out.hidden_states) >= vit.config.num_hidden_layers
