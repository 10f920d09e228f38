"""The 1x stage of generation: VideoCrafter2's own text-to-video sampling at its base size."""

from __future__ import annotations

import torch

from ..model import VideoCrafter2
from ..progress import Progress
from .conditioning import prompt_eps
from .denoise import denoise


@torch.no_grad()
def sample_base(model: VideoCrafter2, prompt: str, *, negative_prompt: str = "", frames: int = 16,
                height: int = 320, width: int = 512, steps: int = 50, guidance_scale: float = 12.0,
                eta: float = 1.0, fps: int = 28, generator: torch.Generator, latents: torch.Tensor | None = None,
                progress: Progress | None = None) -> torch.Tensor:
    """Full DDIM sampling from pure noise (``latents``, or drawn from ``generator``): (1, 4, F, H/8, W/8).

    VC2's reference: CFG 12 against the empty prompt with the same fps, 50 steps, eta 1.
    """
    shape = (1, 4, frames, height // 8, width // 8)
    if latents is None:
        latents = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
    latents = latents.to(model.device, torch.float32)
    if tuple(latents.shape) != shape:
        raise ValueError(f"latents of shape {tuple(latents.shape)}, expected {shape}")
    eps_fn = prompt_eps(model, prompt, negative_prompt=negative_prompt, guidance_scale=guidance_scale, fps=fps)
    return denoise(eps_fn, model.schedule, latents, model.schedule.timesteps(steps), num_steps=steps, eta=eta,
                   generator=generator, progress=progress, desc="base")
