"""DPM-Solver++(2M) with VC2's signal scale: diffusers' solver without it, an oracle with it."""

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from float_bounds import FLOAT64_AGREEMENT, U32, assert_float64_close, gamma

from vidscale.errors import SettingsError
from vidscale.freescale import restart_index
from vidscale.model.schedule import VC2Schedule
from vidscale.model.solvers import DPMSolverPP2M, make_solver
from vidscale.pipeline.denoise import denoise
from vidscale.pipeline.refine import Denoiser, refine
from vidscale.settings import Settings

SHAPE = (1, 4, 3, 8, 8)


def _float32_alpha_bar_error(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Per t, how far (relative) diffusers' float32 alpha_bar_t may be from the float64 one.

    diffusers takes sqrt(beta) from a float32 linspace, start + i * step (plus a vector lane's
    j * step): the ends and at most 4 operations round by 0.11 u each (every term is under 0.11)
    and the step's own 3.7 u scales |i * step| < 0.08, under 0.9 u in all, 30 u of the smallest
    value, 0.029. Squared, beta is within 64 u; a factor 1 - beta within u + 64 u beta / (1 - beta);
    and the float32 cumprod of t + 1 factors rounds t more times.
    """
    betas = 1 - alphas_cumprod / torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    factors = 1 + U32 + 64 * U32 * betas / (1 - betas)
    t = torch.arange(len(betas), dtype=torch.float64)
    return (1 + U32) ** t * torch.cumprod(factors, 0) - 1


def _diffusers_dpm_solver_pp_2m_in_float64(schedule: VC2Schedule, timesteps: list[int]):
    """diffusers' DPMSolverMultistepScheduler on VC2's float64 alpha_bar, its sigma table unrounded.

    diffusers builds alpha_bar in float32 and rounds its table sigma = sqrt((1 - ab) / ab) to
    float32; near t = 0, 1 - ab cancels (ab_1 = 0.9983), so its float32 sigma at t = 1 is 1.3e-5
    off, relative. Over 25 steps with |x| up to 48, these tables and its float32 steps put the
    result up to 2.3e-5 away, so a tolerance of 1e-5 held or failed by luck of the rounding
    (torch's default, AVX2 and AVX-512 float32 linspace kernels already round differently). Both
    substitutions are checked: diffusers' alpha_bar is VC2's rounded, its table this one rounded once.
    """
    reference = DPMSolverMultistepScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, algorithm_type="dpmsolver++",
        solver_order=2, solver_type="midpoint", lower_order_final=False, final_sigmas_type="sigma_min")
    ab = schedule.alphas_cumprod
    assert ((reference.alphas_cumprod.double() - ab).abs() <= _float32_alpha_bar_error(ab) * ab).all()
    reference.alphas_cumprod = ab
    reference.set_timesteps(timesteps=timesteps)
    sigmas = ((1 - ab) / ab) ** 0.5
    table = torch.cat([sigmas[timesteps], sigmas[:1]])  # the last step ends at alpha_bar_0
    assert ((reference.sigmas.double() - table).abs() <= U32 * table).all()
    reference.sigmas = table
    return reference


def test_without_the_signal_scale_it_is_diffusers_dpm_solver_pp_2m():
    """Same betas, same (leading, offset 1) timesteps, ending at alpha_bar_0 like VC2's DDIM.

    Step by step from the same latent (diffusers' previous output), each solver with its own
    multistep history. In float64 throughout, but diffusers' step casts the sample to float32 for
    its first term, (sigma_t / sigma_s) * sample: three roundings (the sample, the ratio, the
    product) of that term, plus float64 agreement, are all the two may differ by.
    """
    schedule = VC2Schedule(signal_scale=False)
    timesteps = schedule.timesteps(25)
    reference = _diffusers_dpm_solver_pp_2m_in_float64(schedule, timesteps)
    generator = torch.Generator().manual_seed(0)
    x, solver = torch.randn(SHAPE, generator=generator, dtype=torch.float64), DPMSolverPP2M(schedule)
    for t, t_next in zip(timesteps, [*timesteps[1:], 0]):
        eps = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
        expected = reference.step(eps, t, x).prev_sample
        ours = solver.step(x, eps, t, t_next)
        sigma_ratio = schedule.log_snr_terms(t_next)[1] / schedule.log_snr_terms(t)[1]
        bound = gamma(3) * (sigma_ratio * x).abs() + FLOAT64_AGREEMENT * expected.abs().max()
        assert ((ours - expected).abs() <= bound).all(), f"step {t} -> {t_next}"
        x = expected


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
    # Both end at alpha_bar_0: the residual is sqrt(1 - alpha_bar_0) ~ 0.029 times the noise, the
    # same for both up to float64 rounding.
    assert dpm_25 <= ddim_50 * (1 + FLOAT64_AGREEMENT) and dpm_25 < 0.03


def test_its_first_order_step_is_vc2s_scaled_ddim():
    """The derivation's first-order case: checked against the DDIM verified on VC2's sampler.

    In float64: the two are different formulas of one value, so in float32 their roundings differ.
    """
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(3)
    x, eps = (torch.randn(SHAPE, generator=generator, dtype=torch.float64) for _ in range(2))
    for t, t_next in ((961, 921), (421, 381), (41, 1), (1, 0)):  # across the kink of scale_arr at 400
        ddim = make_solver("ddim", schedule).step(x, eps, t, t_next)
        assert_float64_close(DPMSolverPP2M(schedule).step(x, eps, t, t_next), ddim)
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


def test_a_ddim_state_with_a_generator_needs_one_to_resume_into():
    schedule, generator = VC2Schedule(), torch.Generator().manual_seed(3)
    state = make_solver("ddim", schedule, eta=1.0, generator=generator).state()
    with pytest.raises(ValueError, match="pass the job's generator"):
        make_solver("ddim", schedule, eta=1.0).load_state(state)
    resumed = torch.Generator()
    make_solver("ddim", schedule, eta=1.0, generator=resumed).load_state(state)
    assert torch.equal(resumed.get_state(), generator.get_state())
