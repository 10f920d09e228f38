"""Prompt conditioning shared by generation and upscaling: the UNet as a CFG noise predictor."""

from __future__ import annotations

import torch

from ..model import VideoCrafter2
from ..model.unet import VC2UNet
from ..settings import SamplingSettings
from .denoise import EpsFn


def guided_eps_fn(unet: VC2UNet, cond: torch.Tensor, uncond: torch.Tensor | None, *, guidance_scale: float,
                  fps: int) -> EpsFn:
    """Noise prediction with classifier-free guidance in ONE batched UNet call.

    ``uncond`` is the empty prompt's features (VC2 guides against the empty string, with the
    same fps); without it (scale <= 1) the prompt alone is used. The UNet runs in its own dtype
    (bf16 on CUDA); the latents and the guidance arithmetic stay float32, so the sampler's small
    per-step updates are not rounded away.
    """
    context = cond if uncond is None else torch.cat([uncond, cond])

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        batch = x if uncond is None else torch.cat([x, x])
        timestep = torch.full((batch.shape[0],), t, device=x.device, dtype=torch.int64)
        states = context.repeat_interleave(x.shape[0], dim=0)  # [uncond] * B + [cond] * B, like batch
        out = unet(batch.to(unet.dtype), timestep, states, fps=fps, return_dict=False)[0].to(x.dtype)
        if uncond is None:
            return out
        eps_uncond, eps_cond = out.chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    return eps


@torch.no_grad()
def prompt_eps_fn(model: VideoCrafter2, sampling: SamplingSettings, *, fps: int) -> EpsFn:
    """The UNet's noise prediction for the settings' prompt, guided against the negative prompt
    (one batched CFG call if the guidance scale is > 1)."""
    cond = model.encode_prompt([sampling.prompt])
    uncond = model.encode_prompt([sampling.negative_prompt]) if sampling.guidance_scale > 1 else None
    return guided_eps_fn(model.unet, cond, uncond, guidance_scale=sampling.guidance_scale, fps=fps)
