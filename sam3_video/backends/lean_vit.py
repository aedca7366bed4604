"""SAM3's image encoder (the 32-layer ViT) with the same arithmetic in a third of the torch ops.

The image encoder runs once per frame and is most of a frame's ops: transformers' `Sam3ViTModel`
dispatches about 70 ops a layer (bench/results/ops-cpu.md, "encoder"), each a kernel launch or a
Python dispatch on a GPU, where a layer's arithmetic needs about 20. `install` gives the ViT a
forward that computes the same thing with fewer ops:

- the rotary position embedding's cos and sin are computed once per layer, at install, not on
  every frame (they depend only on the layer's fixed token grid), with the sign of the pairwise
  rotation folded into the sine, so that rotating is one `flip` instead of unbind/neg/stack;
- the query, key and value projections are one matrix product (the three weights concatenated
  once, Meta's `qkv` layout; q_proj/k_proj/v_proj stay as views of it, so loading weights still
  works and nothing is held twice), and the rotation runs on query and key together;
- consecutive windowed layers keep the tokens in window order instead of partitioning and
  un-partitioning around every layer (layer norms, projections, MLPs and residuals act per token,
  so the order does not matter to them); this is done only when the grid splits into whole
  windows (1008 px: 72 tokens a side, windows of 24), where no padding token takes part;
- no dropout ops (the model is in eval mode; with `training` set the original forward runs).

Same inputs, same weights: the encoder's output matches transformers' forward up to float rounding
of the fused matrix product (tests/test_lean_vit.py). `SAM3_LEAN_ENCODER=0` (or
`vit.lean_forward = False`) runs transformers' forward.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutput


def install(vit, enabled: bool = True) -> None:
    """Give `vit` (a transformers `Sam3ViTModel`, on its device) the lean forward; `enabled` sets
    whether it is used (`vit.lean_forward`, read at every call). The fused weights and the rotary
    tables are made here, once, as buffers that move with the model (none is saved with it)."""
    vit.lean_forward = bool(enabled)
    if hasattr(vit, "_transformers_forward"):
        return
    with torch.no_grad():
        for layer in vit.layers:
            _prepare(layer)
    vit._transformers_forward = vit.forward
    vit.forward = types.MethodType(_forward, vit)


def _prepare(layer) -> None:
    """One layer's fused qkv weight and bias (q_proj/k_proj/v_proj become views into them, so
    loading weights later reaches them) and its cos and signed sin tables."""
    attention = layer.attention
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    weight = torch.cat([p.weight for p in projections])
    bias = torch.cat([p.bias for p in projections])
    hidden = attention.hidden_size
    for i, p in enumerate(projections):
        p.weight = torch.nn.Parameter(weight[i * hidden:(i + 1) * hidden], requires_grad=p.weight.requires_grad)
        p.bias = torch.nn.Parameter(bias[i * hidden:(i + 1) * hidden], requires_grad=p.bias.requires_grad)
    attention.register_buffer("lean_qkv_weight", weight, persistent=False)
    attention.register_buffer("lean_qkv_bias", bias, persistent=False)
    cos, sin = layer.rotary_emb(weight, layer.position_ids)  # transformers' own: [1, tokens, head_dim], fp32
    tokens, dim = cos.shape[-2], cos.shape[-1]
    # rotate_pairwise(t) * sin == flip-pairs(t) * (sin * [-1, +1, -1, +1, ...]) exactly
    sign = torch.ones(dim, device=sin.device, dtype=sin.dtype)
    sign[0::2] = -1
    layer.register_buffer("lean_cos", cos.reshape(tokens, dim), persistent=False)
    layer.register_buffer("lean_sin", (sin * sign).reshape(tokens, dim), persistent=False)


def _forward(vit, pixel_values: torch.Tensor, **kwargs):
    if not vit.lean_forward or vit.training or kwargs.get("output_hidden_states") or kwargs.get("output_attentions") \
            or vit.config._attn_implementation not in ("sdpa", None):
        return vit._transformers_forward(pixel_values, **kwargs)
    config = vit.config
    x = vit.embeddings(pixel_values)  # [batch, tokens, channels]
    batch, channels = x.shape[0], x.shape[-1]
    height, width = pixel_values.shape[-2] // config.patch_size, pixel_values.shape[-1] // config.patch_size
    x = vit.layer_norm(x.view(batch, height, width, channels))
    windowed = False  # are the tokens in window order ([batch * windows, size, size, channels])?
    for index, layer in enumerate(vit.layers):
        size = layer.window_size
        if size > 0 and (height % size or width % size):  # padded windows: the layer's own way
            if windowed:
                x, windowed = _unpartition(x, vit.layers[index - 1].window_size, batch, height, width), False
            x = layer(x)
            continue
        if size > 0 and not windowed:
            x, windowed = _partition(x, size), True
        elif size == 0 and windowed:
            x, windowed = _unpartition(x, vit.layers[index - 1].window_size, batch, height, width), False
        x = _layer(layer, x)
    if windowed:
        x = _unpartition(x, vit.layers[-1].window_size, batch, height, width)
    return BaseModelOutput(last_hidden_state=x.reshape(batch, height * width, channels))


def _partition(x: torch.Tensor, size: int) -> torch.Tensor:
    batch, height, width, channels = x.shape
    x = x.view(batch, height // size, size, width // size, size, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size, size, channels)


def _unpartition(x: torch.Tensor, size: int, batch: int, height: int, width: int) -> torch.Tensor:
    x = x.view(batch, height // size, width // size, size, size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, -1)


def _layer(layer, x: torch.Tensor) -> torch.Tensor:
    """One `Sam3ViTLayer` on x [batch or windows, h, w, channels] (no padding inside)."""
    attention = layer.attention
    weight, bias, cos, sin = attention.lean_qkv_weight, attention.lean_qkv_bias, layer.lean_cos, layer.lean_sin
    if cos.dtype != torch.float32:  # the model was cast after install
        cos, sin = cos.float(), sin.float()
    n, h, w, channels = x.shape
    heads, dim = attention.num_attention_heads, attention.head_dim
    # [3, n, heads, tokens, dim]: q, k and v in the layout attention takes, in one permute
    qkv = F.linear(layer.layer_norm1(x), weight, bias).view(n, h * w, 3, heads, dim).permute(2, 0, 3, 1, 4)
    qk = qkv[:2]
    rotated = qk if qk.dtype == torch.float32 else qk.float()  # the rotation in fp32, as transformers does
    flipped = rotated.unflatten(-1, (dim // 2, 2)).flip(-1).flatten(-2)
    rotated = rotated * cos + flipped * sin
    if rotated.dtype != qkv.dtype:
        rotated = rotated.to(qkv.dtype)
    q, k = rotated.unbind(0)
    out = F.scaled_dot_product_attention(q, k, qkv[2], scale=attention.scaling)
    x = x + attention.o_proj(out.transpose(1, 2).reshape(n, h, w, channels))
    mlp = layer.mlp
    return x + mlp.fc2(mlp.activation_fn(mlp.fc1(layer.layer_norm2(x))))
