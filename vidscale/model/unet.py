"""VideoCrafter2's UNet: diffusers' ``UNet3DConditionModel`` plus VC2's frame-rate conditioning.

VC2 embeds the requested fps with the same sinusoidal projection as the timestep, passes it
through its own two-layer MLP and ADDS it to the time embedding before that is repeated per
frame. diffusers has no slot for it, so the subclass computes the fps embedding for the call and
a forward hook on ``time_embedding`` adds it; everything else is the parent's forward, which is
why the attention processors that FreeScale installs work unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from diffusers.models.embeddings import TimestepEmbedding
from torch import nn


class VC2UNet(UNet3DConditionModel):
    """``UNet3DConditionModel`` whose forward also takes ``fps`` (VC2 was trained with it)."""

    def __init__(self, **config: Any):
        super().__init__(**config)
        width = self.config.block_out_channels[0]
        self.fps_embedding = TimestepEmbedding(width, width * 4)
        self._fps_emb: torch.Tensor | None = None
        self.time_embedding.register_forward_hook(self._add_fps)

    def _add_fps(self, _module: nn.Module, _inputs: Any, emb: torch.Tensor) -> torch.Tensor:
        if self._fps_emb is None:
            raise RuntimeError("VC2UNet was called without fps=: VideoCrafter2 needs its frame-rate conditioning")
        return emb + self._fps_emb

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int, encoder_hidden_states: torch.Tensor,
                *, fps: torch.Tensor | int, **kwargs: Any):
        fps = torch.as_tensor(fps, device=sample.device).reshape(-1).expand(sample.shape[0])
        self._fps_emb = self.fps_embedding(self.time_proj(fps).to(self.dtype))
        try:
            return super().forward(sample, timestep, encoder_hidden_states, **kwargs)
        finally:
            self._fps_emb = None


class FP32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype, as VC2 does under mixed precision."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def keep_group_norm_fp32(module: nn.Module) -> nn.Module:
    """Make every GroupNorm of ``module`` normalise in float32 (its parameters are kept in fp32).

    Under bf16/fp16 the statistics of large activations lose precision; VC2 upcasts them. Swapping
    the class keeps the state-dict keys, so loading and saving are unaffected.
    """
    for norm in module.modules():
        if type(norm) is nn.GroupNorm:
            norm.__class__ = FP32GroupNorm
            norm.float()
    return module
