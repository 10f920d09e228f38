"""diffusers' model contract on vidscale's own classes (tiny sizes): from_config, save/load round trips
in every dtype, with a variant and sharded, attention processors, forward chunking, return_dict."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor
from float_bounds import assert_float64_close

from vidscale.model.configs import TINY_UNET
from vidscale.model.schedule import VC2Schedule
from vidscale.model.tokenizer import ClipTokenizer, find_vocab
from vidscale.model.unet import FP32GroupNorm, VC2UNet, cast_keeping_group_norm


@pytest.fixture(scope="module")
def unet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VC2UNet(**TINY_UNET).eval()
        for param in model.parameters():  # GroupNorm weights off their 1/0 defaults, so rounding would show
            param.data.add_(torch.randn_like(param) * 0.01)
    return model


def inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(1, 4, 2, 8, 8, generator=g).to(dtype), torch.tensor([501]),
            torch.randn(1, 77, TINY_UNET["cross_attention_dim"], generator=g).to(dtype))


def same_output(loaded, reference, dtype=torch.float32):
    """A loaded model computes what the model it was saved from computes, bit for bit.

    Its weights are bit-identical, but they may sit in a memory-mapped file at any alignment, where
    CPU kernels can take another path and round otherwise (by ~1e-6); a deep copy moves them into
    torch's own allocations, like the reference's, so the same kernels run on the same numbers.
    """
    x, t, context = inputs(dtype)
    assert torch.equal(copy.deepcopy(loaded)(x, t, context, fps=8).sample, reference(x, t, context, fps=8).sample)


def public(config):
    return {key: value for key, value in config.items() if not key.startswith("_")}


def test_from_config_builds_the_configured_model_not_the_default(unet):
    rebuilt = VC2UNet.from_config(unet.config)
    assert public(rebuilt.config) == public(unet.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in unet.state_dict().items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_save_and_load_give_the_same_model_in_every_dtype(unet, tmp_path, dtype):
    unet.save_pretrained(tmp_path)
    loaded = VC2UNet.from_pretrained(tmp_path, torch_dtype=dtype)
    expected = cast_keeping_group_norm(copy.deepcopy(unet), dtype) if dtype != torch.float32 else unet
    assert public(loaded.config) == public(unet.config) and loaded.dtype == dtype
    for (name, a), b in zip(loaded.state_dict().items(), expected.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    norms = [m for m in loaded.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(m.weight.dtype == torch.float32 for m in norms)  # never rounded to half
    assert all(type(m) is FP32GroupNorm for m in norms) == (dtype != torch.float32)
    if dtype != torch.float16:  # CPU has no fp16 convolutions
        same_output(loaded, expected, dtype)


def test_a_variant_in_shards_round_trips(unet, tmp_path):
    unet.save_pretrained(tmp_path, variant="fp16", max_shard_size="2MB")
    shards = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(shards) > 1 and all(".fp16-" in name for name in shards)
    loaded = VC2UNet.from_pretrained(tmp_path, variant="fp16")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), unet.state_dict().values()))
    same_output(loaded, unet)


@pytest.mark.slow
def test_attention_processors_forward_chunking_and_return_dict(unet):
    """In float64: another attention kernel and chunked feed-forward layers sum in other orders."""
    unet = copy.deepcopy(unet).double()
    x, t, context = inputs(torch.float64)
    reference = unet(x, t, context, fps=8).sample
    assert torch.equal(unet(x, t, context, fps=8, return_dict=False)[0], reference)
    before = unet.attn_processors
    unet.set_attn_processor(AttnProcessor())
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor}
    assert_float64_close(unet(x, t, context, fps=8).sample, reference)
    unet.set_attn_processor(dict(before))
    unet.enable_forward_chunking(chunk_size=1, dim=1)
    assert_float64_close(unet(x, t, context, fps=8).sample, reference)
    unet.disable_forward_chunking()
    assert not torch.allclose(unet(x, t, context, fps=28).sample, reference)  # fps still conditions


def test_the_schedule_and_tokenizer_round_trip(tmp_path):
    VC2Schedule(signal_scale=False).save_pretrained(tmp_path / "scheduler")
    schedule = VC2Schedule.from_pretrained(tmp_path / "scheduler")
    assert schedule.config.signal_scale is False and schedule.timesteps(4) == [751, 501, 251, 1]
    try:
        original = ClipTokenizer.from_file(find_vocab())
    except Exception:  # no open_clip_torch: the byte-level tokenizer of the tiny model
        original = ClipTokenizer.byte_level()
    original.save_pretrained(tmp_path / "tokenizer")
    first = (tmp_path / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    loaded = ClipTokenizer.from_pretrained(tmp_path / "tokenizer")
    prompts = ["a red kite!! over the sea", "&amp; Ünïcode   spaces"]
    assert loaded.vocab_size == original.vocab_size and torch.equal(loaded(prompts), original(prompts))
    loaded.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "bpe_simple_vocab_16e6.txt.gz").read_bytes() == first  # no timestamp inside
