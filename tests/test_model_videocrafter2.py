"""The loaded model: fps conditioning, mixed precision, VAE helpers, tiny models, model resolution."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet3DConditionModel
from float_bounds import FLOAT64_AGREEMENT, assert_float64_close, gamma

from vidscale.backends import as_backend
from vidscale.errors import ModelNotFoundError, SettingsError
from vidscale.model import load_videocrafter2, resolve_device, resolve_dtype, resolve_model_path
from vidscale.model import videocrafter2 as vc2
from vidscale.model.unet import FP32GroupNorm
from vidscale.pipeline.base_stage import sample_base
from vidscale.settings import SamplingSettings


@pytest.fixture(scope="module")
def tiny():
    return load_videocrafter2("tiny")


def unet_inputs(model, frames=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, frames, 8, 8, generator=g)
    context = model.encode_prompt(["a red car"])
    return x, torch.tensor([501]), context


def test_fps_embedding_is_added_to_the_time_embedding(tiny):
    x, t, context = unet_inputs(tiny)
    out8 = tiny.unet(x, t, context, fps=8).sample
    out28 = tiny.unet(x, t, context, fps=28).sample
    assert not torch.allclose(out8, out28)
    # with the fps MLP's output zeroed, the UNet is exactly diffusers' UNet3DConditionModel (in
    # float64: the two forwards need not sum in the same order)
    unet = vc2.tiny_videocrafter2().unet.double()
    torch.nn.init.zeros_(unet.fps_embedding.linear_2.weight)
    torch.nn.init.zeros_(unet.fps_embedding.linear_2.bias)
    plain = UNet3DConditionModel(**unet.config).double()
    plain.load_state_dict({k: v for k, v in unet.state_dict().items() if not k.startswith("fps_embedding")})
    x, context = x.double(), context.double()
    assert_float64_close(unet(x, t, context, fps=8).sample, plain(x, t, context).sample)


def test_the_unet_refuses_to_run_without_fps(tiny):
    x, t, context = unet_inputs(tiny)
    with pytest.raises(TypeError):
        tiny.unet(x, t, context)
    with pytest.raises(RuntimeError, match="without fps"):
        UNet3DConditionModel.forward(tiny.unet, x, t, context)


def test_half_precision_keeps_group_norm_in_fp32():
    model = load_videocrafter2("tiny", dtype=torch.bfloat16)
    norms = [m for m in model.unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(type(m) is FP32GroupNorm and m.weight.dtype == torch.float32 for m in norms)
    assert model.unet.conv_in.weight.dtype == torch.bfloat16 and model.dtype == torch.bfloat16
    full = load_videocrafter2("tiny")  # GroupNorm parameters were never rounded to bf16
    full_norms = [m for m in full.unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) for a, b in zip(norms, full_norms))
    x, t, context = unet_inputs(model)
    out = model.unet(x.bfloat16(), t, context, fps=8).sample
    reference = load_videocrafter2("tiny").unet(x, t, context.float(), fps=8).sample
    assert out.dtype == torch.bfloat16
    # a quality line, not a rounding bound: bf16 keeps 8 bits (0.4 % a rounding) and every layer rounds
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean()


def test_tiny_models_are_identical_in_every_process():
    a, b = vc2.tiny_videocrafter2(), vc2.tiny_videocrafter2()
    for (name, x), y in zip(a.unet.state_dict().items(), b.unet.state_dict().values()):
        assert torch.equal(x, y), name
    assert a.is_test_model and "random test model" in a.name


def test_vae_helpers_batch_frames_exactly(monkeypatch):
    """In float64: a convolution's batch size may change how its sums are ordered. The latents come
    back as float32, two roundings (the cast, the scaling) of float64 values that agree."""
    model = vc2.tiny_videocrafter2()
    model.unet.double()  # the model's dtype, which inputs are cast to
    model.vae.double()
    pixels = torch.rand(5, 3, 64, 64, dtype=torch.float64) * 2 - 1
    whole = model.encode_frames(pixels)
    assert whole.shape == (1, 4, 5, 8, 8)
    decoded = model.decode_latents(whole)
    assert decoded.shape == (5, 3, 64, 64)
    monkeypatch.setattr(vc2, "VAE_PIXELS_PER_PASS", 2 * 64 * 64)  # two frames per pass
    bound = 2 * gamma(2) * whole.abs() + FLOAT64_AGREEMENT * whole.abs().max()
    assert ((model.encode_frames(pixels) - whole).abs() <= bound).all()
    assert_float64_close(model.decode_latents(whole), decoded)


def test_base_sampling_is_seeded_and_uses_cfg(tiny):
    def run(seed, scale):
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(1, 4, 2, 8, 8, generator=generator)
        eps_fn = as_backend(tiny).predictor(SamplingSettings(prompt="a cat", guidance_scale=scale), fps=8)
        return sample_base(tiny, eps_fn, noise, steps=2, eta=1.0, generator=generator)
    first = run(1, 12.0)
    assert first.shape == (1, 4, 2, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, run(1, 12.0))
    assert not torch.equal(first, run(2, 12.0))
    assert not torch.allclose(first, run(1, 1.0))


def test_model_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VIDSCALE_MODEL", raising=False)
    with pytest.raises(ModelNotFoundError, match=r"huggingface.co/VideoCrafter/VideoCrafter2.*model convert"):
        resolve_model_path("")
    default = tmp_path / "cache" / "vidscale" / "videocrafter2"
    default.mkdir(parents=True)
    assert resolve_model_path("") == default
    monkeypatch.setenv("VIDSCALE_MODEL", str(tmp_path))
    assert resolve_model_path(None) == tmp_path
    assert resolve_model_path("tiny") == "tiny"
    with pytest.raises(ModelNotFoundError, match="--model"):
        resolve_model_path(tmp_path / "nowhere")


def test_device_and_dtype_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="no CUDA GPU"):
            resolve_device("cuda")
