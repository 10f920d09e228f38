"""Restrained dilated convolution: widen the receptive field of the deep layers, nothing else.

At x2 a 3x3 convolution sees half as much of the subject as it did at the training size, and the
deepest layers (which lay out the scene) then repeat objects. Dilating their 3x3 SPATIAL convs by
the scale restores their reach; FreeScale's restraint is to leave everything else alone: up blocks
(which paint detail), ``conv_in`` / ``conv_out``, 1x1 shortcuts (dilation is meaningless there)
and the temporal (3, 1, 1) convs of a video UNet (their axis is time, which is not upscaled).

Which down levels (CHOICE, setting ``freescale.dilate_levels``, default ``(3,)``): the released
SDXL code dilates the deepest down level, the downsampler feeding it and the mid block. VC2's
spatial UNet is SD 2.x's four levels (40x64, 20x32, 10x16, 5x8 latent tokens at 320x512), and
ScaleCrafter's own dilation tables for SD 1.5 / 2.1 at x2 (the same topology) dilate exactly the
deepest level ``down_blocks.3`` and the mid block on the way down. So the default is level 3 +
mid + ``down_blocks.2.downsamplers.0.conv``: the layers whose 5x8 base map is where the global
layout lives. ``(2, 3)`` is the wider alternative to try when objects still repeat.

Entering and leaving only swap two tuple attributes per conv (no copies), so the pipeline can
enter this context for each early step and leave it for the late ones. Under ``torch.compile`` the
two states are two cached graphs (module attributes are guarded), not a recompile per step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Sequence, TypeGuard

from torch import nn

if TYPE_CHECKING:
    from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel


def dilated_conv_names(unet: UNet3DConditionModel, levels: Sequence[int] = (3,), mid: bool = True) -> list[str]:
    """Module paths of the convs :func:`restrained_dilation` dilates, in model order.

    For each level ``l``: ``down_blocks.l.resnets.*.conv1/conv2`` and the downsampler that feeds
    level ``l`` (``down_blocks.{l-1}.downsamplers.0.conv``; level 0 is fed by ``conv_in``, which
    is never dilated); with ``mid``: ``mid_block.resnets.*.conv1/conv2``. Only 3x3 ``Conv2d``
    modules qualify, which excludes temporal Conv3d layers and 1x1 shortcuts by construction.
    """
    return list(_dilated_convs(unet, levels, mid))


def _dilated_convs(unet: UNet3DConditionModel, levels: Sequence[int], mid: bool) -> dict[str, nn.Conv2d]:
    """The convs of :func:`dilated_conv_names`, by module path."""
    n_levels = len(unet.down_blocks)
    for level in levels:
        if not 0 <= level < n_levels:
            raise ValueError(f"dilate level {level} does not exist; this UNet has levels 0..{n_levels - 1}")
    prefixes = [f"down_blocks.{level}.resnets." for level in levels]
    prefixes += [f"down_blocks.{level - 1}.downsamplers." for level in levels if level > 0]
    if mid:
        prefixes.append("mid_block.resnets.")
    return {
        name: module
        for name, module in unet.named_modules()
        if any(name.startswith(p) for p in prefixes) and _is_spatial_3x3(module, name)
    }


def _is_spatial_3x3(module: nn.Module, name: str) -> TypeGuard[nn.Conv2d]:
    """A resnet conv1/conv2 or a downsampler conv that is a 3x3 Conv2d."""
    leaf = name.rsplit(".", 1)[-1]
    return (
        leaf in ("conv1", "conv2", "conv")
        and isinstance(module, nn.Conv2d)
        and tuple(module.kernel_size) == (3, 3)
    )


@contextmanager
def restrained_dilation(
    unet: UNet3DConditionModel, *, levels: Sequence[int] = (3,), mid: bool = True, dilation: int = 2
) -> Iterator[list[str]]:
    """Dilate the convs named by :func:`dilated_conv_names` (dilation = padding = ``dilation``).

    Yields the names of the dilated convs. On exit (also on an exception) every conv gets back its
    own ``dilation`` and ``padding``; weights are never touched. The inverse is leaving the block.
    ``dilation`` is the upscale factor of the stage (2 at x2); padding equal to it keeps every
    map size unchanged, strided downsamplers included.
    """
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    found = _dilated_convs(unet, levels, mid)
    convs = list(found.values())
    saved = [(conv.dilation, conv.padding) for conv in convs]
    try:
        for conv in convs:
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)
        yield list(found)
    finally:
        for conv, (old_dilation, old_padding) in zip(convs, saved):
            conv.dilation = old_dilation
            conv.padding = old_padding


__all__ = ["dilated_conv_names", "restrained_dilation"]
