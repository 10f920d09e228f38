"""Tiled VAE decode for frames that do not fit: the blending is exact, the decode is close, and the
plan tiles only when the arithmetic says a frame does not fit."""

from __future__ import annotations

import pytest
import torch
from float_bounds import gamma

from vidscale.model import videocrafter2
from vidscale.model.tiles import blend_tiles
from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.settings import Settings
from vidscale.work import plan as planning
from vidscale.work.plan import describe_plan, make_plan, plan_tiles


@pytest.fixture(scope="module")
def model():
    return tiny_videocrafter2()


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 4, 1, 16, 24, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def whole(model, latent):
    return torch.cat(list(model.decoded(latent)))


def test_blending_tiles_of_a_local_function_is_exact_at_eight_times_the_size():
    """A decoder that only looks at its own latent cell: tiles must blend back to it exactly."""
    def local(z):
        return torch.repeat_interleave(torch.repeat_interleave(torch.tanh(z[:, :3]), 8, -2), 8, -1)

    z = torch.randn(2, 4, 24, 40)
    tiles = plan_tiles((24, 40), (16, 16), overlap=8)
    assert len(tiles) == 8
    expected = local(z)
    # tanh within 2 ulps (4 u: libm's, or SLEEF's vectorised one) on each side; per pixel up to 4
    # tiles: weight products, 4-term sums of values and of weights, the division: 9 more
    assert ((blend_tiles(local, z, tiles, 8, scale=8) - expected).abs() <= gamma(17) * expected.abs()).all()


def test_blending_no_tiles_says_so():
    with pytest.raises(ValueError, match="at least one tile"):
        blend_tiles(torch.tanh, torch.zeros(1, 4, 8, 8), [], overlap=0)


def test_one_tile_covering_the_frame_is_the_whole_frame_decode(model, latent, whole):
    one = plan_tiles((16, 24), (16, 24), 0)
    assert torch.equal(torch.cat(list(model.decoded(latent, tiles=one, overlap=0))), whole)


def test_a_tiled_decode_is_close_to_the_whole_frame_decode(model, latent, whole):
    """Approximate by nature: the decoder's GroupNorms and mid-block attention see the whole frame.

    Tolerance: mean absolute difference under 15 % of the output's mean magnitude (measured 8 % on
    the tiny random VAE, two 16x16 tiles overlapping by 8; a misplaced tile gives ~100 %), no
    pixel off by more than 0.5 (measured 0.25).
    """
    tiles = plan_tiles((16, 24), (16, 16), 8)
    assert len(tiles) == 2
    tiled = torch.cat(list(model.decoded(latent, tiles=tiles, overlap=8)))
    assert tiled.shape == whole.shape == (1, 3, 128, 192)
    difference = (tiled - whole).abs()
    assert difference.mean() < 0.15 * whole.abs().mean() and difference.max() < 0.5
    assert not torch.equal(tiled, whole)


def test_the_plan_tiles_the_decode_of_2160p_but_not_of_640x1024():
    settings = Settings()  # the default memory budget, bf16
    uhd = make_plan(1920, 1080, (0, 48), settings)  # -> 3840x2160
    assert len(uhd.vae_tiles) > 1 and uhd.vae_tile_overlap > 0
    assert uhd.vae_memory_gb > settings.jobs.memory_budget_gb * planning.VAE_BUDGET_SHARE
    small = make_plan(512, 320, (0, 48), settings)  # -> 1024x640
    assert small.vae_tiles == [] and small.vae_memory_gb < settings.jobs.memory_budget_gb * planning.VAE_BUDGET_SHARE
    text = describe_plan(uhd.to_dict())
    rows, cols = len({t.top for t in uhd.vae_tiles}), len({t.left for t in uhd.vae_tiles})
    side = uhd.vae_tiles[0].height
    assert f"tiled {rows}x{cols}, {side}-latent tiles, {uhd.vae_tile_overlap} overlap" in text
    assert "whole frames" in describe_plan(small.to_dict())
    # the UNet and the decode share the budget
    assert uhd.memory_gb + min(uhd.vae_memory_gb, 60 * planning.VAE_BUDGET_SHARE) <= 60


def test_the_plan_and_the_model_batch_vae_passes_alike():
    assert planning.VAE_PIXELS_PER_PASS == videocrafter2.VAE_PIXELS_PER_PASS
