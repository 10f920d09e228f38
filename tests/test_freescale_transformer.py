"""FreeScale on a video transformer: scale fusion in Wan's 3-D self-attention, rotary positions,
and the one entry point for a high stage, on tiny random WanTransformer3DModels."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, WanRotaryPosEmbed

from vidscale.freescale import fuse_scales, gaussian_blur, rope_tables, transformer_patches
from vidscale.freescale.attention import PlanCache, full_attention, windowed_attention
from vidscale.freescale.fusion import ScaleFusionConfig
from vidscale.freescale.rope import rope_positions
from vidscale.freescale.transformer import (
    TransformerFusionProcessor,
    rotary_self_attention,
    token_windows,
    transformer_self_attention_names,
)
from vidscale.freescale.windows import neighborhood_plan, reference_plan
from vidscale.settings import FreeScaleSettings

HEADS, DIM = 2, 24  # 2 heads of 12: rotary channels 4 (frames) + 4 (height) + 4 (width)
GRID, BASE = (8, 12), (4, 6)  # token grids (latent / patch (1, 2, 2)) of a x2 stage
FRAMES = 2  # latent frames


def tiny_wan(seed: int = 0) -> WanTransformer3DModel:
    """As diffusers' own Wan tests build it: 2 layers, 2 heads of 12, FFN 32, text dim 32."""
    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=DIM // HEADS,
        in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def wan_inputs(latent_size, frames=FRAMES, seed=1):
    return randn(1, 4, frames, *latent_size, seed=seed), torch.tensor([500]), randn(1, 5, 32, seed=seed + 1)


def rotary(model, frames=FRAMES, grid=GRID):
    return model.rope(torch.zeros(1, 4, frames, 2 * grid[0], 2 * grid[1]))


def processor(mode, blur="spatial", base=BASE, target=GRID):
    config = ScaleFusionConfig(base, target, mode, blur=blur)
    plans = PlanCache(lambda n: token_windows(config, n))
    return TransformerFusionProcessor(WanAttnProcessor(), config, plans)


# --- the global branch and the local windows ---------------------------------------------------


@pytest.mark.parametrize("fused_projections", [False, True])
def test_global_branch_is_diffusers_attention_bit_for_bit(fused_projections):
    model = tiny_wan()
    attn = model.blocks[0].attn1
    if fused_projections:
        attn.fuse_projections()
    x, rope = randn(2, FRAMES * 8 * 12, DIM, seed=3), rotary(model)
    fusion = processor("fast")
    with torch.no_grad():
        q, k, v = (t.flatten(2) for t in rotary_self_attention(attn, x, rope))
        ours = attn.to_out[1](attn.to_out[0](full_attention(q, k, v, HEADS, fusion._attend)))
        assert torch.equal(ours, WanAttnProcessor()(attn, x, None, None, rope))


