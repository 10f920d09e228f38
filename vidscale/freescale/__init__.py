"""FreeScale for video, as plain torch over diffusers modules: any ``UNet3DConditionModel``
(VideoCrafter2) and Wan's ``WanTransformer3DModel``.

Pieces (each usable alone):
- :mod:`.cascade`: restart step, latent upsampling, re-noising, detail control c(t), alpha maps.
- :mod:`.dilation`: restrained dilated convolution (a context manager, entered per early step).
- :mod:`.fusion`: scale fusion of local and global spatial self-attention (reference / fast NPA).
- :mod:`.temporal`: FreeNoise temporal windows for clips longer than the model's 16 frames.
- :mod:`.guidance`: ScaleDiff's frequency split, latent frequency mixing, structure guidance.
- :mod:`.transformer`: scale fusion in a video transformer's 3-D self-attention.
- :mod:`.rope`: rotary positions above the trained size (extrapolated, interpolated, NTK).
- :mod:`.blur`, :mod:`.windows`, :mod:`.attention`: the shared filter, window geometry and
  batched attention machinery.

Settings-driven entry points for the pipeline: :func:`freescale_patches` for a whole high stage
of a UNet (attention processors) and :func:`freescale_step` for one of its steps (dilation while
early); :func:`transformer_patches` for a whole high stage of a transformer. Every patch is a
context manager whose exit restores the model exactly.

What carries over to a transformer (Wan): the cascade (restart, re-noising, c(t); the flow
matching path is the model layer's), scale fusion (over all frames, local in h and w) and
ScaleDiff's latent frequency mixing and structure guidance, which work on latents and apply
unchanged. Restrained dilation has NO counterpart: a transformer's blocks hold no convolutions
to dilate. Its rotary positions are a new choice (:mod:`.rope`, default argued there).

Choices the method leaves open, each argued where it is made:
- dilated levels for VC2 (deepest level + the downsampler feeding it + mid): :mod:`.dilation`;
- window placement (last window moved back to the border, no padding, no jitter): :mod:`.windows`;
- blur axes (spatial, as the paper; the released 3-D filter as an option), blur borders
  (replicated, exact on constants) and fusion before ``to_out``: :mod:`.blur`, :mod:`.fusion`;
- low-pass filter (DCT resampling, an exact projection): :mod:`.guidance`;
- structure-guidance weight schedule (cosine like c(t), strongest at the restart): :mod:`.guidance`;
- a transformer's local windows (base size in h and w, all frames): :mod:`.transformer`;
- a transformer's rotary positions above the trained size (extrapolated): :mod:`.rope`.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import TYPE_CHECKING, ContextManager, Iterator

from ..errors import SettingsError
from ..settings import FreeScaleSettings
from .attention import AttentionModel
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
from .rope import rope_positions, rope_tables
from .temporal import TemporalWindowProcessor, reschedule_noise, temporal_attention_names, temporal_windows
from .transformer import (
    TransformerFusionProcessor,
    token_grid,
    transformer_fusion,
    transformer_self_attention_names,
)

if TYPE_CHECKING:
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel


@contextmanager
def freescale_patches(
    unet: AttentionModel,
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


@contextmanager
def transformer_patches(
    transformer: WanTransformer3DModel,
    settings: FreeScaleSettings,
    *,
    base_size: tuple[int, int],
    target_size: tuple[int, int],
    scale: int,
) -> Iterator[None]:
    """Install the patches of one high stage of a Wan transformer, as ``settings`` asks; undo them
    on exit (also on an exception).

    Scale fusion on every ``blocks.N.attn1`` unless ``settings.fusion == "off"`` (``sigma`` and
    ``blur`` as for a UNet), and the rotary positions of ``settings.rope``. Sizes are LATENT
    (height, width); the token grids are those over the patch size (Wan: (1, 2, 2)); frames are
    whatever the latent holds. ``scale`` is the stage's upscale factor. The UNet-only settings
    (dilation, temporal windows) do not apply: see the package docstring.
    """
    patch = tuple(transformer.config["patch_size"])
    with ExitStack() as stack:
        if settings.fusion != "off":
            stack.enter_context(transformer_fusion(
                transformer, base_size=base_size, target_size=target_size, mode=settings.fusion,
                sigma=settings.sigma, scale=scale, blur=settings.blur,
            ))
        stack.enter_context(rope_positions(
            transformer.rope, settings.rope,
            base_tokens=token_grid(base_size, patch), target_tokens=token_grid(target_size, patch),
        ))
        yield


def freescale_step(
    unet: UNet3DConditionModel, settings: FreeScaleSettings, *, step_index: int, num_steps: int, scale: int
) -> ContextManager[object]:
    """The per-step patch: restrained dilation (factor ``scale``) while ``step_index`` (in the full
    schedule) is below ``dilate_tau * num_steps``, else nothing. Enter it around each UNet call."""
    if settings.dilation and scale > 1 and dilation_active(step_index, num_steps, settings.dilate_tau):
        return restrained_dilation(unet, levels=settings.dilate_levels, mid=True, dilation=scale)
    return nullcontext()


__all__ = [
    "freescale_patches", "freescale_step", "transformer_patches",
    "restart_index", "dilation_active", "detail_weight", "detail_control", "alpha_map",
    "upsample_latent", "stage_noise", "renoise",
    "dilated_conv_names", "restrained_dilation",
    "scale_fusion", "ScaleFusionProcessor", "fuse_scales", "spatial_self_attention_names",
    "temporal_windows", "TemporalWindowProcessor", "temporal_attention_names", "reschedule_noise",
    "transformer_fusion", "TransformerFusionProcessor", "transformer_self_attention_names",
    "token_grid", "rope_positions", "rope_tables",
    "gaussian_blur", "released_blur", "fusion_kernel_size",
    "low_pass", "high_pass", "latent_frequency_mix", "structure_guidance", "guidance_weight_schedule",
]
