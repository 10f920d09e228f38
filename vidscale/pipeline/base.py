"""The 1x stage of generation: VideoCrafter2's own text-to-video sampling at its base size."""

from __future__ import annotations

import torch

from ..model import VideoCrafter2
from ..model.solvers import make_solver
from ..progress import Progress
from .denoise import DenoiseHooks, EpsFn, StepHook, denoise


@torch.no_grad()
def sample_base(model: VideoCrafter2, eps_fn: EpsFn, noise: torch.Tensor, *, steps: int = 50, eta: float = 1.0,
                scheduler: str = "ddim", generator: torch.Generator,
                progress: Progress | None = None, after_step: StepHook | None = None) -> torch.Tensor:
    """Full sampling from pure ``noise`` (1, 4, F, H/8, W/8) with VC2's schedule.

    ``eps_fn`` is the prompt's noise predictor (:func:`~vidscale.pipeline.conditioning.prompt_eps_fn`);
    VC2's reference: CFG 12 against the empty prompt with the same fps, DDIM 50 steps, eta 1.
    ``scheduler`` "dpm++2m" reaches the same quality in about half the steps (eta must be 0).
    ``after_step`` sees (and may replace) the latents after every step (a pipeline's callback).
    """
    latents = noise.to(model.device, torch.float32)
    solver = make_solver(scheduler, model.schedule, eta=eta, generator=generator)
    return denoise(eps_fn, solver, latents, model.schedule.timesteps(steps), num_steps=steps,
                   hooks=DenoiseHooks(after_step=after_step), progress=progress, desc="base")