def naive_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v per head, written out (independent of SDPA)."""
    b, n, c = q.shape

    def split(x):
        return x.view(b, -1, HEADS, c // HEADS).transpose(1, 2)

    weights = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // HEADS), dim=-1)
    return (weights @ split(v)).transpose(1, 2).reshape(b, n, c)


def naive_boxes(q, k, v, windows):
    """Loop over ((q_rows, q_cols), (k_rows, k_cols)) rectangles, each taken in ALL frames;
    average overlapping outputs."""
    b, _, c = q.shape

    def part(x, rows, cols):
        return x.view(b, FRAMES, *GRID, c)[:, :, rows, cols].reshape(b, -1, c)

    total, count = torch.zeros(b, FRAMES, *GRID, c), torch.zeros(1, 1, *GRID, 1)
    for (qr, qc), (kr, kc) in windows:
        out = naive_attention(part(q, qr, qc), part(k, kr, kc), part(v, kr, kc))
        total[:, :, qr, qc] += out.view(b, FRAMES, qr.stop - qr.start, qc.stop - qc.start, c)
        count[:, :, qr, qc] += 1
    assert count.min() > 0
    return (total / count).view(b, -1, c)


def conv_blur_per_frame(tokens):
    """Independent 3x3 Gaussian (sigma 1) over (h, w) of every frame: replicate pad + conv2d."""
    b, n, c = tokens.shape
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / 2)
    g = g / g.sum()
    maps = tokens.view(b * FRAMES, *GRID, c).permute(0, 3, 1, 2).reshape(-1, 1, *GRID)
    blurred = F.conv2d(F.pad(maps, (1, 1, 1, 1), mode="replicate"), (g[:, None] * g[None, :])[None, None])
    return blurred.view(b * FRAMES, c, GRID[0] * GRID[1]).transpose(1, 2).reshape(b, n, c)


def conv_blur_released(tokens):
    """Independent 3x3x3 Gaussian (zero padding) over (h, w, C) of every frame."""
    b, n, c = tokens.shape
    g = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / 2)
    g = g / g.sum()
    cube = g[:, None, None] * g[None, :, None] * g[None, None, :]
    return F.conv3d(tokens.view(b * FRAMES, 1, *GRID, c), cube[None, None], padding=1).view(b, n, c)


REFERENCE_WINDOWS = [((slice(r, r + 4), slice(c, c + 6)),) * 2 for r in (0, 2, 4) for c in (0, 3, 6)]
NPA_WINDOWS = [  # query patches 2 x 3; keys the 4 x 6 window centred on them, clamped
    ((slice(r, r + 2), slice(c, c + 3)),
     (slice(min(max(r - 1, 0), 4), min(max(r - 1, 0), 4) + 4),
      slice(min(max(c - 1, 0), 6), min(max(c - 1, 0), 6) + 6)))
    for r in (0, 2, 4, 6) for c in (0, 3, 6, 9)
]


@pytest.mark.parametrize("mode, blur", [
    ("reference", "spatial"), ("fast", "spatial"), ("npa-only", "spatial"), ("fast", "released"),
])
def test_processor_matches_a_naive_computation(mode, blur):
    model = tiny_wan()
    attn = model.blocks[1].attn1
    x, rope = randn(2, FRAMES * 8 * 12, DIM, seed=5), rotary(model)
    project = attn.to_out[0]  # dropout is the identity in eval
    with torch.no_grad():
        q, k, v = (t.flatten(2) for t in rotary_self_attention(attn, x, rope))
        local = naive_boxes(q, k, v, REFERENCE_WINDOWS if mode == "reference" else NPA_WINDOWS)
        global_ = naive_attention(q, k, v)
        if mode == "npa-only":
            expected = project(local)
        elif blur == "spatial":
            expected = project(conv_blur_per_frame(local) + global_ - conv_blur_per_frame(global_))
        else:
            expected = (conv_blur_released(project(local)) + project(global_)
                        - conv_blur_released(project(global_)))
        got = processor(mode, blur)(attn, x, rotary_emb=rope)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def local_branch(mode, attn, x, rope):
    """The local branch alone: the processor's windows and attention kernel, to_out after."""
    fusion = processor(mode)
    _, plan = token_windows(fusion.config, x.shape[1])
    q, k, v = (t.flatten(2) for t in rotary_self_attention(attn, x, rope))
    return attn.to_out[0](windowed_attention(q, k, v, HEADS, plan, fusion._attend))


