"""``--model random``: VideoCrafter2's full architecture with seeded random weights, built in place."""

import torch
from torch import nn
from vc2_layout import text_shapes, unet_shapes, vae_shapes

from vidscale.model.configs import (
    TINY_TEXT,
    TINY_UNET,
    TINY_VAE,
    VC2_TEXT,
    VC2_UNET,
    VC2_VAE,
    text_config,
    unet_config,
    vae_config,
)
from vidscale.model.loading import load_videocrafter2, resolve_model_path
from vidscale.model.videocrafter2 import random_videocrafter2

TINY = {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}


def _meta(shapes):
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def test_its_configs_are_what_the_converter_reads_from_the_real_checkpoint_layout():
    assert unet_config(_meta(unet_shapes())) == VC2_UNET
    assert vae_config(_meta(vae_shapes())) == VC2_VAE
    assert text_config(_meta(text_shapes())) == VC2_TEXT


def test_the_full_size_model_builds_on_meta_without_allocating():
    assert resolve_model_path("random") == "random"
    model = load_videocrafter2("random", device="meta", dtype=torch.bfloat16)
    modules = (model.unet, model.vae, model.text_encoder)
    assert all(t.is_meta for m in modules for t in [*m.parameters(), *m.buffers()])
    assert sum(p.numel() for p in model.unet.parameters()) == 1_413_284_420
    norms = {id(p) for m in modules for n in m.modules() if isinstance(n, nn.GroupNorm) for p in n.parameters()}
    assert norms and all(p.dtype == (torch.float32 if id(p) in norms else torch.bfloat16)
                         for m in modules for p in m.parameters())
    assert model.is_test_model and "random" in model.name


def test_the_same_path_builds_real_seeded_weights_for_a_reduced_config():
    model = random_videocrafter2("cpu", torch.bfloat16, configs=TINY)
    again = random_videocrafter2("cpu", torch.bfloat16, configs=TINY)
    weight = model.unet.conv_in.weight
    assert not weight.is_meta and weight.dtype == torch.bfloat16 and torch.equal(weight, again.unet.conv_in.weight)
    assert model.unet.conv_norm_out.weight.dtype == torch.float32
    text = model.encode_prompt(["a red fox"])
    latents = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eps = model.unet(latents.to(model.dtype), 500, text, fps=8).sample
    assert eps.shape == latents.shape and eps.isfinite().all() and 0.05 < eps.float().std() < 20
    assert model.is_test_model
