"""Scale fusion: batched local attention against a naive loop, fusion, processors, install/restore."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor2_0
from float_bounds import assert_float64_close
from freescale_tiny import tiny_attention, tiny_unet, unet_inputs

from vidscale.freescale import fuse_scales, scale_fusion, spatial_self_attention_names
from vidscale.freescale.attention import PlanCache, full_attention, windowed_attention
from vidscale.freescale.fusion import ScaleFusionConfig, ScaleFusionProcessor
from vidscale.freescale.windows import neighborhood_plan, reference_plan

HEADS = 2
# Comparisons with the naive versions run in float64: the two sum in other orders (SDPA's blocks
# against a written-out softmax, a gather against a loop), so in float32 they round differently.


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def naive_attention(q, k, v, heads=HEADS):
    """softmax(q k^T / sqrt(d)) v per head, written out (independent of SDPA)."""
    b, n, c = q.shape
    d = c // heads

    def split(x):
        return x.view(b, -1, heads, d).transpose(1, 2)

    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(d), dim=-1)
    return (weights @ split(v)).transpose(1, 2).reshape(b, n, c)


def naive_windows(q, k, v, grid, windows):
    """Loop over ((q_rows, q_cols), (k_rows, k_cols)) rectangles; average overlapping outputs."""
    b, _, c = q.shape
    h, w = grid

    def part(x, rows, cols):
        return x.view(b, h, w, c)[:, rows, cols].reshape(b, -1, c)

    total, count = torch.zeros(b, h, w, c, dtype=q.dtype), torch.zeros(1, h, w, 1, dtype=q.dtype)
    for (qr, qc), (kr, kc) in windows:
        out = naive_attention(part(q, qr, qc), part(k, kr, kc), part(v, kr, kc))
        total[:, qr, qc] += out.view(b, qr.stop - qr.start, qc.stop - qc.start, c)
        count[:, qr, qc] += 1
    assert count.min() > 0
    return (total / count).view(b, h * w, c)


def conv_blur(tokens, grid):
    """Independent 3x3 Gaussian (sigma 1) of (B, h * w, C) tokens: replicate pad + conv2d."""
    b, n, c = tokens.shape
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=tokens.dtype) / 2)
    g = g / g.sum()
    maps = tokens.view(b, *grid, c).permute(0, 3, 1, 2).reshape(b * c, 1, *grid)
    blurred = F.conv2d(F.pad(maps, (1, 1, 1, 1), mode="replicate"), (g[:, None] * g[None, :])[None, None])
    return blurred.view(b, c, n).transpose(1, 2)


def qkv(n, seed=0):
    return randn(3, 2, n, 8, seed=seed, dtype=torch.float64).unbind(0)


def test_fusion_of_identical_branches_is_exactly_global():
    g = randn(2, 6 * 10, 8)
    assert torch.equal(fuse_scales(g, g.clone(), (6, 10), 3, 1.0), g)


def test_fusion_keeps_high_band_of_global_and_low_band_of_local():
    local, global_ = (randn(1, 8 * 8, 4, seed=seed, dtype=torch.float64) for seed in (1, 2))
    fused = fuse_scales(local, global_, (8, 8), 3, 1.0)
    expected = conv_blur(local, (8, 8)) + global_ - conv_blur(global_, (8, 8))
    assert_float64_close(fused, expected)


def test_reference_windows_equal_global_attention_at_base_size():
    q, k, v = qkv(6 * 10)
    plan = reference_plan((6, 10), (6, 10))
    assert plan.query_index.shape[0] == 1
    assert_float64_close(windowed_attention(q, k, v, HEADS, plan), full_attention(q, k, v, HEADS))


def test_neighborhood_attention_equals_global_when_its_window_covers_the_map():
    q, k, v = qkv(6 * 10)
    plan = neighborhood_plan((6, 10), (6, 10))
    assert plan.query_index.shape[0] == 4  # 2 x 2 patches, each seeing the whole map
    assert_float64_close(windowed_attention(q, k, v, HEADS, plan), full_attention(q, k, v, HEADS))
    assert_float64_close(full_attention(q, k, v, HEADS), naive_attention(q, k, v))


def test_reference_windows_match_a_naive_loop_on_an_odd_grid():
    q, k, v = qkv(10 * 6, seed=3)  # grid 10 x 6, base 5 x 4: rows 0,2,4,5  cols 0,2
    rects = [(slice(r, r + 5), slice(c, c + 4)) for r in (0, 2, 4, 5) for c in (0, 2)]
    expected = naive_windows(q, k, v, (10, 6), [(rect, rect) for rect in rects])
    got = windowed_attention(q, k, v, HEADS, reference_plan((10, 6), (5, 4)))
    assert_float64_close(got, expected)


def test_neighborhood_attention_matches_a_naive_loop():
    q, k, v = qkv(7 * 8, seed=4)  # grid 7 x 8, base 4 x 4: patches 2 x 2 (rows 0,2,4,5)
    windows = []
    for r in (0, 2, 4, 5):
        for c in (0, 2, 4, 6):
            kr, kc = min(max(r - 1, 0), 3), min(max(c - 1, 0), 4)
            windows.append(((slice(r, r + 2), slice(c, c + 2)), (slice(kr, kr + 4), slice(kc, kc + 4))))
    expected = naive_windows(q, k, v, (7, 8), windows)
    got = windowed_attention(q, k, v, HEADS, neighborhood_plan((7, 8), (4, 4)))
    assert_float64_close(got, expected)


def fusion_processor(mode, base, target):
    config = ScaleFusionConfig(base, target, mode)
    return ScaleFusionProcessor(AttnProcessor2_0(), config, PlanCache(config.layer_windows))


@pytest.mark.parametrize("mode", ["reference", "fast", "npa-only"])
def test_processor_matches_a_naive_computation(mode):
    attn = tiny_attention(channels=8, heads=HEADS).double()
    x = randn(3, 8 * 12, 8, seed=5, dtype=torch.float64)
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    if mode == "reference":
        rects = [(slice(r, r + 4), slice(c, c + 6)) for r in (0, 2, 4) for c in (0, 3, 6)]
        local = naive_windows(q, k, v, (8, 12), [(rect, rect) for rect in rects])
    else:  # patches 2 x 3, windows 4 x 6 centred and clamped
        local = naive_windows(q, k, v, (8, 12), [
            ((slice(r, r + 2), slice(c, c + 3)),
             (slice(min(max(r - 1, 0), 4), min(max(r - 1, 0), 4) + 4),
              slice(min(max(c - 1, 0), 6), min(max(c - 1, 0), 6) + 6)))
            for r in (0, 2, 4, 6) for c in (0, 3, 6, 9)
        ])
    out = local
    if mode != "npa-only":
        global_ = naive_attention(q, k, v)
        out = conv_blur(local, (8, 12)) + global_ - conv_blur(global_, (8, 12))
    expected = attn.to_out[0](out) + 0  # dropout is identity in eval
    with torch.no_grad():
        got = fusion_processor(mode, (4, 6), (8, 12))(attn, x)
    assert_float64_close(got, expected)


def test_processor_is_plain_attention_when_the_map_is_not_larger_than_base():
    attn = tiny_attention(channels=8, heads=HEADS)
    with torch.no_grad():
        for n in (8 * 12, 4 * 6):  # levels 0 and 1 of a stage at the base size
            x = randn(2, n, 8)
            plain = AttnProcessor2_0()(attn, x)
            assert torch.equal(fusion_processor("fast", (8, 12), (8, 12))(attn, x), plain)
            assert torch.equal(fusion_processor("reference", (8, 12), (8, 12))(attn, x), plain)


@pytest.mark.parametrize("mode", ["reference", "fast"])
def test_every_frame_is_treated_the_same(mode):
    attn = tiny_attention(channels=8, heads=HEADS).double()
    frames = randn(5, 8 * 12, 8, seed=6, dtype=torch.float64)  # (B * F, N, C)
    order = torch.tensor([3, 0, 4, 1, 2])
    processor = fusion_processor(mode, (4, 6), (8, 12))
    with torch.no_grad():
        permuted_first = processor(attn, frames[order])
        permuted_after = processor(attn, frames)[order]
    assert_float64_close(permuted_first, permuted_after)  # other rows of one matmul may round otherwise


SPATIAL_ATTN1 = {
    f"{block}.attentions.{i}.transformer_blocks.0.attn1.processor"
    for block, n in [("down_blocks.0", 1), ("down_blocks.1", 1), ("down_blocks.2", 1), ("mid_block", 1),
                     ("up_blocks.1", 2), ("up_blocks.2", 2), ("up_blocks.3", 2)]
    for i in range(n)
}


def test_scale_fusion_installs_on_spatial_self_attention_only_and_restores():
    unet = tiny_unet()
    assert set(spatial_self_attention_names(unet)) == SPATIAL_ATTN1
    before = dict(unet.attn_processors)
    sample, text = unet_inputs(2, (16, 16))
    with torch.no_grad():
        plain = unet(sample, 500, text).sample
        with scale_fusion(unet, base_size=(8, 8), target_size=(16, 16), mode="fast") as installed:
            during = dict(unet.attn_processors)
            fused = unet(sample, 500, text).sample
        assert set(installed) == SPATIAL_ATTN1
        assert {k for k in during if during[k] is not before[k]} == SPATIAL_ATTN1
        assert all(during[k].inner is before[k] for k in SPATIAL_ATTN1)
        assert not torch.allclose(fused, plain, atol=1e-4)
        after = dict(unet.attn_processors)
        assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
        assert torch.equal(unet(sample, 500, text).sample, plain)


def test_scale_fusion_restores_after_an_exception():
    unet = tiny_unet()
    before = dict(unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        with scale_fusion(unet, base_size=(8, 8), target_size=(16, 16), mode="reference"):
            raise RuntimeError("boom")
    after = unet.attn_processors
    assert all(after[k] is before[k] for k in before)


def test_scale_fusion_at_base_size_changes_nothing():
    unet = tiny_unet()
    sample, text = unet_inputs(2, (8, 12))
    with torch.no_grad():
        plain = unet(sample, 500, text).sample
        with scale_fusion(unet, base_size=(8, 12), target_size=(8, 12), mode="reference"):
            assert torch.equal(unet(sample, 500, text).sample, plain)


def blur3d(tokens, grid):
    """Independent 3x3x3 Gaussian (sigma 1, zero padding) of (B, h * w, C) over (h, w, C)."""
    b, n, c = tokens.shape
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0], dtype=tokens.dtype) / 2)
    g = g / g.sum()
    cube = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return F.conv3d(tokens.view(b, 1, *grid, c), cube[None, None], padding=1).view(b, n, c)


def test_released_blur_fuses_after_the_output_projection():
    """With a channel blur G, G(to_out(x)) != to_out(G(x)): the processor fuses projected outputs."""
    attn = tiny_attention(channels=8, heads=HEADS).double()
    x = randn(3, 8 * 12, 8, seed=5, dtype=torch.float64)
    config = ScaleFusionConfig((4, 6), (8, 12), "fast", blur="released")
    processor = ScaleFusionProcessor(AttnProcessor2_0(), config, PlanCache(config.layer_windows))
    with torch.no_grad():
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        local = windowed_attention(q, k, v, HEADS, neighborhood_plan((8, 12), (4, 6)))
        global_ = naive_attention(q, k, v)
        project = attn.to_out[0]
        after = blur3d(project(local), (8, 12)) + project(global_) - blur3d(project(global_), (8, 12))
        before = project(blur3d(local, (8, 12)) + global_ - blur3d(global_, (8, 12)))
        got = processor(attn, x)
    assert_float64_close(got, after)
    assert (got - before).abs().max() > 1e-3


def test_released_blur_runs_on_the_tiny_unet_and_restores_it():
    from vidscale.freescale import freescale_patches
    from vidscale.settings import FreeScaleSettings
    unet = tiny_unet()
    before = dict(unet.attn_processors)
    sample, text = unet_inputs(2, (16, 16))
    released = FreeScaleSettings(blur="released", temporal_window=0)
    with torch.no_grad():
        plain = unet(sample, 500, text).sample
        with freescale_patches(unet, released, base_size=(8, 8), target_size=(16, 16), scale=2):
            assert {p.config.blur for k, p in unet.attn_processors.items() if k in SPATIAL_ATTN1} == {"released"}
            fused_released = unet(sample, 500, text).sample
        with freescale_patches(unet, FreeScaleSettings(temporal_window=0), base_size=(8, 8),
                               target_size=(16, 16), scale=2):
            fused_spatial = unet(sample, 500, text).sample
        assert torch.isfinite(fused_released).all()
        assert not torch.allclose(fused_released, fused_spatial, atol=1e-5)
        after = dict(unet.attn_processors)
        assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
        assert torch.equal(unet(sample, 500, text).sample, plain)
