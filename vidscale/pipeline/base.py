"""The 1x stage of generation: the model's own text-to-video sampling at its base size."""

from __future__ import annotations

import torch

from ..backends import Backend, EpsFn
from ..model.solvers import Solver
from ..progress import Progress
from .denoise import DenoiseHooks, StepHook, denoise


@torch.no_grad()
def sample_base(backend: Backend, eps_fn: EpsFn, noise: torch.Tensor, *, steps: int = 50, eta: float = 1.0,
                scheduler: str = "ddim", generator: torch.Generator,
                progress: Progress | None = None, after_step: StepHook | None = None,
                solver: Solver | None = None, resume: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Full sampling from pure ``noise`` (1, C, f, h, w) with the backend's schedule.

    ``eps_fn`` is the prompt's guided prediction (the backend's ``predictor``);
    VC2's reference: CFG 12 against the empty prompt with the same fps, DDIM 50 steps, eta 1.
    ``scheduler`` "dpm++2m" reaches the same quality in about half the steps (eta must be 0).
    ``after_step`` sees (and may replace) the latents after every step (a pipeline's callback,
    step checkpoints). ``solver``: the sampler to step with (default: a fresh one of
    ``scheduler``). ``resume = (done, latent)`` continues a run whose first ``done`` steps ended
    in ``latent``, with ``solver`` restored to its state then, as :func:`~.refine.refine` does.
    """
    latents = noise.to(backend.device, torch.float32)
    solver = solver or backend.schedule.solver(scheduler, eta=eta, generator=generator)
    timesteps = backend.schedule.timesteps(steps)
    if resume is not None:
        done, latents = resume
        timesteps = timesteps[done:]
    return denoise(eps_fn, solver, latents, timesteps, num_steps=steps,
                   hooks=DenoiseHooks(after_step=after_step), progress=progress, desc="base")
