"""The FreeScale high stage: re-noise an upsampled clean latent and denoise it at the target size.

Shared by upscaling (the reference is the clip itself) and generation (the reference is the
previous cascade stage). One call runs, per the settings:

1. ``x = q_sample(ref, t_restart, eps)`` with ONE noise draw per stage (``restart_fraction``);
2. at every step, before the UNet call, detail control ``x <- c(t) q_sample(ref, t, eps) + (1-c) x``;
3. restrained dilation for steps with index < ``dilate_tau * steps`` (the denoiser's ``step_patches``,
   :func:`vidscale.freescale.freescale_step`);
4. scale fusion and temporal windows installed around the whole stage;
5. structure guidance on the predicted clean latent (low band pulled toward the reference);
6. the step itself by ``sampling.scheduler`` (DDIM, or DPM-Solver++(2M), whose first step after
   the restart is first order: it has no earlier prediction to extrapolate from).

The noise prediction and the model patches come in a :class:`Denoiser`, so the same loop runs on
the real UNet and on the oracle denoiser of the tests.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from ..freescale import detail_control, guidance_weight_schedule, restart_index, structure_guidance
from ..model.solvers import Solver
from ..settings import Settings
from .denoise import DenoiseHooks, EpsFn, StepHook, denoise


@dataclass
class Denoiser:
    """A noise prediction plus the patches it runs under (nothing patched for an oracle)."""

    eps_fn: EpsFn
    stage_patches: Callable[[], AbstractContextManager] = nullcontext  # fusion, temporal windows
    # per step, by index in the full schedule: restrained dilation while early (freescale_step)
    step_patches: Callable[[int], AbstractContextManager] = lambda _i: nullcontext()


def refine(denoiser: Denoiser, schedule, reference: torch.Tensor, noise: torch.Tensor,
           settings: Settings, *, anchor: StepHook | None = None, alpha: torch.Tensor | None = None,
           generator: torch.Generator | None = None, progress=None, after_step: StepHook | None = None,
           solver: Solver | None = None, resume: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Denoise ``reference`` (1, C, F, H, W) from the restart step; returns the final latent.

    ``reference`` is also what detail control re-noises and what structure guidance steers to;
    ``anchor`` runs after detail control at every step (chunk anchoring); ``after_step`` sees (and
    may replace) the latents after every step (a pipeline's callback, step checkpoints).
    ``alpha``: a per-pixel detail exponent (:func:`vidscale.pipeline.detail.detail_alpha`) instead
    of ``settings.freescale.alpha``. ``solver``: the sampler to step with (default: a fresh one of
    ``sampling.scheduler``). ``resume = (done, latent)`` continues a stage whose first ``done``
    steps ended in ``latent``, with ``solver`` restored to its state then (a multistep solver's
    history, the generator's state when eta > 0): every step is a function of (step index, latent,
    reference, noise, solver state), so the continuation equals the uninterrupted run.
    """
    method, sampling = settings.freescale, settings.sampling
    timesteps = schedule.timesteps(sampling.steps)
    run = timesteps[restart_index(sampling.steps, method.restart_fraction):]
    exponent = method.alpha if alpha is None else alpha

    def before_model(i: int, t: int, x: torch.Tensor) -> torch.Tensor:
        x = detail_control(x, schedule.q_sample(reference, t, noise), t, exponent)
        return anchor(i, t, x) if anchor else x

    def guide_z0(i: int, t: int, z0: torch.Tensor) -> torch.Tensor:
        weight = guidance_weight_schedule(t, method.guidance_weight, method.guidance_power)
        return structure_guidance(z0, reference, weight.to(z0.device, z0.dtype), method.mixing_factor)

    step_hooks = DenoiseHooks(
        before_model=before_model,
        model_context=lambda i, _t: denoiser.step_patches(i),
        guide_z0=guide_z0 if method.structure_guidance else None,
        after_step=after_step,
    )
    solver = solver or schedule.solver(sampling.scheduler, eta=sampling.eta, generator=generator)
    x = schedule.q_sample(reference, run[0], noise)
    if resume is not None:
        done, x = resume
        run = run[done:]
    with denoiser.stage_patches():
        return denoise(denoiser.eps_fn, solver, x, run, num_steps=sampling.steps, hooks=step_hooks,
                       progress=progress, desc="steps")
