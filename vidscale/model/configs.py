"""Component configs read from the tensors' shapes, and the tiny test configs.

Reading widths from shapes (instead of hard-coding VC2's) lets one converter handle the real
checkpoint and the reduced-width checkpoints that tests write in the same original layout. The
few numbers shapes cannot tell are VC2 constants: GroupNorm with 32 groups, the first temporal
attention (``init_attn``) with 8 heads (so its width gives the head size), and 64-channel heads
in the OpenCLIP text tower.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping

import torch

from ..errors import CheckpointError

LATENT_SCALE = 0.18215
BASE_LATENT = [40, 64]  # VC2 was trained at 320x512: the UNet config's sample_size
INIT_ATTN_HEADS = 8
TEXT_HEAD_CHANNELS = 64


def _shape(state: Mapping[str, torch.Tensor], key: str, component: str) -> torch.Size:
    if key not in state:
        raise CheckpointError(f"{component}: tensor {key!r} is missing: the checkpoint is incomplete "
                              "or not VideoCrafter2")
    return state[key].shape


def unet_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``VC2UNet`` config from the original UNet tensors (prefix stripped)."""
    shape = partial(_shape, state, component="unet")
    downsamplers = [i for i in range(1, 64) if f"input_blocks.{i}.0.op.weight" in state]
    if not downsamplers:
        raise CheckpointError("unet: no downsampler (input_blocks.N.0.op) found: not a VideoCrafter2 UNet")
    layers = downsamplers[0] - 1
    levels = sum(1 for level in range(16) if f"input_blocks.{1 + level * (layers + 1)}.0.in_layers.0.weight" in state)
    first = [1 + level * (layers + 1) for level in range(levels)]
    widths = [shape(f"input_blocks.{i}.0.out_layers.3.weight")[0] for i in first]
    attention = [f"input_blocks.{i}.1.proj_in.weight" in state for i in first]
    down = ["CrossAttnDownBlock3D" if a else "DownBlock3D" for a in attention]
    up = ["CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(attention)]
    context = shape(f"input_blocks.{first[attention.index(True)]}.1.transformer_blocks.0.attn2.to_k.weight")[1]
    shape("fps_embedding.0.weight")
    return {"sample_size": BASE_LATENT,
            "in_channels": shape("input_blocks.0.0.weight")[1], "out_channels": shape("out.2.weight")[0],
            "down_block_types": down, "up_block_types": up, "block_out_channels": widths,
            "layers_per_block": layers, "cross_attention_dim": context, "norm_num_groups": 32,
            "attention_head_dim": shape("init_attn.0.proj_in.weight")[0] // INIT_ATTN_HEADS}


def vae_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``AutoencoderKL`` config from the original (LDM) VAE tensors."""
    shape = partial(_shape, state, component="vae")
    levels = sum(1 for level in range(16) if f"encoder.down.{level}.block.0.conv1.weight" in state)
    layers = sum(1 for block in range(16) if f"encoder.down.0.block.{block}.conv1.weight" in state)
    return {"in_channels": shape("encoder.conv_in.weight")[1], "out_channels": shape("decoder.conv_out.weight")[0],
            "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": [shape(f"encoder.down.{level}.block.0.conv1.weight")[0] for level in range(levels)],
            "layers_per_block": layers, "latent_channels": shape("post_quant_conv.weight")[0],
            "norm_num_groups": 32, "scaling_factor": LATENT_SCALE}


def text_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """``CLIPTextConfig`` of the tower up to the penultimate block (VC2's ``layer="penultimate"``)."""
    shape = partial(_shape, state, component="text encoder")
    vocab, width = shape("token_embedding.weight")
    blocks = sum(1 for i in range(256) if f"transformer.resblocks.{i}.ln_1.weight" in state)
    if blocks < 2:
        raise CheckpointError(f"text encoder: {blocks} transformer blocks; VC2's tower reads the penultimate one")
    return {"vocab_size": vocab, "hidden_size": width, "num_hidden_layers": blocks - 1,
            "intermediate_size": shape("transformer.resblocks.0.mlp.c_fc.weight")[0],
            "num_attention_heads": max(1, width // TEXT_HEAD_CHANNELS),
            "max_position_embeddings": shape("positional_embedding")[0], "hidden_act": "gelu",
            "layer_norm_eps": 1e-5, "projection_dim": width,
            "pad_token_id": 0, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}


# Tiny configs: the same classes at toy widths, for tests and `--model tiny`.
TINY_UNET: dict[str, Any] = {
    "sample_size": [8, 8], "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 2, "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
    "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
    "cross_attention_dim": 32, "norm_num_groups": 32, "attention_head_dim": 8}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32, "scaling_factor": LATENT_SCALE}
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 514, "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64,
    "num_attention_heads": 1, "max_position_embeddings": 77, "hidden_act": "gelu",
    "layer_norm_eps": 1e-5, "projection_dim": 32, "pad_token_id": 0, "bos_token_id": 512,
    "eos_token_id": 513}

# VideoCrafter2's real configs (what the converter reads from model.ckpt), for `--model random`:
# diffusers' default UNet3D (+ fps), the SD 2.x VAE and the OpenCLIP ViT-H text tower up to its
# penultimate block (23 of 24 layers).
VC2_UNET: dict[str, Any] = {
    "sample_size": BASE_LATENT, "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2, "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
    "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
    "cross_attention_dim": 1024, "norm_num_groups": 32, "attention_head_dim": 64}
VC2_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32, "scaling_factor": LATENT_SCALE}
VC2_TEXT: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 1024, "num_hidden_layers": 23, "intermediate_size": 4096,
    "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu",
    "layer_norm_eps": 1e-5, "projection_dim": 1024, "pad_token_id": 0, "bos_token_id": 49406,
    "eos_token_id": 49407}
