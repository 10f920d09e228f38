"""Wan's flow-matching path and its samplers: UniPC as WanPipeline runs it, and DDIM (Euler).

The path
--------
Wan is trained on the straight path between data and noise, ``x_s = (1 - s) x0 + s eps`` for
``s`` in [0, 1], and predicts its velocity ``v = eps - x0``. So a clean-latent estimate is
``x0 = x_s - s v``, and FreeScale's restart (and detail control's re-noised reference) is this
``x_s`` of the upsampled latent, not DDPM's ``sqrt(ab) x0 + sqrt(1 - ab) eps``.

Times are on the 0..1000 scale every family shares: ``t = 1000 s``. The schedule is diffusers'
``UniPCMultistepScheduler`` with ``use_flow_sigmas`` (how the Wan folders configure it): ``N``
sigmas ``linspace(1, 1/1000, N + 1)[:-1]`` mapped through the flow shift
``shift * s / (1 + (shift - 1) * s)`` (more steps at high noise; 3.0 for 480p, 5.0 for 720p),
the first nudged below 1 by 1e-6, then a final 0. :meth:`FlowSchedule.timesteps` returns
``1000 s`` exactly (floats); the transformer is fed ``int(t)``, as diffusers truncates its
timesteps to int64. FreeScale's restart index and detail control ``c(t)`` read these same ``t``:
``c`` follows the flow's own time ``s = t / 1000``.

UniPC (Zhao et al. 2023), as diffusers steps it for Wan
-------------------------------------------------------
In the data-prediction form with ``alpha_s = 1 - s``, ``sigma_s = s`` and
``lambda = log(alpha / sigma)``, a step from ``s_i`` to ``s_{i+1}`` with ``h = lambda_{i+1} -
lambda_i`` is the predictor (UniP, B(h) = e^-h - 1, "bh2")

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} (e^-h - 1) m_i - alpha_{i+1} B(h) D / 2

where ``m_i`` is the model's clean-latent prediction at ``x_i`` and, from the second step on,
``D = (m_{i-1} - m_i) / r``, ``r = (lambda_{i-1} - lambda_i) / h`` (order 2; order 1 at the first
step of a run and at the last step, diffusers' ``lower_order_final``). At the next step, once
``m_{i+1}`` is known, the corrector (UniC) recomputes ``x_{i+1}`` from ``x_i`` with it, before
the next prediction. The last step lands on ``s = 0`` and returns ``m``.

Hooks that change the latent between steps (FreeScale's detail control, chunk anchoring, a
pipeline callback) meet a subtlety here: diffusers' corrector rebuilds ``x_{i+1}`` from ``x_i``
and so silently drops any such change. This solver adds the corrector's *correction* to the
latent it is handed instead: ``x <- x + (x_corrected - x_predicted)``. Without hooks that is the
same latent (up to rounding: the tests compare with diffusers to 1e-4); with them, the change
survives and the model's newer prediction still corrects the step.

A run restarted in the middle of the schedule (FreeScale's high stage, video-to-video's strength)
starts with no history, as diffusers' video-to-video pipeline does: its first step is first order
and uncorrected.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import SettingsError

T = 1000
FLOW_SCHEDULERS = ("unipc", "ddim")  # "auto" is the first: Wan's own


class FlowSchedule:
    """The shifted flow-matching schedule of one Wan model; stateless (chunks and stages share it)."""

    def __init__(self, shift: float = 3.0):
        if shift <= 0:
            raise SettingsError(f"flow shift {shift}: must be > 0 (Wan uses 3.0 at 480p, 5.0 at 720p)")
        self.shift = float(shift)

    def timesteps(self, num_steps: int) -> list[float]:
        """``1000 s`` for each of the ``num_steps`` sigmas, most noisy first (diffusers' arithmetic)."""
        sigmas = np.linspace(1, 1 / T, num_steps + 1)[:-1]
        sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        if abs(sigmas[0] - 1) < 1e-6:
            sigmas[0] -= 1e-6
        return [float(t) for t in sigmas * T]

    @staticmethod
    def sigma(t: float) -> float:
        return float(np.float32(t / T))  # diffusers keeps its sigmas in float32

    def q_sample(self, z0: torch.Tensor, t: float, noise: torch.Tensor) -> torch.Tensor:
        """``(1 - s) z0 + s noise``: the flow's own noisy latent at ``t = 1000 s``."""
        s = self.sigma(t)
        return (1 - s) * z0 + s * noise

    def pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: float) -> torch.Tensor:
        """The clean latent the velocity ``eps`` implies: ``x - s v``."""
        return x_t - self.sigma(t) * eps

    def eps_from_x0(self, x_t: torch.Tensor, z0: torch.Tensor, t: float) -> torch.Tensor:
        return (x_t - z0) / self.sigma(t)

    def solver(self, name: str, *, eta: float = 0.0, generator: torch.Generator | None = None):
        """``"auto"``/``"unipc"``: UniPC as WanPipeline samples; ``"ddim"``: deterministic DDIM, which on
        the straight path is Euler's method. Both are deterministic (``eta`` must be 0)."""
        name = FLOW_SCHEDULERS[0] if name == "auto" else name
        if name not in FLOW_SCHEDULERS:
            raise SettingsError(f"sampling.scheduler = {name!r} does not run on Wan's flow matching; "
                                f"choose 'auto' (Wan's own UniPC) or one of {', '.join(FLOW_SCHEDULERS)}")
        if eta > 0:
            raise SettingsError(f"sampling.eta = {eta}: Wan's flow-matching samplers are deterministic; "
                                "set sampling.eta = 0")
        return FlowUniPC(self) if name == "unipc" else FlowDDIM(self)