@pytest.mark.parametrize("mode", ["reference", "fast", "npa-only"])
def test_local_branch_is_local_in_space_and_global_in_time(mode):
    model = tiny_wan()
    attn = model.blocks[0].attn1
    x, rope = randn(1, FRAMES * 8 * 12, DIM, seed=7), rotary(model)
    changed = x.clone().view(1, FRAMES, *GRID, DIM)
    changed[0, 0, 0, 0] += 3.0  # frame 0, top-left token

    def run(tokens):
        if mode == "npa-only":  # the whole processor is the local branch
            out = processor(mode)(attn, tokens, rotary_emb=rope)
        else:
            out = local_branch(mode, attn, tokens, rope)
        return out.view(1, FRAMES, *GRID, DIM)

    with torch.no_grad():
        before, after = run(x), run(changed.view(1, -1, DIM))
    # bottom-right tokens (rows 6-7, cols 9-11) attend only inside rows 4-7, cols 6-11
    assert torch.equal(after[:, :, 6:, 9:], before[:, :, 6:, 9:])
    # the same place one frame later does see the change: the windows span all frames
    assert (after[0, 1, 0, 0] - before[0, 1, 0, 0]).abs().max() > 1e-4


def test_fusion_keeps_the_global_branch_everywhere():
    model = tiny_wan()
    attn = model.blocks[0].attn1
    x, rope = randn(1, FRAMES * 8 * 12, DIM, seed=7), rotary(model)
    changed = x.clone().view(1, FRAMES, *GRID, DIM)
    changed[0, 0, 0, 0] += 3.0
    with torch.no_grad():
        before = processor("fast")(attn, x, rotary_emb=rope).view(1, FRAMES, *GRID, DIM)
        after = processor("fast")(attn, changed.view(1, -1, DIM), rotary_emb=rope).view(1, FRAMES, *GRID, DIM)
    assert (after[:, :, 6:, 9:] - before[:, :, 6:, 9:]).abs().max() > 1e-6


def test_plans_over_frames_repeat_the_spatial_windows_in_every_frame():
    for build in (reference_plan, neighborhood_plan):
        flat, video = build(GRID, BASE), build(GRID, BASE, frames=3)
        area = GRID[0] * GRID[1]
        expected = torch.cat([flat.key_index + f * area for f in range(3)], dim=1)
        assert torch.equal(video.key_index, expected)
        assert video.n_tokens == 3 * area


def test_token_windows_follow_the_grid():
    config = ScaleFusionConfig(BASE, GRID, "fast")
    (frames, h, w), plan = token_windows(config, 3 * 8 * 12)
    assert (frames, h, w) == (3, 8, 12) and plan.n_tokens == 3 * 8 * 12
    assert token_windows(ScaleFusionConfig(GRID, GRID, "fast"), 2 * 8 * 12) is None
    with pytest.raises(ValueError, match="not whole frames of the 8x12 token grid"):
        token_windows(config, 4 * 6)


# --- the Gaussian split on the 3-D token grid ---------------------------------------------------


def test_blur_is_exact_on_constants_and_never_crosses_frames():
    grid = (3, *GRID)  # (frames, h, w)

    def per_frame(seed):  # a field constant over (h, w), different per frame and channel
        return randn(2, 3, 1, 1, 5, seed=seed).expand(2, *grid, 5).reshape(2, -1, 5)

    constant = per_frame(8).view(2, *grid, 5)
    for kernel in (3, 7):  # x2, x4
        assert torch.equal(gaussian_blur(constant, kernel, 1.0, dims=(-3, -2)), constant)
    local_c, global_c = per_frame(8), per_frame(9)  # no high band in either: fusion keeps local
    assert torch.equal(fuse_scales(local_c, global_c, grid, 7, 1.0), global_c + (local_c - global_c))
    global_ = randn(2, math.prod(grid), 5, seed=9)
    assert torch.equal(fuse_scales(global_.clone(), global_, grid, 3, 1.0), global_)
    local = randn(2, math.prod(grid), 5, seed=10)
    spike = local.clone().view(2, *grid, 5)
    spike[:, 1, 3, 4] += 1.0  # one token of frame 1
    fused, fused_spike = (fuse_scales(t.reshape(2, -1, 5), global_, grid, 3, 1.0).view(2, *grid, 5)
                          for t in (local, spike))
    assert torch.equal(fused_spike[:, [0, 2]], fused[:, [0, 2]])
    assert (fused_spike[:, 1, 3, 5] - fused[:, 1, 3, 5]).abs().min() > 0.05  # a neighbour in h, w


