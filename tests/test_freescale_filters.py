"""Gaussian blur of scale fusion; ScaleDiff's frequency split, LFM and structure guidance."""

import pytest
import torch
import torch.nn.functional as F

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
    torch.testing.assert_close(gaussian_blur(x, 3, 1.0, dims=(1, 2)), channels_first)
    y = x.clone()
    y[..., 0] += 10  # one channel changed: the others must not see it
    other_channels = gaussian_blur(y, 3, 1.0, dims=(1, 2))[..., 1:]
    assert torch.equal(other_channels, gaussian_blur(x, 3, 1.0, dims=(1, 2))[..., 1:])


@pytest.mark.parametrize("kernel", [3, 5])
def test_released_blur_is_a_zero_padded_3d_gaussian_over_height_width_and_channels(kernel):
    """Against conv3d with the kernel written out: outer product of sigma-1 taps, zero padding."""
    x = randn(2, 6, 7, 9, seed=3)  # (B, h, w, C)
    taps = torch.exp(-(torch.arange(kernel) - (kernel - 1) / 2) ** 2 / 2)
    taps = taps / taps.sum()
    cube = taps[:, None, None] * taps[None, :, None] * taps[None, None, :]
    expected = F.conv3d(x[:, None], cube[None, None], padding=kernel // 2)[:, 0]
    torch.testing.assert_close(released_blur(x, kernel, 1.0), expected, atol=1e-6, rtol=0)


def test_only_the_released_blur_mixes_channels():
    x = torch.zeros(1, 5, 5, 6)
    x[..., 2] = 1.0  # one channel lit, constant over the map
    assert torch.equal(gaussian_blur(x, 3, 1.0, dims=(1, 2)), x)
    mixed = released_blur(x, 3, 1.0)
    assert mixed[0, 2, 2, 1] > 0.1 and mixed[0, 2, 2, 3] > 0.1 and mixed[0, 2, 2, 0] == 0


def test_low_pass_is_a_projection_that_removes_high_frequencies():
    x = randn(1, 4, 2, 16, 24)
    low = low_pass(x, 0.25)
    torch.testing.assert_close(low_pass(low, 0.25), low, atol=1e-5, rtol=0)
    assert high_pass(low, 0.25).abs().max() < 1e-5

    def cosine(k):  # the k-th DCT-II basis vector along the rows, constant along the columns
        return torch.cos(torch.pi * (torch.arange(16.0) + 0.5) * k / 16)[:, None].expand(16, 24)

    assert low_pass(cosine(9), 0.25).abs().max() < 1e-5  # 9 >= 0.25 * 16: all high band
    torch.testing.assert_close(low_pass(cosine(3), 0.25), cosine(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(low_pass(x, 1.0), x, atol=1e-5, rtol=0)
    frame = low_pass(x[:, :, 1], 0.25)
    torch.testing.assert_close(low[:, :, 1], frame)  # frames are filtered one by one


def test_structure_guidance_weight_one_takes_the_reference_low_band():
    z0, ref = randn(1, 4, 2, 16, 16, seed=1), randn(1, 4, 2, 16, 16, seed=2)
    guided = structure_guidance(z0, ref, 1.0, 0.25)
    torch.testing.assert_close(low_pass(guided, 0.25), low_pass(ref, 0.25), atol=1e-5, rtol=0)
    torch.testing.assert_close(high_pass(guided, 0.25), high_pass(z0, 0.25), atol=1e-5, rtol=0)
    assert torch.equal(structure_guidance(z0, ref, 0.0, 0.25), z0)
    half = structure_guidance(z0, ref, 0.5, 0.25)
    expected = 0.5 * (low_pass(z0, 0.25) + low_pass(ref, 0.25))
    torch.testing.assert_close(low_pass(half, 0.25), expected, atol=1e-5, rtol=0)


def test_frequency_mix_takes_low_from_latent_and_high_from_rgb():
    latent_up, rgb_latent = randn(1, 4, 2, 16, 24, seed=3), randn(1, 4, 2, 16, 24, seed=4)
    mix = latent_frequency_mix(latent_up, rgb_latent, 0.25)
    torch.testing.assert_close(low_pass(mix, 0.25), low_pass(latent_up, 0.25), atol=1e-5, rtol=0)
    torch.testing.assert_close(high_pass(mix, 0.25), high_pass(rgb_latent, 0.25), atol=1e-5, rtol=0)


def test_guidance_weight_is_strongest_early():
    weights = [float(guidance_weight_schedule(t, 0.5)) for t in (981, 681, 501, 301, 101, 1)]
    assert weights == sorted(weights, reverse=True)
    assert weights[1] == pytest.approx(0.5 * 0.76924, abs=1e-4)
    assert weights[-1] < 1e-4
