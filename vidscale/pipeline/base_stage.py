"""The 1x stage: the model's own text-to-video sampling at its base size, and its own video-to-video."""

from __future__ import annotations

import torch
from diffusers.utils.torch_utils import randn_tensor

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


@torch.no_grad()
def sample_from(backend: Backend, eps_fn: EpsFn, z0: torch.Tensor, *, steps: int, strength: float,
                scheduler: str = "auto", generator: torch.Generator, progress: Progress | None = None,
                after_step: StepHook | None = None) -> torch.Tensor:
    """The model's own video-to-video at its size, as diffusers' video-to-video pipelines run it:
    the clean latent ``z0`` (1, C, f, h, w) re-noised with one draw from ``generator`` to step
    ``steps - int(steps * strength)`` of the schedule, then the remaining steps (a fresh solver:
    its first step has no history)."""
    timesteps = backend.schedule.timesteps(steps)
    start = steps - min(int(steps * strength), steps)
    if start >= steps:
        raise ValueError(f"strength {strength} with {steps} steps leaves no step to run")
    noise = randn_tensor(z0.shape, generator=generator, device=backend.device, dtype=torch.float32)
    latents = backend.schedule.q_sample(z0.to(backend.device, torch.float32), timesteps[start], noise)
    solver = backend.schedule.solver(scheduler, generator=generator)
    return denoise(eps_fn, solver, latents, timesteps[start:], num_steps=steps,
                   hooks=DenoiseHooks(after_step=after_step), progress=progress, desc="steps")
