"""Gaussian blur of scale fusion; ScaleDiff's frequency split, LFM and structure guidance."""

import pytest
import torch
import torch.nn.functional as F
from float_bounds import U32, assert_float64_close, gamma

from vidscale.freescale import (
    fusion_kernel_size,
    gaussian_blur,
    guidance_weight_schedule,
    high_pass,
    latent_frequency_mix,
    low_pass,
    released_blur,
    structure_guidance,
)
from vidscale.freescale.guidance import _dct_low_projector


def band_rounding(y, factor):
    """Element-wise bound on |low_pass(y) - P y Q| for the exact DCT projectors P, Q (float64).

    low_pass rounds P and Q to float32 (u per entry) and multiplies (h x h) @ y @ (w x w) in
    float32: sums of h, then of w products. In any order of the sums that is within
    gamma(h + w + 3) of |P| |y| |Q|.
    """
    return gamma(y.shape[-2] + y.shape[-1] + 3) * spread(y.abs().double(), factor)


def spread(bound, factor):
    """|P| bound |Q|: where an error of ``bound`` can reach through one more projection."""
    rows, cols = (_dct_low_projector(n, factor, bound.device).double().abs() for n in bound.shape[-2:])
    return rows @ bound @ cols


def identity_rounding(factor, *computed):
    """A bound for the band identities below, from the float32 values a check computes.

    Each value v carries its own rounding, u |v| from the element-wise step that made it and
    band_rounding(v) where it is projected; both sides of an identity see it directly or through
    one more projection, never more.
    """
    own = sum(U32 * v.abs().double() + band_rounding(v, factor) for v in computed)
    return own + spread(own, factor)


def assert_within(actual, expected, bound):
    excess = ((actual.double() - expected.double()).abs() - bound).max()
    assert excess <= 0, f"off by {float(excess):.3g} beyond the float32 rounding bound"


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_kernel_size_follows_scale():
    assert [fusion_kernel_size(s) for s in (1, 2, 4)] == [1, 3, 7]


