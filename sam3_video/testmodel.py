"""A small, randomly initialised SAM3 saved in the same on-disk format as `facebook/sam3`.

`make_test_model(DIR)` writes config.json + model.safetensors (a `Sam3VideoModel`) and the
processor files (image and video processors, a real CLIP tokenizer built from open_clip's BPE
vocabulary), exactly what `save_pretrained` writes for the real model. Loading it goes through
the same code as the real model (`--model DIR`). It has about 8M parameters and a 112 px input,
so the whole video path runs on a CPU in tests, benchmarks and demos without the gated weights.

Its masks are meaningless. To make it report objects, the random detection scores are spread out
(the scoring projections are scaled) and the thresholds saved in its config are set so that a few
detections per phrase pass and keep matching their tracks from frame to frame.
"""

from __future__ import annotations

import gzip
import importlib.util
import os

# Input size and widths: the smallest that every sub-module of SAM3 accepts (hidden sizes must be
# multiples of the tracker's 64-channel memory; the tracker's image size must be given explicitly).
IMAGE_SIZE = 112
PATCH = 14
HIDDEN = 128
# Score spread and thresholds that give each phrase a few stable objects on real footage; the
# object cap keeps a random model from tracking dozens of spurious objects (slow on a CPU).
SCORE_SCALE = 8.0
THRESHOLDS = dict(score_threshold_detection=0.44, new_det_thresh=0.46, trk_assoc_iou_thresh=0.1, max_num_objects=8)


def clip_bpe_path() -> str:
    """open_clip ships the CLIP BPE vocabulary that SAM3's tokenizer uses."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open-clip-torch is not installed; it ships the CLIP vocabulary. pip install open-clip-torch")
    return os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")


def build_clip_tokenizer(bpe_path: str | None = None, max_length: int = 32):
    """The CLIP tokenizer (49408 tokens) from the BPE merges file, as OpenAI's CLIP builds it."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    with gzip.open(bpe_path or clip_bpe_path(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


# The real SAM3's layer counts (facebook/sam3's config), for `full_depth`: a model that dispatches
# the same ops per frame as the real one at the small model's widths and input size.
FULL_DEPTH = dict(vit_layers=32, global_attn=[7, 15, 23, 31], detr_encoder_layers=6, detr_decoder_layers=6,
                  queries=200, geometry_layers=3, memory_attention_layers=4, memory_fuser_layers=2, text_layers=24,
                  max_num_objects=64)
SMALL_DEPTH = dict(vit_layers=2, global_attn=[1], detr_encoder_layers=1, detr_decoder_layers=1, queries=20,
                   geometry_layers=1, memory_attention_layers=1, memory_fuser_layers=1, text_layers=2,
                   max_num_objects=THRESHOLDS["max_num_objects"])