# --- rotary positions -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["extrapolate", "interpolate", "ntk"])
def test_rope_tables_at_base_size_are_diffusers_own(mode):
    for rope in (tiny_wan().rope, WanRotaryPosEmbed(128, (1, 2, 2), 1024)):  # tiny and Wan 2.1 1.3B
        cos, sin = rope_tables(rope, mode, (1.0, 1.0))
        assert torch.equal(cos, rope.freqs_cos) and torch.equal(sin, rope.freqs_sin)


def test_interpolated_rope_squeezes_positions_into_the_trained_range():
    rope = WanRotaryPosEmbed(128, (1, 2, 2), 1024)
    t, h = rope.t_dim, rope.h_dim
    cos, sin = rope_tables(rope, "interpolate", (2.0, 3.0))
    rows = torch.arange(0, 300)
    assert torch.equal(cos[:, :t], rope.freqs_cos[:, :t]) and torch.equal(sin[:, :t], rope.freqs_sin[:, :t])
    assert torch.equal(cos[2 * rows, t:t + h], rope.freqs_cos[rows, t:t + h])  # height x2: exact
    torch.testing.assert_close(sin[3 * rows, t + h:], rope.freqs_sin[rows, t + h:], atol=1e-5, rtol=0)
    assert not torch.allclose(cos[1:, t:], rope.freqs_cos[1:, t:], atol=1e-3)


def test_ntk_rope_keeps_the_fastest_frequency_and_slows_the_slowest_by_the_scale():
    rope = WanRotaryPosEmbed(128, (1, 2, 2), 1024)
    t, h = rope.t_dim, rope.h_dim
    cos, sin = rope_tables(rope, "ntk", (2.0, 2.0))
    assert torch.equal(cos[:, :t + 2], rope.freqs_cos[:, :t + 2])  # frames, and height's pair at 1 rad
    rows = torch.arange(0, 500)
    slowest = slice(t + h - 2, t + h)
    torch.testing.assert_close(cos[2 * rows, slowest], rope.freqs_cos[rows, slowest], atol=1e-5, rtol=0)
    torch.testing.assert_close(sin[2 * rows, slowest], rope.freqs_sin[rows, slowest], atol=1e-5, rtol=0)


def test_rope_positions_restore_the_tables_and_refuse_what_they_cannot_rescale():
    rope = tiny_wan().rope
    cos, sin = rope.freqs_cos, rope.freqs_sin
    sizes = {"base_tokens": BASE, "target_tokens": GRID}
    with pytest.raises(RuntimeError, match="boom"), rope_positions(rope, "ntk", **sizes):
        assert not torch.equal(rope.freqs_cos, cos)
        raise RuntimeError("boom")
    assert rope.freqs_cos is cos and rope.freqs_sin is sin
    with pytest.raises(ValueError, match="past the rope table's 32 positions"):
        rope_positions(rope, "extrapolate", base_tokens=BASE, target_tokens=(8, 40)).__enter__()
    other = WanRotaryPosEmbed(DIM // HEADS, (1, 2, 2), 32, theta=500.0)
    with pytest.raises(ValueError, match="use 'extrapolate'"):
        rope_positions(other, "interpolate", **sizes).__enter__()


# --- the entry point for a high stage -----------------------------------------------------------

SETTINGS = [
    FreeScaleSettings(fusion=fusion, rope=rope, blur=blur)
    for fusion in ("off", "reference", "fast", "npa-only") for rope in ("extrapolate", "interpolate", "ntk")
    for blur in ("spatial", "released")
]


def test_patches_at_base_size_are_plain_attention_bit_for_bit():
    model = tiny_wan()
    sample, t, text = wan_inputs((16, 24))
    with torch.no_grad():
        plain = model(sample, t, text).sample
        for settings in SETTINGS:
            with transformer_patches(model, settings, base_size=(16, 24), target_size=(16, 24), scale=1):
                assert torch.equal(model(sample, t, text).sample, plain), settings


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()}, dict(model.attn_processors),
            model.rope, model.rope.freqs_cos, model.rope.freqs_sin)


