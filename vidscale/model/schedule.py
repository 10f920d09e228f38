"""VideoCrafter2's diffusion schedule, with the signal scale it was trained with.

VC2 was trained with ``q_sample(z0, t) = sqrt(ab_t) * s_t * z0 + sqrt(1 - ab_t) * eps`` where
``s = scale_arr = concat(linspace(1, 0.7, 400), full(1000, 0.7))``. Every sampler step therefore
works with the signal coefficient ``sqrt(ab_t) * s_t``; a stock scheduler without it drifts by up
to 1/0.7 over the last steps. This class holds only the coefficients and the timesteps; the steps
themselves are in :mod:`vidscale.model.solvers`. It is stateless, so chunks and resumed runs share
one schedule object safely.

It is also a diffusers scheduler component (``scheduler/scheduler_config.json`` in a model folder):
``ConfigMixin`` saves and loads its one switch, ``SchedulerMixin`` is what diffusers' pipeline
loader recognises.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .solvers import Solver, make_solver

T = 1000


class VC2Schedule(SchedulerMixin, ConfigMixin):
    """scaled_linear betas 0.00085 -> 0.012, leading spacing with offset 1, alpha_prev(0) = ab_0.

    ``signal_scale=False`` sets ``scale_arr`` to ones: the stock schedule (for comparisons only).
    """

    config_name = "scheduler_config.json"  # type: ignore[assignment]  # diffusers leaves ConfigMixin's unannotated (None)

    @register_to_config
    def __init__(self, signal_scale: bool = True):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.scale_arr = torch.cat([torch.linspace(1.0, 0.7, 400, dtype=torch.float64),
                                    torch.full((T,), 0.7, dtype=torch.float64)])
        if not signal_scale:
            self.scale_arr = torch.ones_like(self.scale_arr)

    def timesteps(self, num_steps: int) -> list[int]:
        """981, 961, ..., 1 for 50 steps (diffusers' "leading" spacing, steps_offset 1)."""
        ratio = T // num_steps
        return [i * ratio + 1 for i in reversed(range(num_steps))]

    def coefficients(self, t: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_bar_t, scale_arr[t]) as scalars in ``like``'s device and dtype."""
        ab = self.alphas_cumprod[t]
        return ab.to(like.device, like.dtype), self.scale_arr[t].to(like.device, like.dtype)

    def log_snr_terms(self, t: int) -> tuple[float, float, float]:
        """(a_t, sigma_t, lambda_t) in float64: ``a_t = sqrt(ab_t) s_t``, ``sigma_t = sqrt(1 - ab_t)``,
        ``lambda_t = log(a_t / sigma_t)``."""
        ab = float(self.alphas_cumprod[t])
        a, sigma = math.sqrt(ab) * float(self.scale_arr[t]), math.sqrt(1.0 - ab)
        return a, sigma, math.log(a / sigma)

    def q_sample(self, z0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        ab, s = self.coefficients(t, z0)
        return ab.sqrt() * s * z0 + (1 - ab).sqrt() * noise

    def pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """The clean latent the noise prediction implies (divided by the signal scale)."""
        ab, s = self.coefficients(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / (ab.sqrt() * s)

    def eps_from_x0(self, x_t: torch.Tensor, z0: torch.Tensor, t: int) -> torch.Tensor:
        ab, s = self.coefficients(t, x_t)
        return (x_t - ab.sqrt() * s * z0) / (1 - ab).sqrt()

    def solver(self, name: str, *, eta: float = 0.0, generator: torch.Generator | None = None) -> Solver:
        """A fresh sampler for one run: ``"ddim"`` (VC2's own, also ``"auto"``) or ``"dpm++2m"``
        (:mod:`vidscale.model.solvers`)."""
        return make_solver("ddim" if name == "auto" else name, self, eta=eta, generator=generator)
