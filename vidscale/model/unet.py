"""VideoCrafter2's UNet: diffusers' ``UNet3DConditionModel`` plus VC2's frame-rate conditioning.

VC2 embeds the requested fps with the same sinusoidal projection as the timestep, passes it
through its own two-layer MLP and ADDS it to the time embedding before that is repeated per
frame. diffusers has no slot for it, so the subclass computes the fps embedding for the call and
a forward hook on ``time_embedding`` adds it; everything else is the parent's forward, which is
why the attention processors that FreeScale installs work unchanged.

The constructor spells out the parent's parameters (``@register_to_config`` reads names from the
signature), so ``from_config``, ``save_pretrained`` / ``from_pretrained`` rebuild exactly the
model that ``.config`` describes. The fps embedding has no parameters of its own: it reads the
same sinusoidal projection as the timestep (width ``block_out_channels[0]``) and must produce the
time embedding's width (4x that), so both follow from the parent's config.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401 (diffusers' pipeline loader looks it up here)
from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel
from torch import nn

M = TypeVar("M", bound=nn.Module)


class VC2UNet(UNet3DConditionModel):
    """``UNet3DConditionModel`` whose forward also takes ``fps`` (VC2 was trained with it)."""

    @register_to_config
    def __init__(
        self,
        sample_size: int | tuple[int, int] | None = None,  # latent (h, w) VC2 was trained at: (40, 64)
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
        up_block_types: tuple[str, ...] = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1024,
        attention_head_dim: int | tuple[int, ...] = 64,
        num_attention_heads: int | tuple[int, ...] | None = None,
        time_cond_proj_dim: int | None = None,
    ):
        super().__init__(
            sample_size=sample_size, in_channels=in_channels, out_channels=out_channels,
            down_block_types=down_block_types, up_block_types=up_block_types,
            block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            downsample_padding=downsample_padding, mid_block_scale_factor=mid_block_scale_factor, act_fn=act_fn,
            norm_num_groups=norm_num_groups, norm_eps=norm_eps, cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim, num_attention_heads=num_attention_heads,
            time_cond_proj_dim=time_cond_proj_dim)
        width = self.config["block_out_channels"][0]
        self.fps_embedding = TimestepEmbedding(width, width * 4)
        self._fps_emb: torch.Tensor | None = None
        self.time_embedding.register_forward_hook(self._add_fps)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, **kwargs: Any) -> "VC2UNet":
        """diffusers' loader, but under half precision GroupNorm stays float32 and is never rounded.

        diffusers would cast every weight to ``torch_dtype`` (its ``_keep_in_fp32_modules`` matches
        module *names*, which would also catch the LayerNorms called ``norm1``, and needs
        accelerate), so the weights are read as stored in float32 and cast here instead.
        """
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        model = super().from_pretrained(pretrained_model_name_or_path, torch_dtype=torch.float32, **kwargs)
        return cast_keeping_group_norm(model, dtype) if dtype not in (None, torch.float32) else model

    def _add_fps(self, _module: nn.Module, _inputs: Any, emb: torch.Tensor) -> torch.Tensor:
        if self._fps_emb is None:
            raise RuntimeError("VC2UNet was called without fps=: VideoCrafter2 needs its frame-rate conditioning")
        return emb + self._fps_emb

    # VC2 cannot run without fps (see _add_fps): the override requires what its parent has no slot for
    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int,  # type: ignore[override]
                encoder_hidden_states: torch.Tensor, *, fps: torch.Tensor | int, **kwargs: Any):
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


def keep_group_norm_fp32(module: M) -> M:
    """Make every GroupNorm of ``module`` normalise in float32 (its parameters are kept in fp32).

    Under bf16/fp16 the statistics of large activations lose precision; VC2 upcasts them. Swapping
    the class keeps the state-dict keys, so loading and saving are unaffected.
    """
    for norm in module.modules():
        if type(norm) is nn.GroupNorm:
            norm.__class__ = FP32GroupNorm
            norm.float()
    return module


def cast_keeping_group_norm(module: M, dtype: torch.dtype) -> M:
    """Cast ``module``'s floating weights to ``dtype``, except GroupNorm's, which keep their float32
    values (not rounded and cast back) and normalise in float32 (:func:`keep_group_norm_fp32`)."""
    norms = {id(t) for m in module.modules() if isinstance(m, nn.GroupNorm) for t in m.parameters(recurse=False)}
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point() and id(tensor) not in norms:
            tensor.data = tensor.data.to(dtype)
    return keep_group_norm_fp32(module)