def test_model_config(full_depth: bool = False):
    """The small model's config; `full_depth` gives it the real model's layer counts (same widths)."""
    from transformers import Sam3VideoConfig

    depth = FULL_DEPTH if full_depth else SMALL_DEPTH
    grid = IMAGE_SIZE // PATCH
    vision = dict(
        model_type="sam3_vision_model",
        backbone_config=dict(
            model_type="sam3_vit_model", hidden_size=96, intermediate_size=192, num_hidden_layers=depth["vit_layers"],
            num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH, window_size=4,
            global_attn_indexes=depth["global_attn"], pretrain_image_size=IMAGE_SIZE,
        ),
        fpn_hidden_size=HIDDEN,
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )
    small = dict(hidden_size=HIDDEN, num_attention_heads=2)
    detector = dict(
        model_type="sam3",
        vision_config=vision,
        text_config=dict(model_type="clip_text_model", hidden_size=64, intermediate_size=128,
                         projection_dim=HIDDEN, num_hidden_layers=depth["text_layers"], num_attention_heads=2),
        geometry_encoder_config=dict(model_type="sam3_geometry_encoder", num_layers=depth["geometry_layers"],
                                     intermediate_size=2 * HIDDEN, **small),
        detr_encoder_config=dict(model_type="sam3_detr_encoder", num_layers=depth["detr_encoder_layers"],
                                 intermediate_size=2 * HIDDEN, **small),
        detr_decoder_config=dict(model_type="sam3_detr_decoder", num_layers=depth["detr_decoder_layers"],
                                 num_queries=depth["queries"], intermediate_size=2 * HIDDEN, **small),
        mask_decoder_config=dict(model_type="sam3_mask_decoder", **small),
    )
    tracker = dict(
        model_type="sam3_tracker_video",
        vision_config=vision,
        image_size=IMAGE_SIZE,
        prompt_encoder_config=dict(model_type="sam3_tracker_video_prompt_encoder", hidden_size=HIDDEN,
                                   image_size=IMAGE_SIZE, patch_size=PATCH),
        mask_decoder_config=dict(model_type="sam3_tracker_video_mask_decoder", mlp_dim=2 * HIDDEN,
                                 iou_head_hidden_dim=HIDDEN, **small),
        memory_attention_hidden_size=HIDDEN,
        memory_attention_num_layers=depth["memory_attention_layers"],
        memory_attention_feed_forward_hidden_size=2 * HIDDEN,
        memory_attention_rope_feat_sizes=[grid, grid],
        memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=HIDDEN,
        memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=2 * HIDDEN,
        memory_fuser_num_layers=depth["memory_fuser_layers"],
    )
    thresholds = dict(THRESHOLDS, max_num_objects=depth["max_num_objects"])
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * grid, **thresholds)
    config.architectures = ["Sam3VideoModel"]
    return config


def _processor(image_size: int):
    from transformers import Sam3VideoProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    try:
        from transformers.models.sam3.image_processing_sam3 import Sam3ImageProcessor
    except ImportError:  # older transformers 5.x name it "Fast" (a module the installed one lacks)
        from transformers.models.sam3.image_processing_sam3_fast import (  # type: ignore[import-not-found]
            Sam3ImageProcessorFast as Sam3ImageProcessor,
        )

    mask = image_size * 2 // 7  # 288 for the real 1008 px input, 32 for 112 px
    return Sam3VideoProcessor(
        image_processor=Sam3ImageProcessor(
            size={"height": image_size, "width": image_size}, mask_size={"height": mask, "width": mask}
        ),
        video_processor=Sam2VideoVideoProcessor(
            image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"height": image_size, "width": image_size}
        ),
        tokenizer=build_clip_tokenizer(),
    )


def make_test_model(out_dir: str | os.PathLike, seed: int = 0, full_size: bool = False, device: str = "cpu",
                    full_depth: bool = False, score_spread: bool = True) -> str:
    """Build, save and return the path of a random SAM3 (deterministic for a seed).

    `full_size=True` builds the real architecture (848M parameters, 1008 px, 3.4 GB on disk) with
    random weights, for speed and memory measurements on a GPU; thresholds are the model's own.
    `full_depth=True` keeps the small widths and 112 px input but takes the real layer counts
    (ViT 32 layers, DETR 6+6 with 200 queries, memory attention 4, ...; `FULL_DEPTH`): it
    dispatches the real model's ops per frame, for counting them on a CPU. `score_spread=False`
    leaves the random detection scores as initialised (few or no detections at the thresholds).
    """
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel

    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    if full_size:
        config = Sam3VideoConfig()
        config.architectures = ["Sam3VideoModel"]
    else:
        config = test_model_config(full_depth=full_depth)
    with torch.device(device):
        model = Sam3VideoModel(config).eval()
    if not full_size and score_spread:
        with torch.no_grad():
            scoring = model.detector_model.dot_product_scoring
            for name, param in scoring.named_parameters():
                if name.endswith("query_proj.weight") or name.endswith("text_proj.weight"):
                    param.mul_(SCORE_SCALE)
    model.save_pretrained(out_dir)
    _processor(config.image_size).save_pretrained(out_dir)
    return out_dir
