"""Restrained dilation: exactly the intended convs, and a model bit-identical afterwards."""

import pytest
import torch
from freescale_tiny import tiny_unet, unet_inputs

from vidscale.freescale import dilated_conv_names, restrained_dilation

DEFAULT = [
    "down_blocks.2.downsamplers.0.conv",
    "down_blocks.3.resnets.0.conv1", "down_blocks.3.resnets.0.conv2",
    "mid_block.resnets.0.conv1", "mid_block.resnets.0.conv2",
    "mid_block.resnets.1.conv1", "mid_block.resnets.1.conv2",
]


def conv_geometry(unet):
    convs = ((n, m) for n, m in unet.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    return {n: (m.dilation, m.padding) for n, m in convs}


def test_the_dilated_set_is_exactly_the_intended_one():
    unet = tiny_unet()
    assert dilated_conv_names(unet) == DEFAULT
    assert dilated_conv_names(unet, levels=(0, 2), mid=False) == [
        "down_blocks.0.resnets.0.conv1", "down_blocks.0.resnets.0.conv2",
        "down_blocks.1.downsamplers.0.conv",
        "down_blocks.2.resnets.0.conv1", "down_blocks.2.resnets.0.conv2",  # not its 1x1 conv_shortcut
    ]
    every = dilated_conv_names(unet, levels=(0, 1, 2, 3))
    assert not [n for n in every if "temp_convs" in n or n.startswith("up_blocks") or "shortcut" in n]
    assert "conv_in" not in every and "conv_out" not in every
    with pytest.raises(ValueError, match="levels 0..3"):
        dilated_conv_names(unet, levels=(4,))


def test_dilation_changes_outputs_and_restores_everything():
    unet = tiny_unet()
    sample, text = unet_inputs(2, (16, 16))
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    geometry = conv_geometry(unet)
    with torch.no_grad():
        plain = unet(sample, 500, text).sample
        with restrained_dilation(unet, dilation=2) as names:
            assert names == DEFAULT
            changed = {n for n, g in conv_geometry(unet).items() if g != geometry[n]}
            assert changed == set(DEFAULT)
            assert unet.get_submodule(DEFAULT[1]).dilation == (2, 2)
            dilated = unet(sample, 500, text).sample
        assert dilated.shape == plain.shape and not torch.allclose(dilated, plain, atol=1e-4)
        assert conv_geometry(unet) == geometry
        assert torch.equal(unet(sample, 500, text).sample, plain)
    assert all(torch.equal(v, state[k]) for k, v in unet.state_dict().items())


def test_dilation_restores_after_an_exception():
    unet = tiny_unet()
    geometry = conv_geometry(unet)
    with pytest.raises(RuntimeError, match="boom"):
        with restrained_dilation(unet, levels=(2, 3), dilation=4):
            raise RuntimeError("boom")
    assert conv_geometry(unet) == geometry
