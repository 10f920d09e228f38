"""Settings-driven entry points (the patches under torch.compile: tests/test_compile.py)."""

import dataclasses

import pytest
from freescale_tiny import tiny_unet

from vidscale.errors import SettingsError
from vidscale.freescale import (
    freescale_patches,
    freescale_step,
    spatial_self_attention_names,
    temporal_attention_names,
)
from vidscale.settings import FreeScaleSettings


def replaced(unet, before):
    return {k for k, p in unet.attn_processors.items() if p is not before[k]}


def test_patches_follow_the_settings_and_are_undone():
    unet = tiny_unet()
    before = dict(unet.attn_processors)
    spatial, temporal = set(spatial_self_attention_names(unet)), set(temporal_attention_names(unet))
    sizes = dict(base_size=(8, 8), target_size=(16, 16), scale=2)
    with freescale_patches(unet, FreeScaleSettings(), **sizes):
        assert replaced(unet, before) == spatial | temporal
    off = FreeScaleSettings(fusion="off", temporal_window=0)
    with freescale_patches(unet, off, **sizes):
        assert replaced(unet, before) == set()
    with freescale_patches(unet, dataclasses.replace(off, fusion="npa-only"), **sizes):
        assert replaced(unet, before) == spatial
    with pytest.raises(RuntimeError, match="boom"):
        with freescale_patches(unet, FreeScaleSettings(), **sizes):
            raise RuntimeError("boom")
    assert replaced(unet, before) == set()


@pytest.mark.parametrize("window, stride", [(1, 1), (4, 5)])
def test_bad_temporal_settings_name_the_keys(window, stride):
    settings = FreeScaleSettings(temporal_window=window, temporal_stride=stride)
    with pytest.raises(SettingsError, match="freescale.temporal_window"):
        with freescale_patches(tiny_unet(), settings, base_size=(8, 8), target_size=(16, 16), scale=2):
            pass


def test_dilation_is_on_for_early_steps_only():
    unet = tiny_unet()
    conv = unet.get_submodule("down_blocks.3.resnets.0.conv1")
    settings = FreeScaleSettings()
    with freescale_step(unet, settings, step_index=34, num_steps=50, scale=2):
        assert conv.dilation == (2, 2)
    with freescale_step(unet, settings, step_index=35, num_steps=50, scale=2):
        assert conv.dilation == (1, 1)
    no_dilation = dataclasses.replace(settings, dilation=False)
    with freescale_step(unet, no_dilation, step_index=0, num_steps=50, scale=2):
        assert conv.dilation == (1, 1)
    wider = dataclasses.replace(settings, dilate_levels=(2, 3))
    with freescale_step(unet, wider, step_index=0, num_steps=50, scale=4):
        assert unet.get_submodule("down_blocks.2.resnets.0.conv1").dilation == (4, 4)
    assert conv.dilation == (1, 1)
