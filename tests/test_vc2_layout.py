"""Self-checks of ``vc2_layout``: the test-side description of VideoCrafter2's original checkpoint must
reproduce the published counts before other tests may trust it (1484 UNet keys with 1,413,284,420
parameters, 248 VAE keys, 6 + 12 x 24 open_clip text keys), and its fakes must be well formed."""

from __future__ import annotations

import math

import pytest
import torch
from vc2_layout import (
    DEEPSPEED_PREFIX,
    TEXT_PREFIX,
    TINY_TEXT,
    TINY_UNET,
    TINY_VAE,
    UNET_PREFIX,
    VAE_PREFIX,
    TextWidths,
    UNetWidths,
    VAEWidths,
    original_checkpoint,
    schedule_buffers,
    text_shapes,
    unet_shapes,
    vae_shapes,
)


def test_full_size_counts() -> None:
    unet = unet_shapes(UNetWidths())
    assert len(unet) == 1484
    assert sum(math.prod(shape) for shape in unet.values()) == 1_413_284_420
    assert len(vae_shapes(VAEWidths())) == 248
    assert len(text_shapes(TextWidths())) == 6 + 12 * 24


def test_tiny_shapes_have_no_zero_dims() -> None:
    for shapes in (unet_shapes(TINY_UNET), vae_shapes(TINY_VAE), text_shapes(TINY_TEXT)):
        assert all(all(d > 0 for d in shape) for shape in shapes.values())


def test_schedule_buffers() -> None:
    buffers = schedule_buffers()
    assert len(buffers) == 13 and all(t.dtype == torch.float32 for t in buffers.values())
    assert buffers["scale_arr"].shape == (1400,) and buffers["betas"].shape == (1000,)
    assert buffers["scale_arr"][0] == 1 and buffers["scale_arr"][399:].eq(torch.tensor(0.7)).all()
    assert buffers["alphas_cumprod_prev"][0] == 1


@pytest.mark.parametrize("container", ["state_dict", "module", "flat"])
def test_original_checkpoint_containers(container: str) -> None:
    ckpt = original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=0, container=container)
    if container == "state_dict":
        state = ckpt["state_dict"]
    elif container == "module":
        assert all(key.startswith(DEEPSPEED_PREFIX) for key in ckpt["module"])
        state = {key[len(DEEPSPEED_PREFIX):]: value for key, value in ckpt["module"].items()}
    else:
        state = ckpt
    expected = {**{k: tuple(v.shape) for k, v in schedule_buffers().items()},
                **{UNET_PREFIX + k: s for k, s in unet_shapes(TINY_UNET).items()},
                **{VAE_PREFIX + k: s for k, s in vae_shapes(TINY_VAE).items()},
                **{TEXT_PREFIX + k: s for k, s in text_shapes(TINY_TEXT).items()}}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert all(v.dtype == torch.float32 for v in state.values())


def test_original_checkpoint_is_seeded() -> None:
    a, b = (original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=5, container="flat") for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
