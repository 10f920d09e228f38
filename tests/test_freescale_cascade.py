"""Self-cascade schedule: restart step, detail control c(t), alpha maps, latent upsampling."""

import math

import pytest
import torch
from float_bounds import U32, gamma

from vidscale.freescale import (
    alpha_map,
    detail_control,
    detail_weight,
    dilation_active,
    renoise,
    restart_index,
    stage_noise,
    upsample_latent,
)

VC2_TIMESTEPS = list(range(981, 0, -20))  # DDIM 50 steps, leading spacing, steps_offset 1


def test_restart_at_step_15_is_t_681_for_vc2():
    assert restart_index(50, 0.3) == 15
    assert VC2_TIMESTEPS[restart_index(50, 0.3)] == 681
    assert restart_index(100, 0.29) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert restart_index(50, 0.0) == 0
    assert restart_index(50, 1.0) == 49  # at least the last step runs


def test_dilation_for_the_first_35_of_50_steps():
    assert [i for i in range(50) if dilation_active(i, 50, 0.7)] == list(range(35))
    assert not any(dilation_active(i, 50, 0.0) for i in range(50))


@pytest.mark.parametrize("t, expected", [(681, 0.5917), (501, 0.2516), (301, 0.0430)])
def test_detail_weight_matches_formula(t, expected):
    c = detail_weight(t, 2.0)
    formula = ((1 + math.cos(math.pi * (1000 - t) / 1000)) / 2) ** 2
    assert float(c) == pytest.approx(formula, rel=gamma(2))  # float64, rounded once to float32
    assert float(c) == pytest.approx(expected, abs=0.5e-4 + U32)  # the values are written to 4 decimals


def test_detail_control_blends_toward_reference():
    x, ref = torch.zeros(1, 4, 2, 3, 3), torch.ones(1, 4, 2, 3, 3)
    out = detail_control(x, ref, 681, 2.0)
    # c(681) written to 7 decimals; c rounded to float32, then lerp's (at most 3) roundings, and the literal's
    torch.testing.assert_close(out, torch.full_like(x, 0.5917276), atol=0.5e-7 + 5 * U32, rtol=0)
    assert torch.equal(detail_control(x, ref, 681, 0.0), ref)  # alpha 0: c = 1, the reference


def test_alpha_map_changes_only_the_masked_region():
    mask = torch.zeros(1, 16, 16)
    mask[:, :8, :8] = 1.0  # top-left quarter, at pixel resolution
    alpha = alpha_map(mask, alpha_fg=3.0, alpha_bg=2.0, latent_size=(4, 4))
    assert alpha.shape == (1, 1, 1, 4, 4)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4, generator=generator)
    ref = torch.randn(1, 4, 3, 4, 4, generator=generator)
    uniform = detail_control(x, ref, 501, 2.0)
    region = detail_control(x, ref, 501, alpha)
    changed = (region != uniform).any(dim=(0, 1, 2))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(changed, expected)


def test_alpha_map_per_frame_masks_stay_hard():
    mask = torch.zeros(3, 10, 10)
    mask[1] = 1.0
    mask[2, :, 5:] = 1.0
    alpha = alpha_map(mask, 3.0, 0.5, (5, 5))
    assert alpha.shape == (1, 1, 3, 5, 5)
    assert set(alpha.unique().tolist()) == {0.5, 3.0}
    assert (alpha[0, 0, 0] == 0.5).all() and (alpha[0, 0, 1] == 3.0).all()
    with pytest.raises(ValueError, match="mask must be"):
        alpha_map(torch.zeros(10, 10), 3.0, 0.5, (5, 5))


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "nearest"])
def test_upsample_latent_is_per_frame(mode):
    z = torch.randn(2, 4, 3, 5, 6, generator=torch.Generator().manual_seed(0))
    big = upsample_latent(z, (10, 12), mode)
    assert big.shape == (2, 4, 3, 10, 12)
    frame = upsample_latent(z[:, :, 1:2], (10, 12), mode)
    # an output is at most 16 products (bicubic) of taps with magnitudes summing to under 1.375 per
    # axis (PyTorch's a = -0.75), in any order: within gamma(32) of 1.89 max|z| of exact, both ways
    assert (big[:, :, 1:2] - frame).abs().max() <= 2 * gamma(32) * 1.375**2 * z.abs().max()
    if mode == "nearest":
        assert torch.equal(big[..., ::2, ::2], z)


def test_renoise_uses_the_given_schedule_and_one_noise_draw():
    calls = []

    def q_sample(z0, t, noise):
        calls.append(int(t))
        return 0.5 * z0 + noise

    z0 = torch.ones(1, 4, 2, 3, 3)
    noise = stage_noise(z0, torch.Generator().manual_seed(7))
    assert torch.equal(noise, stage_noise(z0, torch.Generator().manual_seed(7)))
    out = renoise(z0, 681, noise, q_sample)
    assert calls == [681] and torch.equal(out, 0.5 * z0 + noise)
