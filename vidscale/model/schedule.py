"""VideoCrafter2's DDIM schedule, with the signal scale it was trained with.

VC2 was trained with ``q_sample(z0, t) = sqrt(ab_t) * s_t * z0 + sqrt(1 - ab_t) * eps`` where
``s = scale_arr = concat(linspace(1, 0.7, 400), full(1000, 0.7))``. Its DDIM step therefore
rescales the predicted clean latent by ``s_prev / s_t``; a stock DDIM scheduler without that drifts
by up to 1/0.7 over the last steps. This class is stateless: timesteps and every step are functions
of their arguments, so chunks and resumed runs share one schedule object safely.

It is also a diffusers scheduler component (``scheduler/scheduler_config.json`` in a model folder):
``ConfigMixin`` saves and loads its one switch, ``SchedulerMixin`` is what diffusers' pipeline
loader recognises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config

T = 1000


@dataclass(frozen=True)
class StepOutput:
    prev_sample: torch.Tensor
    pred_z0: torch.Tensor  # the unscaled clean latent


class VC2Schedule(SchedulerMixin, ConfigMixin):
    """scaled_linear betas 0.00085 -> 0.012, leading spacing with offset 1, alpha_prev(0) = ab_0."""

    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(self, scale_correction: bool = True):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=torch.float64) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.scale_arr = torch.cat([torch.linspace(1.0, 0.7, 400, dtype=torch.float64),
                                    torch.full((T,), 0.7, dtype=torch.float64)])
        self.scale_correction = scale_correction

    def timesteps(self, num_steps: int) -> list[int]:
        """981, 961, ..., 1 for 50 steps (diffusers' "leading" spacing, steps_offset 1)."""
        ratio = T // num_steps
        return [i * ratio + 1 for i in reversed(range(num_steps))]

    def _coef(self, t: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab = self.alphas_cumprod[t]
        return ab.to(like.device, like.dtype), self.scale_arr[t].to(like.device, like.dtype)

    def q_sample(self, z0: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        ab, s = self._coef(t, z0)
        return ab.sqrt() * s * z0 + (1 - ab).sqrt() * noise

    def pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """The clean latent the noise prediction implies (divided by the signal scale)."""
        ab, s = self._coef(t, x_t)
        return (x_t - (1 - ab).sqrt() * eps) / (ab.sqrt() * s)

    def eps_from_x0(self, x_t: torch.Tensor, z0: torch.Tensor, t: int) -> torch.Tensor:
        ab, s = self._coef(t, x_t)
        return (x_t - ab.sqrt() * s * z0) / (1 - ab).sqrt()

    def step(self, eps: torch.Tensor, t: int, x_t: torch.Tensor, *, num_steps: int, eta: float = 0.0,
             generator: torch.Generator | None = None, z0: torch.Tensor | None = None) -> StepOutput:
        """One DDIM step from ``t``; ``z0`` (e.g. after structure guidance) replaces the prediction.

        ``eta > 0`` adds fresh noise (eta 1: DDPM-like); it is drawn from ``generator``, the job's,
        which is then required: the global RNG would make the run unrepeatable.
        """
        if z0 is None:
            z0 = self.pred_x0(x_t, eps, t)
        else:
            eps = self.eps_from_x0(x_t, z0, t)
        prev = t - T // num_steps
        ab, s = self._coef(t, x_t)
        ab_prev, s_prev = self._coef(max(prev, 0), x_t)
        if not self.scale_correction:
            s_prev = s
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).sqrt()
        x_prev = ab_prev.sqrt() * s_prev * z0 + (1 - ab_prev - sigma**2).sqrt() * eps
        if eta > 0:
            if generator is None:
                raise ValueError("DDIM with eta > 0 draws noise at every step: pass the job's generator")
            noise = torch.randn(x_t.shape, generator=generator, device=generator.device,
                                dtype=x_t.dtype).to(x_t.device)
            x_prev = x_prev + sigma * noise
        return StepOutput(x_prev, z0)
