"""Temporal windows: short clips untouched bit for bit, long clips windowed, pyramid-weighted."""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0
from float_bounds import assert_float64_close
from freescale_tiny import tiny_attention, tiny_unet, unet_inputs

from vidscale.freescale import temporal_attention_names, temporal_windows
from vidscale.freescale.attention import PlanCache
from vidscale.freescale.temporal import TemporalWindowProcessor
from vidscale.freescale.windows import temporal_plan

HEADS = 2


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def processor(window=16, stride=4):
    return TemporalWindowProcessor(AttnProcessor2_0(), window, PlanCache(lambda f: temporal_plan(f, window, stride)))


def naive_windowed(attn, x, starts, window=16):
    """Loop over windows with the plain processor; pyramid-weighted average per frame."""
    pyramid = torch.tensor([min(i + 1, window - i) for i in range(window)], dtype=x.dtype)[None, :, None]
    total, weight = torch.zeros_like(x), torch.zeros(1, x.shape[1], 1, dtype=x.dtype)
    for s in starts:
        total[:, s:s + window] += pyramid * AttnProcessor2_0()(attn, x[:, s:s + window])
        weight[:, s:s + window] += pyramid
    assert weight.min() > 0  # every frame covered
    return total / weight


@pytest.mark.parametrize("frames", [3, 16])
def test_short_clips_are_bit_identical(frames):
    attn = tiny_attention(channels=8, heads=HEADS)
    x = randn(6, frames, 8)  # (B * h * w, F, C)
    with torch.no_grad():
        assert torch.equal(processor()(attn, x), AttnProcessor2_0()(attn, x))


@pytest.mark.parametrize("frames, starts", [(40, range(0, 25, 4)), (42, [*range(0, 25, 4), 26])])
def test_long_clips_match_a_naive_window_loop(frames, starts):
    """In float64: the batched windows and the loop sum the same terms in other orders."""
    attn = tiny_attention(channels=8, heads=HEADS).double()
    x = randn(4, frames, 8, seed=1, dtype=torch.float64)
    with torch.no_grad():
        assert_float64_close(processor()(attn, x), naive_windowed(attn, x, starts))


def test_weights_are_normalised():
    attn = tiny_attention(channels=8, heads=HEADS).double()
    frame = randn(4, 1, 8, seed=2, dtype=torch.float64)
    with torch.no_grad():
        same = processor()(attn, frame.expand(4, 40, 8).contiguous())
        one_window = AttnProcessor2_0()(attn, frame.expand(4, 16, 8).contiguous())
    assert_float64_close(same, one_window[:, :1].expand(4, 40, 8))


def test_a_frame_depends_only_on_frames_in_its_windows():
    attn = tiny_attention(channels=8, heads=HEADS)
    x = randn(3, 40, 8, seed=3)
    far = x.clone()
    far[:, 39] += 5.0  # frame 39 is only in the last window, frames 24..39
    with torch.no_grad():
        a, b = processor()(attn, x), processor()(attn, far)
    assert torch.equal(a[:, :24], b[:, :24])
    assert not torch.allclose(a[:, 24:], b[:, 24:])


BLOCKS = [("down_blocks.0", 1), ("down_blocks.1", 1), ("down_blocks.2", 1), ("mid_block", 1),
          ("up_blocks.1", 2), ("up_blocks.2", 2), ("up_blocks.3", 2)]  # (block, layers with attention)
TEMPORAL = {f"transformer_in.transformer_blocks.0.attn{a}.processor" for a in (1, 2)} | {
    f"{block}.temp_attentions.{i}.transformer_blocks.0.attn{a}.processor"
    for block, n in BLOCKS for i in range(n) for a in (1, 2)
}


def test_installs_on_temporal_self_attention_only_and_restores():
    unet = tiny_unet()
    assert set(temporal_attention_names(unet)) == TEMPORAL
    before = dict(unet.attn_processors)
    sample, text = unet_inputs(6, (4, 4))
    with torch.no_grad():
        plain = unet(sample, 500, text).sample
        with temporal_windows(unet, window=4, stride=2) as installed:
            windowed = unet(sample, 500, text).sample
        assert set(installed) == TEMPORAL
        assert not torch.allclose(windowed, plain, atol=1e-4)
        with temporal_windows(unet, window=6, stride=2):
            assert torch.equal(unet(sample, 500, text).sample, plain)  # clip <= window
        assert all(unet.attn_processors[k] is before[k] for k in before)
        with pytest.raises(RuntimeError, match="boom"):
            with temporal_windows(unet, window=4, stride=2):
                raise RuntimeError("boom")
        assert all(unet.attn_processors[k] is before[k] for k in before)
        assert torch.equal(unet(sample, 500, text).sample, plain)


def test_rejects_windows_that_leave_gaps():
    with pytest.raises(ValueError, match="stride <= window"):
        with temporal_windows(tiny_unet(), window=4, stride=5):
            pass
