"""Samplers over VC2's schedule: its own DDIM and DPM-Solver++(2M), behind one ``step``.

Both take the model's noise prediction at timestep ``t`` (or a clean-latent prediction that
structure guidance already changed) and move the latent to the next timestep ``t_next`` of the
run (0 after the last one: VC2's DDIM ends at alpha_bar_0, not at pure data, and so does the
multistep solver). A solver is made fresh for each run over a list of timesteps, because the
multistep one remembers its previous prediction; the first step of a run, such as a FreeScale
high stage that restarts at step 15 of 50, is therefore always first order.

DPM-Solver++ with VideoCrafter2's signal scale
-----------------------------------------------
VC2 noises a clean latent as ``x_t = sqrt(ab_t) s_t x0 + sqrt(1 - ab_t) eps`` with
``s = scale_arr``. That is a Gaussian diffusion with signal coefficient ``a_t = sqrt(ab_t) s_t``
and noise coefficient ``sigma_t = sqrt(1 - ab_t)``; its probability-flow ODE is

    dx/dt = (d log a_t / dt) x - sigma_t (d lambda_t / dt) eps(x, t),
    lambda_t = log(a_t / sigma_t)   (half the log signal-to-noise ratio, decreasing in t).

Written for the data prediction ``x0(x, t) = (x - sigma_t eps) / a_t`` and solved exactly in its
linear part (variation of constants, as in DPM-Solver++, Lu et al. 2022, eq. 9), a step from
``s`` to ``t`` is

    x_t = (sigma_t / sigma_s) x_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x0(lambda) dlambda.

With ``h = lambda_t - lambda_s`` and x0 held constant this is the first-order step
``x_t = (sigma_t / sigma_s) x_s - a_t (e^-h - 1) x0_s``, which is exactly VC2's scaled DDIM with
eta 0 (substitute ``x0_s``; the ``s_t / s_s`` factor of VC2's DDIM is inside ``a_t``). The 2M
step takes x0 linear in lambda through the previous prediction ``x0_r`` at ``lambda_r``
(``r0 = (lambda_s - lambda_r) / h``) and uses the midpoint form:

    D = x0_s + (x0_s - x0_r) / (2 r0),     x_t = (sigma_t / sigma_s) x_s - a_t (e^-h - 1) D.

Nothing else changes: the signal scale only enters through ``a_t`` (in ``x0``, ``lambda`` and the
update). With ``s = 1`` this is diffusers' ``DPMSolverMultistepScheduler`` (``dpmsolver++``,
order 2, midpoint, no lower-order final step), which the tests check to 1e-5.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

import torch

from ..errors import SettingsError

Scheduler = Literal["ddim", "dpm++2m"]
SCHEDULERS: tuple[Scheduler, ...] = ("ddim", "dpm++2m")


class SignalSchedule(Protocol):
    """What VC2's solvers read of a schedule (:class:`~vidscale.model.schedule.VC2Schedule`)."""

    def coefficients(self, t: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...
    def log_snr_terms(self, t: int) -> tuple[float, float, float]: ...
    def pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor: ...
    def eps_from_x0(self, x_t: torch.Tensor, z0: torch.Tensor, t: int) -> torch.Tensor: ...


class Solver(Protocol):
    """One run of sampling steps; ``z0`` (e.g. after structure guidance) replaces the prediction."""

    schedule: SignalSchedule

    def step(self, x: torch.Tensor, eps: torch.Tensor, t: int, t_next: int, *,
             z0: torch.Tensor | None = None) -> torch.Tensor: ...

    def state(self) -> dict[str, torch.Tensor]:
        """What the next step depends on besides its arguments (for a step checkpoint)."""

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`state` taken after an earlier step of the same run."""


class DDIMSolver:
    """VC2's DDIM (first order); ``eta`` > 0 adds fresh noise from ``generator`` at each step."""

    def __init__(self, schedule: SignalSchedule, *, eta: float = 0.0, generator: torch.Generator | None = None):
        self.schedule, self.eta, self.generator = schedule, eta, generator

    def step(self, x: torch.Tensor, eps: torch.Tensor, t: int, t_next: int, *,
             z0: torch.Tensor | None = None) -> torch.Tensor:
        schedule = self.schedule
        if z0 is None:
            z0 = schedule.pred_x0(x, eps, t)
        else:
            eps = schedule.eps_from_x0(x, z0, t)
        ab, _ = schedule.coefficients(t, x)
        ab_next, s_next = schedule.coefficients(t_next, x)
        sigma = self.eta * ((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)).sqrt()
        x_next = ab_next.sqrt() * s_next * z0 + (1 - ab_next - sigma**2).sqrt() * eps
        if self.eta > 0:
            generator = self.generator
            if generator is None:  # the global RNG would make the run unrepeatable
                raise ValueError("DDIM with eta > 0 draws noise at every step: pass the job's generator")
            noise = torch.randn(x.shape, generator=generator, device=generator.device,
                                dtype=x.dtype).to(x.device)
            x_next = x_next + sigma * noise
        return x_next

    def state(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()} if self.eta > 0 and self.generator else {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        if "generator" in state:
            if self.generator is None:
                raise ValueError("this DDIM state carries a generator's state: pass the job's generator")
            self.generator.set_state(state["generator"])


class DPMSolverPP2M:
    """DPM-Solver++(2M) in VC2's scaled parameterisation (derivation in the module docstring)."""

    def __init__(self, schedule: SignalSchedule):
        self.schedule = schedule
        self._previous: tuple[float, torch.Tensor] | None = None  # (lambda, x0) of the last step

    def step(self, x: torch.Tensor, eps: torch.Tensor, t: int, t_next: int, *,
             z0: torch.Tensor | None = None) -> torch.Tensor:
        a_s, sigma_s, lambda_s = self.schedule.log_snr_terms(t)
        a_t, sigma_t, lambda_t = self.schedule.log_snr_terms(t_next)
        x0 = (x - sigma_s * eps) / a_s if z0 is None else z0
        h = lambda_t - lambda_s
        direction = x0
        if self._previous is not None:
            lambda_r, x0_r = self._previous
            r0 = (lambda_s - lambda_r) / h
            direction = x0 + (x0 - x0_r.to(x0.device, x0.dtype)) / (2 * r0)
        self._previous = (lambda_s, x0)
        return (sigma_t / sigma_s) * x - a_t * math.expm1(-h) * direction

    def state(self) -> dict[str, torch.Tensor]:
        """The previous step's (lambda, x0): the second-order term needs it."""
        if self._previous is None:
            return {}
        lambda_r, x0_r = self._previous
        return {"previous_lambda": torch.tensor(lambda_r, dtype=torch.float64), "previous_x0": x0_r}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        if "previous_x0" in state:
            self._previous = (float(state["previous_lambda"]), state["previous_x0"])


def make_solver(scheduler: str, schedule: SignalSchedule, *, eta: float = 0.0,
                generator: torch.Generator | None = None) -> Solver:
    """A fresh solver for one run (``sampling.scheduler``, ``sampling.eta``)."""
    if scheduler == "ddim":
        return DDIMSolver(schedule, eta=eta, generator=generator)
    if scheduler == "dpm++2m":
        if eta > 0:
            raise SettingsError(f"sampling.eta = {eta} with sampling.scheduler = 'dpm++2m': the multistep "
                                "solver is deterministic; set sampling.eta = 0 or use scheduler 'ddim'")
        return DPMSolverPP2M(schedule)
    raise SettingsError(f"sampling.scheduler = {scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
