"""Prompt conditioning shared by generation and upscaling."""

from __future__ import annotations

import torch

from ..model import VideoCrafter2
from ..settings import SamplingSettings
from .denoise import EpsFn, guided_eps_fn


@torch.no_grad()
def prompt_eps_fn(model: VideoCrafter2, sampling: SamplingSettings, *, fps: int) -> EpsFn:
    """The UNet's noise prediction for the settings' prompt (one batched CFG call if scale > 1)."""
    cond = model.encode_prompt([sampling.prompt])
    uncond = model.encode_prompt([sampling.negative_prompt]) if sampling.guidance_scale > 1 else None
    return guided_eps_fn(model.unet, cond, uncond, guidance_scale=sampling.guidance_scale, fps=fps)
