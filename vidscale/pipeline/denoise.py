"""The denoising loop shared by generation and upscaling, with hooks for the FreeScale pieces."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..backends import EpsFn
from ..model.solvers import Solver
from ..progress import Progress

StepHook = Callable[[int, int, torch.Tensor], torch.Tensor]


@dataclass
class DenoiseHooks:
    """Optional per-step hooks; ``i`` is the index in the FULL schedule (so tau comparisons work)."""

    before_model: StepHook | None = None  # detail control, chunk anchoring
    model_context: Callable[[int, int], AbstractContextManager] | None = None  # dilation on/off
    guide_z0: StepHook | None = None  # structure guidance on the predicted clean latent
    after_step: StepHook | None = None


@torch.no_grad()
def denoise(eps_fn: EpsFn, solver: Solver, latents: torch.Tensor, timesteps: Sequence[int], *, num_steps: int,
            hooks: DenoiseHooks | None = None, progress: Progress | None = None,
            desc: str = "steps") -> torch.Tensor:
    """Run ``solver`` over ``timesteps`` (a tail of ``schedule.timesteps(num_steps)``) from ``latents``.

    Each step goes to the next timestep of the list, and the last one to t = 0 (alpha_bar_0).
    """
    hooks = hooks or DenoiseHooks()
    progress = progress or Progress(enabled=False)
    offset = num_steps - len(timesteps)
    x = latents
    with progress.bar(desc, total=len(timesteps), unit="step") as bar:
        for k, t in enumerate(timesteps):
            i = offset + k
            t_next = timesteps[k + 1] if k + 1 < len(timesteps) else 0
            if hooks.before_model:
                x = hooks.before_model(i, t, x)
            with hooks.model_context(i, t) if hooks.model_context else nullcontext():
                eps = eps_fn(x, t)
            z0 = hooks.guide_z0(i, t, solver.schedule.pred_x0(x, eps, t)) if hooks.guide_z0 else None
            x = solver.step(x, eps, t, t_next, z0=z0)
            if hooks.after_step:
                x = hooks.after_step(i, t, x)
            bar.update(1)
    return x