def _alpha_sigma_lambda(t: float) -> tuple[float, float, float]:
    s = FlowSchedule.sigma(t)
    return 1 - s, s, math.log(1 - s) - math.log(s)


class FlowDDIM:
    """First order: ``x' = (1 - s') x0 + s' eps_hat`` with ``eps_hat`` from ``x`` and ``x0``."""

    def __init__(self, schedule: FlowSchedule):
        self.schedule = schedule

    def step(self, x: torch.Tensor, eps: torch.Tensor, t: float, t_next: float, *,
             z0: torch.Tensor | None = None) -> torch.Tensor:
        s, s_next = self.schedule.sigma(t), self.schedule.sigma(t_next)
        x0 = self.schedule.pred_x0(x, eps, t) if z0 is None else z0
        return x0 + (s_next / s) * (x - x0)  # = (1 - s') x0 + s' (x - (1 - s) x0) / s

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        pass


class FlowUniPC:
    """UniPC order 2 (bh2) with its corrector, in the flow parameterisation (module docstring)."""

    def __init__(self, schedule: FlowSchedule):
        self.schedule = schedule
        self._models: list[tuple[float, torch.Tensor]] = []  # (t, m) of the last two steps, oldest first
        # (x_i the last prediction started from (corrected), what it returned); None before the first step
        self._previous: tuple[torch.Tensor, torch.Tensor] | None = None
        self._order = 0  # the last prediction's order: the corrector's

    def step(self, x: torch.Tensor, eps: torch.Tensor, t: float, t_next: float, *,
             z0: torch.Tensor | None = None) -> torch.Tensor:
        m = self.schedule.pred_x0(x, eps, t) if z0 is None else z0
        if self._previous is not None:
            last, predicted = self._previous
            x = x + (self._corrected(m, t, last) - predicted.to(x.device))
        self._models = (self._models + [(t, m)])[-2:]
        order = 1 if t_next == 0 else min(2, len(self._models))
        predicted = m if t_next == 0 else self._predict(x, t, t_next, order)
        self._previous, self._order = (x, predicted), order
        return predicted

    def _predict(self, x: torch.Tensor, t: float, t_next: float, order: int) -> torch.Tensor:
        _, sigma_s, lambda_s = _alpha_sigma_lambda(t)
        alpha_t, sigma_t, lambda_t = _alpha_sigma_lambda(t_next)
        h = lambda_t - lambda_s
        b_h = math.expm1(-h)
        m = self._models[-1][1]
        x_next = (sigma_t / sigma_s) * x - (alpha_t * b_h) * m
        if order == 2:
            t_prev, m_prev = self._models[-2]
            r = (_alpha_sigma_lambda(t_prev)[2] - lambda_s) / h
            x_next = x_next - (alpha_t * b_h * 0.5 / r) * (m_prev.to(m.device) - m)
        return x_next

    def _corrected(self, m: torch.Tensor, t: float, last: torch.Tensor) -> torch.Tensor:
        """UniC: ``x_i`` recomputed from ``x_{i-1}`` (``last``) with the new prediction ``m``."""
        t_prev, m_prev = self._models[-1]
        _, sigma_p, lambda_p = _alpha_sigma_lambda(t_prev)
        alpha, sigma, lam = _alpha_sigma_lambda(t)
        h = lam - lambda_p
        hh = -h
        b_h = math.expm1(hh)
        m_prev = m_prev.to(m.device)
        x = (sigma / sigma_p) * last.to(m.device) - (alpha * b_h) * m_prev
        if self._order == 1:
            return x - (alpha * b_h * 0.5) * (m - m_prev)
        t_old, m_old = self._models[-2]
        r = (_alpha_sigma_lambda(t_old)[2] - lambda_p) / h
        phi = b_h / hh - 1
        b1 = phi / b_h
        b2 = (phi / hh - 0.5) * 2 / b_h
        rho_d, rho_m = (b1 - b2) / (1 - r), (b2 - r * b1) / (1 - r)  # solve [[1, 1], [r, 1]] rho = b
        return x - (alpha * b_h) * (rho_d / r * (m_old.to(m.device) - m_prev) + rho_m * (m - m_prev))

    def state(self) -> dict[str, torch.Tensor]:
        """The history the next step needs: the last two predictions with their times, the latent
        the last prediction started from, what it returned and its order."""
        if self._previous is None:
            return {}
        last, predicted = self._previous
        state = {"times": torch.tensor([t for t, _ in self._models], dtype=torch.float64),
                 "last": last, "predicted": predicted,
                 "order": torch.tensor(self._order)}
        state.update({f"model{k}": m for k, (_, m) in enumerate(self._models)})
        return state

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        if "last" not in state:
            return
        times = state["times"].tolist()
        self._models = [(t, state[f"model{k}"]) for k, t in enumerate(times)]
        self._previous = state["last"], state["predicted"]
        self._order = int(state["order"])
