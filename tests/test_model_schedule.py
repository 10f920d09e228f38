"""VC2's DDIM with the scale_arr correction, checked against the update written from its formulas."""

import math

import pytest
import torch
from float_bounds import assert_float64_close

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
    assert_float64_close(_run(VC2Schedule(), x, eps_fn), expected)
    assert (_run(VC2Schedule(signal_scale=False), x, eps_fn) - expected).abs().max() > 1e-2


def test_an_oracle_lands_on_the_clean_latent():
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(1, 4, 2, 8, 8, generator=generator)
    x = torch.randn(clean.shape, generator=generator)
    result = _run(schedule, x, lambda x, t: schedule.eps_from_x0(x, clean, t))
    assert (result - clean).abs().mean() < 0.03


def _sample(eta, seed, steps=10):
    from vidscale.pipeline.denoise import denoise
    schedule = VC2Schedule()
    x = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    eps_fn = lambda x, t: torch.sin(x * 0.5 + t / 1000)  # noqa: E731 - any fixed function of (x, t)
    solver = DDIMSolver(schedule, eta=eta, generator=torch.Generator().manual_seed(seed))
    return denoise(eps_fn, solver, x, schedule.timesteps(steps), num_steps=steps)


def test_eta_one_draws_its_noise_from_the_jobs_generator_only():
    torch.manual_seed(1)
    first = _sample(1.0, seed=5)
    torch.manual_seed(2)  # the global RNG must not matter
    assert torch.equal(_sample(1.0, seed=5), first)
    assert not torch.allclose(_sample(1.0, seed=6), first, atol=1e-3)
    assert not torch.allclose(_sample(0.0, seed=5), first, atol=1e-3)
    assert torch.equal(_sample(0.0, seed=5), _sample(0.0, seed=6))  # eta 0 draws nothing


def test_eta_above_zero_without_a_generator_is_refused():
    x = torch.zeros(1, 4, 1, 2, 2)
    with pytest.raises(ValueError, match="generator"):
        DDIMSolver(VC2Schedule(), eta=1.0).step(x, torch.zeros_like(x), 981, 961)


def test_t2v_presets_follow_videocrafter2s_eta_and_upscale_presets_stay_deterministic():
    from vidscale.settings import load_settings
    assert [load_settings(n).sampling.eta for n in ("t2v-640p", "t2v-1280p")] == [1.0, 1.0]
    assert [load_settings(n).sampling.eta for n in ("prores-hq-2x", "h264-web-2x")] == [0.0, 0.0]
