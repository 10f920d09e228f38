"""The denoising loop shared by generation and upscaling, with hooks for the FreeScale pieces."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..progress import Progress

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]  # (latents (B, C, F, H, W), t) -> noise
StepHook = Callable[[int, int, torch.Tensor], torch.Tensor]


@dataclass
class DenoiseHooks:
    """Optional per-step hooks; ``i`` is the index in the FULL schedule (so tau comparisons work)."""

    before_model: StepHook | None = None  # detail control, chunk anchoring
    model_context: Callable[[int, int], AbstractContextManager] | None = None  # dilation on/off
    guide_z0: StepHook | None = None  # structure guidance on the predicted clean latent
    after_step: StepHook | None = None


@torch.no_grad()
def denoise(eps_fn: EpsFn, schedule, latents: torch.Tensor, timesteps: Sequence[int], *, num_steps: int,
            eta: float = 0.0, generator: torch.Generator | None = None, hooks: DenoiseHooks | None = None,
            progress: Progress | None = None, desc: str = "steps") -> torch.Tensor:
    """Run DDIM over ``timesteps`` (a tail of ``schedule.timesteps(num_steps)``) from ``latents``."""
    hooks = hooks or DenoiseHooks()
    progress = progress or Progress(enabled=False)
    offset = num_steps - len(timesteps)
    x = latents
    with progress.bar(desc, total=len(timesteps), unit="step") as bar:
        for k, t in enumerate(timesteps):
            i = offset + k
            if hooks.before_model:
                x = hooks.before_model(i, t, x)
            with hooks.model_context(i, t) if hooks.model_context else nullcontext():
                eps = eps_fn(x, t)
            z0 = hooks.guide_z0(i, t, schedule.pred_x0(x, eps, t)) if hooks.guide_z0 else None
            x = schedule.step(eps, t, x, num_steps=num_steps, eta=eta, generator=generator, z0=z0).prev_sample
            if hooks.after_step:
                x = hooks.after_step(i, t, x)
            bar.update(1)
    return x
