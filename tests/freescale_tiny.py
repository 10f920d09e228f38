"""Tiny random UNet3DConditionModel with VC2's topology (4 levels, CrossAttnDown x3 + Down)."""

from __future__ import annotations

import torch
from diffusers import UNet3DConditionModel
from diffusers.models.attention_processor import Attention


def tiny_unet(seed: int = 0) -> UNet3DConditionModel:
    """~2.7 M parameters: widths (32, 32, 64, 64), head dim 8, cross-attention dim 16."""
    torch.manual_seed(seed)
    return UNet3DConditionModel(
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=16,
        attention_head_dim=8,
    ).eval()


def tiny_attention(channels: int = 16, heads: int = 2, seed: int = 0) -> Attention:
    """A lone self-attention layer like the UNet's attn1 (biases on, to catch projection mistakes)."""
    torch.manual_seed(seed)
    return Attention(channels, heads=heads, dim_head=channels // heads, bias=True, out_bias=True).eval()


def unet_inputs(frames: int, size: tuple[int, int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(1, 4, frames, *size, generator=generator)
    text = torch.randn(1, 5, 16, generator=generator)
    return sample, text
