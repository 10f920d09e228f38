"""FreeScale for video, as plain torch over diffusers modules (any ``UNet3DConditionModel``).

Pieces (each usable alone):
- :mod:`.cascade`: restart step, latent upsampling, re-noising, detail control c(t), alpha maps.
- :mod:`.dilation`: restrained dilated convolution (a context manager, entered per early step).
- :mod:`.fusion`: scale fusion of local and global spatial self-attention (reference / fast NPA).
- :mod:`.temporal`: FreeNoise temporal windows for clips longer than the model's 16 frames.
- :mod:`.guidance`: ScaleDiff's frequency split, latent frequency mixing, structure guidance.
- :mod:`.blur`, :mod:`.windows`, :mod:`.attention`: the shared filter, window geometry and
  batched attention machinery.

Two settings-driven entry points for the pipeline: :func:`freescale_patches` for a whole high
stage (attention processors) and :func:`freescale_step` for one step (dilation while early).
Every patch is a context manager whose exit restores the model exactly.

Choices the method leaves open, each argued where it is made:
- dilated levels for VC2 (deepest level + the downsampler feeding it + mid): :mod:`.dilation`;
- window placement (last window moved back to the border, no padding, no jitter): :mod:`.windows`;
- blur axes (spatial, as the paper; the released 3-D filter as an option), blur borders
  (replicated, exact on constants) and fusion before ``to_out``: :mod:`.blur`, :mod:`.fusion`;
- low-pass filter (DCT resampling, an exact projection): :mod:`.guidance`;
- structure-guidance weight schedule (cosine like c(t), strongest at the restart): :mod:`.guidance`.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import ContextManager, Iterator

from torch import nn

from ..errors import SettingsError
from ..settings import FreeScaleSettings
from .blur import fusion_kernel_size, gaussian_blur, released_blur
from .cascade import (
    alpha_map,
    detail_control,
    detail_weight,
    dilation_active,
    renoise,
    restart_index,
    stage_noise,
    upsample_latent,
)
from .dilation import dilated_conv_names, restrained_dilation
from .fusion import ScaleFusionProcessor, fuse_scales, scale_fusion, spatial_self_attention_names
from .guidance import (
    guidance_weight_schedule,
    high_pass,
    latent_frequency_mix,
    low_pass,
    structure_guidance,
)
from .temporal import TemporalWindowProcessor, reschedule_noise, temporal_attention_names, temporal_windows


@contextmanager
def freescale_patches(
    unet: nn.Module,
    settings: FreeScaleSettings,
    *,
    base_size: tuple[int, int],
    target_size: tuple[int, int],
    scale: int,
) -> Iterator[None]:
    """Install the attention patches of one high stage, as ``settings`` asks; undo them on exit.

    Scale fusion unless ``settings.fusion == "off"``; temporal windows unless
    ``settings.temporal_window == 0`` (clips of at most that many frames pass through them
    unchanged anyway). Dilation is per step: see :func:`freescale_step`. Sizes are latent
    (height, width); ``scale`` is the stage's upscale factor.
    """
    window, stride = settings.temporal_window, settings.temporal_stride
    if window == 1 or (window and stride > window):
        raise SettingsError(
            f"freescale.temporal_window = {window}, temporal_stride = {stride}: use a window of 0 "
            "(off) or 2..64 frames, and a stride no larger than the window"
        )
    with ExitStack() as stack:
        if settings.fusion != "off":
            stack.enter_context(scale_fusion(
                unet, base_size=base_size, target_size=target_size, mode=settings.fusion,
                sigma=settings.sigma, scale=scale, blur=settings.blur,
            ))
        if window:
            stack.enter_context(temporal_windows(unet, window=window, stride=stride))
        yield


def freescale_step(
    unet: nn.Module, settings: FreeScaleSettings, *, step_index: int, num_steps: int, scale: int
) -> ContextManager[object]:
    """The per-step patch: restrained dilation (factor ``scale``) while ``step_index`` (in the full
    schedule) is below ``dilate_tau * num_steps``, else nothing. Enter it around each UNet call."""
    if settings.dilation and scale > 1 and dilation_active(step_index, num_steps, settings.dilate_tau):
        return restrained_dilation(unet, levels=settings.dilate_levels, mid=True, dilation=scale)
    return nullcontext()


__all__ = [
    "freescale_patches", "freescale_step",
    "restart_index", "dilation_active", "detail_weight", "detail_control", "alpha_map",
    "upsample_latent", "stage_noise", "renoise",
    "dilated_conv_names", "restrained_dilation",
    "scale_fusion", "ScaleFusionProcessor", "fuse_scales", "spatial_self_attention_names",
    "temporal_windows", "TemporalWindowProcessor", "temporal_attention_names", "reschedule_noise",
    "gaussian_blur", "released_blur", "fusion_kernel_size",
    "low_pass", "high_pass", "latent_frequency_mix", "structure_guidance", "guidance_weight_schedule",
]
