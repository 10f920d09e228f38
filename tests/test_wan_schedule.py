"""Wan's flow-matching schedule and samplers, and FreeScale's self-cascade on the flow's path.

Against diffusers' ``UniPCMultistepScheduler`` as the Wan folders configure it (timesteps,
sigmas, every step with its corrector), and with oracle denoisers: a velocity that knows the
clean latent must land on it, whatever the restart, detail control or resume.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import UniPCMultistepScheduler

from vidscale.errors import SettingsError
from vidscale.freescale import detail_weight, restart_index
from vidscale.model.wan_configs import WAN_SCHEDULER
from vidscale.model.wan_schedule import FlowSchedule, FlowUniPC
from vidscale.pipeline.denoise import denoise
from vidscale.pipeline.refine import Denoiser, refine
from vidscale.settings import Settings

EPS32 = float(np.finfo(np.float32).eps)
SHAPE = (1, 16, 3, 4, 6)


def _latents(seed: int, count: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=generator) for _ in range(count)]


def _oracle(schedule: FlowSchedule, clean: torch.Tensor):
    return lambda x, t: schedule.eps_from_x0(x, clean, t)


@pytest.mark.parametrize("steps", [1, 2, 5, 50])
@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_timesteps_are_diffusers_sigmas_times_1000(steps, shift):
    scheduler = UniPCMultistepScheduler(**{**WAN_SCHEDULER, "flow_shift": shift})
    scheduler.set_timesteps(steps)
    ours = FlowSchedule(shift).timesteps(steps)
    assert [int(t) for t in ours] == scheduler.timesteps.tolist()  # what the transformer is fed
    assert [FlowSchedule.sigma(t) for t in ours] == scheduler.sigmas[:-1].tolist()  # float32, exactly


def test_restart_on_the_flow_path_and_detail_control_on_its_time():
    """Restart index 20 of 50 (fraction 0.4) is t = 818.43 on the shift-3 schedule: s = 0.8184, so
    the re-noised reference is 0.1816 ref + 0.8184 noise (flow matching's x_t, not DDPM's), and
    c(t) = ((1 + cos(pi (1000 - t) / 1000)) / 2) ** alpha = 0.8479 there for alpha 2."""
    schedule = FlowSchedule(3.0)
    timesteps = schedule.timesteps(50)
    assert restart_index(50, 0.4) == 20
    t = timesteps[20]
    assert t == pytest.approx(818.4297, abs=1e-4)
    ref, noise = _latents(1, 2)
    s = schedule.sigma(t)
    torch.testing.assert_close(schedule.q_sample(ref, t, noise), (1 - s) * ref + s * noise, rtol=0, atol=0)
    assert float(detail_weight(t, 2.0)) == pytest.approx(((1 + math.cos(math.pi * (1 - t / 1000))) / 2) ** 2,
                                                         rel=1e-6)
    assert float(detail_weight(t, 2.0)) == pytest.approx(0.8479, abs=1e-4)


def test_unipc_steps_equal_diffusers_with_the_corrector():
    """A whole 8-step run fed the same (arbitrary) model outputs as diffusers' scheduler. The
    scheduler evaluates each coefficient in float32 and this solver in float64: about 8 rounded
    operations per coefficient, so each step may differ by ~8 eps32 relative to the latent's
    size, and the differences add up over the steps."""
    steps, schedule = 8, FlowSchedule(3.0)
    scheduler = UniPCMultistepScheduler(**WAN_SCHEDULER)
    scheduler.set_timesteps(steps)
    timesteps = schedule.timesteps(steps)
    outputs = _latents(2, steps)
    x_ours = x_theirs = _latents(3)[0]
    solver = schedule.solver("unipc")
    for k, t in enumerate(timesteps):
        x_theirs = scheduler.step(outputs[k] + 0.1 * x_theirs, scheduler.timesteps[k], x_theirs).prev_sample
        x_ours = solver.step(x_ours, outputs[k] + 0.1 * x_ours, t, timesteps[k + 1] if k + 1 < steps else 0)
        bound = (k + 1) * 8 * EPS32 * float(x_theirs.abs().max())
        assert float((x_ours - x_theirs).abs().max()) <= bound, k


@pytest.mark.parametrize("name", ["unipc", "ddim", "auto"])
def test_oracle_lands_on_the_clean_latent(name):
    schedule = FlowSchedule(3.0)
    clean, noise = _latents(4, 2)
    out = denoise(_oracle(schedule, clean), schedule.solver(name), noise, schedule.timesteps(10), num_steps=10)
    torch.testing.assert_close(out, clean, rtol=0, atol=16 * EPS32 * float(clean.abs().max()))


def test_a_change_between_steps_survives_the_corrector():
    """Hooks change the latent between steps (detail control, anchoring, callbacks). Fed the same
    clean-latent prediction, a step from ``x + delta`` must differ from a step from ``x`` by what
    the flow does to delta, ``(s_next / s) delta``. diffusers' corrector rebuilds the latent from
    the one before the change, so there the change vanishes (difference 0)."""
    schedule = FlowSchedule(3.0)
    timesteps = schedule.timesteps(6)
    x, delta, z0 = _latents(5, 3)
    ours = {0: schedule.solver("unipc"), 1: schedule.solver("unipc")}
    scheduler = {0: UniPCMultistepScheduler(**WAN_SCHEDULER), 1: UniPCMultistepScheduler(**WAN_SCHEDULER)}
    out: dict = {}
    for run in (0, 1):
        scheduler[run].set_timesteps(6)
        a = b = x
        for k in range(3):
            t, t_next = timesteps[k], timesteps[k + 1]
            if k == 2 and run:
                a, b = a + delta, b + delta
            a = ours[run].step(a, schedule.eps_from_x0(a, z0 + k, t), t, t_next)
            b = scheduler[run].step(schedule.eps_from_x0(b, z0 + k, t), scheduler[run].timesteps[k], b).prev_sample
        out[run] = (a, b)
    carried = schedule.sigma(timesteps[3]) / schedule.sigma(timesteps[2]) * delta
    torch.testing.assert_close(out[1][0] - out[0][0], carried, rtol=0, atol=64 * EPS32 * float(x.abs().max()))
    torch.testing.assert_close(out[1][1], out[0][1], rtol=0, atol=64 * EPS32 * float(x.abs().max()))


def test_stopped_and_resumed_run_equals_the_whole_run():
    """The solver's state (two predictions, the last start and prediction, the order) is all
    the next step needs: a run stopped after 4 of 9 steps and resumed from state() is bit-exact."""
    schedule = FlowSchedule(3.0)
    x, target = _latents(6, 2)
    eps = lambda z, t: schedule.eps_from_x0(z, target, t) + 0.3 * torch.sin(z)  # noqa: E731
    timesteps = schedule.timesteps(9)
    whole = denoise(eps, schedule.solver("unipc"), x, timesteps, num_steps=9)
    first, part = schedule.solver("unipc"), x
    for k, t in enumerate(timesteps[:4]):
        part = first.step(part, eps(part, t), t, timesteps[k + 1])
    second = schedule.solver("unipc")
    second.load_state({key: value.clone() for key, value in first.state().items()})
    assert torch.equal(denoise(eps, second, part, timesteps[4:], num_steps=9), whole)
    fresh = denoise(eps, schedule.solver("unipc"), part, timesteps[4:], num_steps=9)
    assert not torch.equal(fresh, whole)  # the state matters: without it the run differs


def test_refine_restarts_on_the_flow_path_with_detail_control():
    """FreeScale's high stage on Wan's schedule: the first model call sees the reference re-noised
    to t_restart by the flow's q_sample; every later call sees c(t) ref_t + (1 - c(t)) x with c on
    the flow's time; an oracle makes the stage return its clean latent."""
    schedule = FlowSchedule(3.0)
    clean, reference, noise = _latents(7, 3)
    settings = Settings().replace({"sampling.steps": 10, "freescale.restart_fraction": 0.4,
                                   "freescale.alpha": 2.0, "freescale.structure_guidance": False})
    seen, stepped = [], []
    oracle = _oracle(schedule, clean)

    def eps(x, t):
        seen.append((t, x))
        return oracle(x, t)

    out = refine(Denoiser(eps_fn=eps), schedule, reference, noise, settings,
                 after_step=lambda _i, _t, x: stepped.append(x) or x)
    timesteps = schedule.timesteps(10)
    assert [t for t, _ in seen] == timesteps[4:]
    torch.testing.assert_close(seen[0][1], schedule.q_sample(reference, timesteps[4], noise), rtol=0, atol=0)
    for (t, x), before in zip(seen[1:], stepped):
        c = float(detail_weight(t, 2.0))
        expected = torch.lerp(before, schedule.q_sample(reference, t, noise), c)
        torch.testing.assert_close(x, expected, rtol=0, atol=4 * EPS32 * float(expected.abs().max()))
    torch.testing.assert_close(out, clean, rtol=0, atol=16 * EPS32 * float(clean.abs().max()))


def test_samplers_wan_does_not_run_are_refused():
    schedule = FlowSchedule(3.0)
    with pytest.raises(SettingsError, match="dpm\\+\\+2m"):
        schedule.solver("dpm++2m")
    with pytest.raises(SettingsError, match="eta"):
        schedule.solver("unipc", eta=1.0)
    assert isinstance(schedule.solver("auto"), FlowUniPC)