def assert_restored(model, before):
    state, processors, rope, cos, sin = before
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert model.attn_processors.keys() == processors.keys()
    assert all(model.attn_processors[k] is processors[k] for k in processors)
    assert model.rope is rope and model.rope.freqs_cos is cos and model.rope.freqs_sin is sin


@pytest.mark.parametrize("settings", [
    FreeScaleSettings(fusion="fast", rope="ntk"),
    FreeScaleSettings(fusion="reference", rope="interpolate", blur="released"),
    FreeScaleSettings(fusion="off", rope="ntk"),
])
def test_patches_act_on_self_attention_only_and_restore_exactly(settings):
    model = tiny_wan()
    attn1 = set(transformer_self_attention_names(model))
    assert attn1 == {"blocks.0.attn1.processor", "blocks.1.attn1.processor"}
    before = snapshot(model)
    sample, t, text = wan_inputs((16, 24))
    sizes = {"base_size": (8, 12), "target_size": (16, 24), "scale": 2}
    with torch.no_grad():
        plain = model(sample, t, text).sample
        with transformer_patches(model, settings, **sizes):
            replaced = {k for k, p in model.attn_processors.items() if p is not before[1][k]}
            assert replaced == (set() if settings.fusion == "off" else attn1)
            assert all(model.attn_processors[k].inner is before[1][k] for k in replaced)
            patched = model(sample, t, text).sample
        assert (patched - plain).abs().max() > 1e-4
        assert_restored(model, before)
        assert torch.equal(model(sample, t, text).sample, plain)
        with pytest.raises(RuntimeError, match="boom"), transformer_patches(model, settings, **sizes):
            raise RuntimeError("boom")
        assert_restored(model, before)


def test_extrapolation_without_fusion_is_diffusers_unchanged():
    model = tiny_wan()
    before = snapshot(model)
    sample, t, text = wan_inputs((16, 24))
    off = FreeScaleSettings(fusion="off", rope="extrapolate")
    with torch.no_grad():
        plain = model(sample, t, text).sample
        with transformer_patches(model, off, base_size=(8, 12), target_size=(16, 24), scale=2):
            assert torch.equal(model(sample, t, text).sample, plain)
    assert_restored(model, before)


def test_attention_backend_is_the_layer_s_own_while_patched():
    inner = WanAttnProcessor()
    fusion = TransformerFusionProcessor(inner, ScaleFusionConfig(BASE, GRID), PlanCache(lambda n: None))
    assert fusion._attention_backend is None and fusion._parallel_config is None
    fusion._attention_backend = "native"  # what set_attention_backend does to every processor
    assert inner._attention_backend == "native" and fusion._attention_backend == "native"


def test_bad_sizes_and_models_are_named():
    model = tiny_wan()
    with pytest.raises(ValueError, match="9x12 latent is not a whole number of 2x2 patches"):
        sizes = {"base_size": (9, 12), "target_size": (18, 24), "scale": 2}
        transformer_patches(model, FreeScaleSettings(), **sizes).__enter__()
    sample, t, text = wan_inputs((16, 24))
    settings = dataclasses.replace(FreeScaleSettings(), fusion="reference")
    before = snapshot(model)
    with torch.no_grad(), pytest.raises(ValueError, match="not whole frames of the 16x24 token grid"), \
            transformer_patches(model, settings, base_size=(8, 12), target_size=(32, 48), scale=4):
        model(sample, t, text)  # a 16x24 latent through a stage patched for 32x48
    assert_restored(model, before)