@pytest.mark.parametrize("kernel", [3, 7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_blur_keeps_a_constant_field_exactly(kernel, dtype):
    field = torch.full((2, 3, 9, 14), 0.7309, dtype=dtype)
    assert torch.equal(gaussian_blur(field, kernel, 1.0), field)


def test_blur_attenuates_a_checkerboard_and_keeps_the_mean():
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    board = ((rows + cols) % 2).float()[None, None] * 2 - 1  # +-1
    blurred = gaussian_blur(board, 3, 1.0)
    inner = blurred[..., 1:-1, 1:-1]
    assert inner.abs().max() < 0.25 * board.abs().max()
    assert abs(float(blurred.mean())) < 0.05


def test_blur_is_per_channel_and_on_the_chosen_axes():
    x = randn(2, 5, 6, 3)  # (B, h, w, C) token layout
    channels_first = gaussian_blur(x.permute(0, 3, 1, 2), 3, 1.0).permute(0, 2, 3, 1)
    # element-wise operations only (- * +), each correctly rounded: the memory layout changes nothing
    assert torch.equal(gaussian_blur(x, 3, 1.0, dims=(1, 2)), channels_first)
    y = x.clone()
    y[..., 0] += 10  # one channel changed: the others must not see it
    other_channels = gaussian_blur(y, 3, 1.0, dims=(1, 2))[..., 1:]
    assert torch.equal(other_channels, gaussian_blur(x, 3, 1.0, dims=(1, 2))[..., 1:])


@pytest.mark.parametrize("kernel", [3, 5])
def test_released_blur_is_a_zero_padded_3d_gaussian_over_height_width_and_channels(kernel):
    """Against conv3d with the kernel written out: outer product of sigma-1 taps, zero padding."""
    x = randn(2, 6, 7, 9, seed=3).double()  # (B, h, w, C)
    taps = torch.exp(-(torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2) ** 2 / 2)
    taps = taps / taps.sum()
    cube = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    expected = F.conv3d(x[:, None], cube[None, None], padding=kernel // 2)[:, 0]
    assert_float64_close(released_blur(x, kernel, 1.0), expected)


def test_only_the_released_blur_mixes_channels():
    x = torch.zeros(1, 5, 5, 6)
    x[..., 2] = 1.0  # one channel lit, constant over the map
    assert torch.equal(gaussian_blur(x, 3, 1.0, dims=(1, 2)), x)
    mixed = released_blur(x, 3, 1.0)
    assert mixed[0, 2, 2, 1] > 0.1 and mixed[0, 2, 2, 3] > 0.1 and mixed[0, 2, 2, 0] == 0


def test_low_pass_is_a_projection_that_removes_high_frequencies():
    x = randn(1, 4, 2, 16, 24)
    low = low_pass(x, 0.25)
    assert_within(low_pass(low, 0.25), low, identity_rounding(0.25, x, low))
    assert_within(high_pass(low, 0.25), torch.zeros_like(low), identity_rounding(0.25, x, low, low))  # subtracted

    def cosine(k):  # the k-th DCT-II basis vector along the rows, constant along the columns
        exact = torch.cos(torch.pi * (torch.arange(16, dtype=torch.float64) + 0.5) * k / 16)[:, None]
        return exact.expand(16, 24).float()  # rounded once: u of itself, 2**-45 for float64's cos

    for k in (3, 9):  # 3 < 0.25 * 16 <= 9: all low band, all high band
        basis = cosine(k)
        expected = basis if k < 4 else torch.zeros_like(basis)
        error = U32 * basis.abs().double() + 2**-45  # of the float32 basis, against the exact one
        assert_within(low_pass(basis, 0.25), expected, band_rounding(basis, 0.25) + spread(error, 0.25) + error)
    assert_within(low_pass(x, 1.0), x, band_rounding(x, 1.0))
    frame = low_pass(x[:, :, 1], 0.25)
    assert_within(low[:, :, 1], frame, 2 * band_rounding(x[:, :, 1], 0.25))  # frames are filtered one by one


def test_structure_guidance_weight_one_takes_the_reference_low_band():
    z0, ref = randn(1, 4, 2, 16, 16, seed=1), randn(1, 4, 2, 16, 16, seed=2)
    guided = structure_guidance(z0, ref, 1.0, 0.25)
    computed = (z0, ref, z0 - ref, guided, high_pass(guided, 0.25), high_pass(z0, 0.25))
    assert_within(low_pass(guided, 0.25), low_pass(ref, 0.25), identity_rounding(0.25, *computed))
    assert_within(high_pass(guided, 0.25), high_pass(z0, 0.25), identity_rounding(0.25, *computed))
    assert torch.equal(structure_guidance(z0, ref, 0.0, 0.25), z0)
    half = structure_guidance(z0, ref, 0.5, 0.25)
    total = low_pass(z0, 0.25) + low_pass(ref, 0.25)
    assert_within(low_pass(half, 0.25), 0.5 * total, identity_rounding(0.25, z0, ref, z0 - ref, half, total))


def test_frequency_mix_takes_low_from_latent_and_high_from_rgb():
    latent_up, rgb_latent = randn(1, 4, 2, 16, 24, seed=3), randn(1, 4, 2, 16, 24, seed=4)
    mix = latent_frequency_mix(latent_up, rgb_latent, 0.25)
    computed = (latent_up, rgb_latent, latent_up - rgb_latent, mix, high_pass(mix, 0.25),
                high_pass(rgb_latent, 0.25))
    assert_within(low_pass(mix, 0.25), low_pass(latent_up, 0.25), identity_rounding(0.25, *computed))
    assert_within(high_pass(mix, 0.25), high_pass(rgb_latent, 0.25), identity_rounding(0.25, *computed))


def test_guidance_weight_is_strongest_early():
    weights = [float(guidance_weight_schedule(t, 0.5)) for t in (981, 681, 501, 301, 101, 1)]
    assert weights == sorted(weights, reverse=True)
    assert weights[1] == pytest.approx(0.5 * 0.76924, abs=0.5 * 0.5e-5 + U32)  # c(681) to 5 decimals
    assert weights[-1] < 1e-4
