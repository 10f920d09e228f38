"""VC2's DDIM with the scale_arr correction, checked against the update written from its formulas."""

import math

import torch

from vidscale.model.schedule import VC2Schedule
from vidscale.model.solvers import DDIMSolver


def _reference_ddim(schedule, x, eps_fn, steps):
    """VC2's sampler: pred_x0 from eps, rescaled by s_prev / s_t, then the eta=0 DDIM update."""
    ab, s = schedule.alphas_cumprod, schedule.scale_arr
    for t in range(981, 0, -20):
        eps = eps_fn(x, t)
        prev = max(t - 20, 0)
        pred_x0 = (x - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])
        pred_x0 = pred_x0 * (s[prev] / s[t])
        x = math.sqrt(ab[prev]) * pred_x0 + math.sqrt(1 - ab[prev]) * eps
    return x


def _run(schedule, x, eps_fn):
    solver = DDIMSolver(schedule)
    for t in schedule.timesteps(50):
        x = solver.step(x, eps_fn(x, t), t, max(t - 20, 0))
    return x


def test_timesteps_are_vc2s():
    steps = VC2Schedule().timesteps(50)
    assert steps[0] == 981 and steps[-1] == 1 and steps[15] == 681 and len(steps) == 50


def test_fifty_steps_match_vc2_and_fail_without_the_correction():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, 8, 8, generator=generator, dtype=torch.float64)
    eps_fn = lambda x, t: torch.sin(x * 0.5 + t / 1000)  # noqa: E731 - any fixed function of (x, t)
    expected = _reference_ddim(VC2Schedule(), x, eps_fn, 50)
    assert (_run(VC2Schedule(), x, eps_fn) - expected).abs().max() < 1e-5
    assert (_run(VC2Schedule(signal_scale=False), x, eps_fn) - expected).abs().max() > 1e-2


def test_an_oracle_lands_on_the_clean_latent():
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(1, 4, 2, 8, 8, generator=generator)
    x = torch.randn(clean.shape, generator=generator)
    result = _run(schedule, x, lambda x, t: schedule.eps_from_x0(x, clean, t))
    assert (result - clean).abs().mean() < 0.03
