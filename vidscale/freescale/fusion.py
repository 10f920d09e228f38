"""Scale fusion: global attention's high frequencies over local attention's low frequencies.

In every SPATIAL self-attention (attn1 of the transformer blocks in ``down_blocks.*.attentions``,
``mid_block.attentions`` and ``up_blocks.*.attentions``) of a UNet denoising a latent larger than
its training size, the attention output becomes::

    fused = G(local) + (global - G(global))  ==  global + G(local - global)

with G a small Gaussian blur over the layer's token grid (:mod:`vidscale.freescale.blur`). Global
attention alone repeats content at high resolution; local attention over windows the size of the
training grid keeps the model's notion of object size but loses coherence across windows. Taking
the low band from local and the high band from global keeps the best of both. The second form is
what runs (one blur instead of two; G is linear). Where G is the spatial blur (setting
``freescale.blur = "spatial"``), the fusion is applied before ``to_out``: the output projection
is per-token affine, G acts on every channel alike and is normalised, so the two commute and one
projection serves both branches. The ``"released"`` blur also runs over channels, which does not
commute with a projection that mixes them: it fuses the two branches' PROJECTED outputs (after
``to_out``, dropout, residual and rescale, the attention module's output as the released code
blurs it), at the cost of a second output projection.

Local branch (setting ``freescale.fusion``):
- ``reference``: FreeScale's overlapping base-size windows, stride half a window, averaged.
- ``fast``: Neighborhood Patch Attention (ScaleDiff) as the local branch; a quarter of global
  attention's cost at x2 (s^2 lower), nothing computed twice.
- ``npa-only``: NPA alone, no global branch, for maps too large for global attention.

Layers whose map is not larger than the base map in any axis run the layer's previous processor
unchanged. The windows depend only on the grid sizes, so every frame of a clip and every step
sees the same geometry: the fusion cannot introduce flicker. Cross-attention (attn2), temporal
attention and ``transformer_in`` are untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import torch

from .attention import (
    AttentionModel,
    PlanCache,
    check_plain_self_attention,
    finish_attention,
    full_attention,
    processor_names,
    project_self_attention,
    replaced_processors,
    windowed_attention,
)
from .blur import BlurMode, fusion_kernel_size, gaussian_blur, released_blur
from .windows import WindowPlan, halved, level_of, neighborhood_plan, reference_plan

FusionMode = Literal["reference", "fast", "npa-only"]

# attn1 of the spatial transformers; not temp_attentions, not transformer_in, not attn2.
SPATIAL_SELF_ATTENTION = (
    r"(down_blocks\.\d+\.|up_blocks\.\d+\.|mid_block\.)attentions\.\d+"
    r"\.transformer_blocks\.\d+\.attn1\.processor"
)


@dataclass(frozen=True)
class ScaleFusionConfig:
    """Geometry and filter of scale fusion. Sizes are latent (height, width), e.g. (40, 64), for a
    UNet; for a transformer, its token grid (latent / patch size, :mod:`.transformer`)."""

    base_size: tuple[int, int]  # the size the model was trained at (VC2: 40 x 64)
    target_size: tuple[int, int]  # the size being denoised (VC2 x2: 80 x 128)
    mode: FusionMode = "fast"
    sigma: float = 1.0  # Gaussian blur sigma
    scale: int = 2  # upscale factor of the stage: blur kernel 2 * scale - 1
    blur: BlurMode = "spatial"  # "released": 3-D over (h, w, channels), fused after to_out

    def __post_init__(self) -> None:
        if self.mode not in ("reference", "fast", "npa-only"):
            raise ValueError(f"fusion mode must be reference, fast or npa-only, got {self.mode!r}")
        if self.blur not in ("spatial", "released"):
            raise ValueError(f"fusion blur must be spatial or released, got {self.blur!r}")
        if min(*self.base_size, *self.target_size) < 1:
            raise ValueError(f"latent sizes must be positive, got {self.base_size}, {self.target_size}")

    def layer_windows(self, n_tokens: int) -> tuple[tuple[int, int], WindowPlan] | None:
        """(token grid, local-attention plan) of a layer with ``n_tokens`` tokens, or None when its
        map is not larger than the base map (then plain attention is exact)."""
        level = level_of(n_tokens, self.target_size)
        grid, base = halved(self.target_size, level), halved(self.base_size, level)
        if grid[0] <= base[0] and grid[1] <= base[1]:
            return None
        plan = reference_plan(grid, base) if self.mode == "reference" else neighborhood_plan(grid, base)
        return grid, plan


def fuse_scales(
    local: torch.Tensor, global_: torch.Tensor, grid: tuple[int, ...], kernel_size: int, sigma: float,
    blur: BlurMode = "spatial",
) -> torch.Tensor:
    """``G(local) + (global - G(global))`` for token outputs (B, N, C) on a grid of N tokens.

    ``grid`` is (h, w), or (frames, h, w) for a video transformer's tokens; G always blurs the
    last two axes (h, w), never across frames. Computed as ``global + G(local - global)``: with
    ``local == global`` it returns ``global`` exactly. ``blur`` picks G (:mod:`.blur`): over
    (h, w), or the released 3-D one over (h, w, C).
    """
    b, n, c = global_.shape
    diff = (local - global_).view(b, *grid, c)
    if blur == "released":
        return global_ + released_blur(diff, kernel_size, sigma).view(b, n, c)
    return global_ + gaussian_blur(diff, kernel_size, sigma, dims=(-3, -2)).view(b, n, c)


def fused_output(local: torch.Tensor, global_: torch.Tensor, grid: tuple[int, ...], config: ScaleFusionConfig,
                 kernel_size: int, finish: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """A layer's output from its two branches (before the output projection ``finish``): fused as
    :func:`fuse_scales`, then projected; the released 3-D filter mixes channels, so with it the
    branches are projected first and their outputs fused."""
    if config.blur == "released":
        return fuse_scales(finish(local), finish(global_), grid, kernel_size, config.sigma, "released")
    return finish(fuse_scales(local, global_, grid, kernel_size, config.sigma))


class ScaleFusionProcessor:
    """Attention processor for one spatial self-attention layer (see the module docstring).

    ``inner`` is the layer's previous processor, used unchanged where the map is not larger than
    the base map. Hidden states arrive as (B * F, h * w, C); frames are batch items, and every
    batch item gets the same windows.
    """

    def __init__(self, inner: Any, config: ScaleFusionConfig, plans: PlanCache):
        self.inner = inner
        self.config = config
        self.plans = plans
        self.kernel_size = fusion_kernel_size(config.scale)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        windows = self.plans.get(hidden_states.shape[1], hidden_states.device)
        if windows is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        check_plain_self_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        grid, plan = windows
        query, key, value = project_self_attention(attn, hidden_states)
        out = windowed_attention(query, key, value, attn.heads, plan)
        if self.config.mode == "npa-only":
            return finish_attention(attn, out, hidden_states)
        global_ = full_attention(query, key, value, attn.heads)
        return fused_output(out, global_, grid, self.config, self.kernel_size,
                            lambda x: finish_attention(attn, x, hidden_states))


def spatial_self_attention_names(unet: AttentionModel) -> list[str]:
    """The processor keys scale fusion replaces: attn1 of every spatial transformer block."""
    return processor_names(unet, SPATIAL_SELF_ATTENTION)


@contextmanager
def scale_fusion(
    unet: AttentionModel,
    *,
    base_size: tuple[int, int],
    target_size: tuple[int, int],
    mode: FusionMode = "fast",
    sigma: float = 1.0,
    scale: int = 2,
    blur: BlurMode = "spatial",
) -> Iterator[dict[str, ScaleFusionProcessor]]:
    """Install :class:`ScaleFusionProcessor` on every spatial self-attention of ``unet``.

    Sizes are latent (height, width) and may be non-square (VC2: base (40, 64), x2 (80, 128)).
    On exit (also on an exception) the previous processor objects are back on every layer.
    Yields the installed processors by processor key.
    """
    (base_h, base_w), (target_h, target_w) = base_size, target_size
    config = ScaleFusionConfig((base_h, base_w), (target_h, target_w), mode, sigma, scale, blur)
    plans = PlanCache(config.layer_windows)
    with replaced_processors(
        unet, lambda _, previous: ScaleFusionProcessor(previous, config, plans),
        spatial_self_attention_names(unet),
    ) as installed:
        yield installed


__all__ = [
    "FusionMode", "ScaleFusionConfig", "fuse_scales", "ScaleFusionProcessor",
    "spatial_self_attention_names", "scale_fusion",
]
