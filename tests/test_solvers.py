"""DPM-Solver++(2M) with VC2's signal scale: diffusers' solver without it, an oracle with it."""

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from vidscale.errors import SettingsError
from vidscale.freescale import restart_index
from vidscale.model.schedule import VC2Schedule
from vidscale.model.solvers import DPMSolverPP2M, make_solver
from vidscale.pipeline.denoise import denoise
from vidscale.pipeline.refine import Denoiser, refine
from vidscale.settings import Settings

SHAPE = (1, 4, 3, 8, 8)


def test_without_the_signal_scale_it_is_diffusers_dpm_solver_pp_2m():
    """Same betas, same (leading, offset 1) timesteps, ending at alpha_bar_0 like VC2's DDIM."""
    schedule = VC2Schedule(signal_scale=False)
    timesteps = schedule.timesteps(25)
    reference = DPMSolverMultistepScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, algorithm_type="dpmsolver++",
        solver_order=2, solver_type="midpoint", lower_order_final=False, final_sigmas_type="sigma_min")
    reference.set_timesteps(timesteps=timesteps)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=generator)
    expected, ours, solver = x.clone(), x.clone(), DPMSolverPP2M(schedule)
    for k, t in enumerate(timesteps):
        eps = torch.randn(SHAPE, generator=generator)
        expected = reference.step(eps, t, expected).prev_sample
        ours = solver.step(ours, eps, t, timesteps[k + 1] if k + 1 < len(timesteps) else 0)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def _oracle(schedule, clean):
    return lambda x, t: schedule.eps_from_x0(x, clean, t)


def _base_error(scheduler, steps, solver_schedule):
    """Sample from pure noise with an oracle that knows the clean latent (VC2's scaled q_sample)."""
    truth = VC2Schedule()
    generator = torch.Generator().manual_seed(1)
    clean = torch.randn(SHAPE, generator=generator, dtype=torch.float64)  # no float32 rounding at t ~ T
    noise = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    solver, timesteps = make_solver(scheduler, solver_schedule), solver_schedule.timesteps(steps)
    start = truth.q_sample(clean, timesteps[0], noise)  # 961 for 25 steps, 981 for 50: same noise
    out = denoise(_oracle(truth, clean), solver, start, timesteps, num_steps=steps)
    return (out - clean).abs().mean().item()


def test_the_oracle_is_recovered_in_25_steps_as_well_as_ddim_in_50():
    ddim_50 = _base_error("ddim", 50, VC2Schedule())
    dpm_25 = _base_error("dpm++2m", 25, VC2Schedule())
    # Both end at alpha_bar_0: the residual is sqrt(1 - alpha_bar_0) ~ 0.029 times the noise.
    assert dpm_25 <= ddim_50 * (1 + 1e-6) and dpm_25 < 0.03


def test_its_first_order_step_is_vc2s_scaled_ddim():
    """The derivation's first-order case: checked against the DDIM verified on VC2's sampler."""
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(3)
    x, eps = torch.randn(SHAPE, generator=generator), torch.randn(SHAPE, generator=generator)
    for t, t_next in ((961, 921), (421, 381), (41, 1), (1, 0)):  # across the kink of scale_arr at 400
        ddim = make_solver("ddim", schedule).step(x, eps, t, t_next)
        torch.testing.assert_close(DPMSolverPP2M(schedule).step(x, eps, t, t_next), ddim, rtol=1e-5, atol=1e-5)
        unscaled = DPMSolverPP2M(VC2Schedule(signal_scale=False)).step(x, eps, t, t_next)
        assert (unscaled - ddim).abs().max() > 1e-3 or t_next > 400


def test_a_high_stage_restarts_at_the_same_timestep_and_lands_as_well():
    """refine() with detail control and structure guidance toward a degraded reference."""
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(2)
    clean = torch.randn(1, 4, 2, 16, 16, generator=generator)
    reference = clean + 0.5 * torch.randn(clean.shape, generator=generator)
    noise = torch.randn(clean.shape, generator=generator)
    errors = {}
    for scheduler, steps in (("ddim", 50), ("dpm++2m", 25)):
        settings = Settings().replace({"sampling.scheduler": scheduler, "sampling.steps": steps})
        assert schedule.timesteps(steps)[restart_index(steps, settings.freescale.restart_fraction)] == 681
        calls = []
        eps = _oracle(schedule, clean)
        denoiser = Denoiser(eps_fn=lambda x, t, eps=eps, calls=calls: calls.append(t) or eps(x, t))
        errors[scheduler] = (refine(denoiser, schedule, reference, noise, settings) - clean).abs().mean().item()
        assert calls[0] == 681 and len(calls) == steps - restart_index(steps, 0.3)
    assert errors["dpm++2m"] <= errors["ddim"] < 0.03


def test_the_multistep_solver_refuses_eta():
    with pytest.raises(SettingsError, match="sampling.eta"):
        make_solver("dpm++2m", VC2Schedule(), eta=1.0)
    with pytest.raises(SettingsError, match="sampling.scheduler"):
        make_solver("euler", VC2Schedule())
