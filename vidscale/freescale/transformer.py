"""Scale fusion in the 3-D self-attention of a video diffusion transformer (diffusers' Wan).

A UNet attends over each frame's spatial map and, separately, over time; Wan's transformer
attends once over ALL tokens of the clip: the latent cut into (1, 2, 2) patches gives a token
grid of (frames, h, w) = (latent frames, latent height / 2, latent width / 2), flattened in that
order. FreeScale's scale fusion carries over to that attention (``blocks.N.attn1``; ``attn2`` is
cross-attention to the text and stays untouched):

- global branch: the layer's own attention over every token, computed exactly as diffusers'
  ``WanAttnProcessor`` does (projections, RMS norms across heads, rotary embedding, the model's
  attention backend, output projection), so where the branch is all there is, nothing changes;
- local branch: attention inside neighbourhoods of the BASE token grid in (h, w), each taking
  its rectangle in all frames: local in space as FreeScale's windows are, global in time, because
  the cascade enlarges only height and width and the model was trained to attend over the clip's
  full length. Windows as for the UNet (:mod:`.windows`): ``"reference"`` overlapping base-size
  windows, stride half a window; ``"fast"`` neighbourhood patch attention; ``"npa-only"`` the
  latter alone, without the global branch;
- fusion, FreeScale's eq. 7: ``global + G(local - global)``, the high spatial frequencies of
  global attention over the low ones of local attention, G the Gaussian over (h, w) of the token
  grid (never across frames; kernel ``2s - 1``, sigma ``freescale.sigma``), before the output
  projection (a per-token affine map commutes with G), or after it for the released 3-D blur
  (:mod:`.fusion` says why).

A layer whose token grid is not larger than the base grid in h or w runs its previous processor
unchanged: fusion at the base size is bit-for-bit plain attention. Local windows run on the
layer's attention backend (``set_attention_backend``) as the global branch does; the windows
need every token on one device, so context parallelism is refused.

What does not carry over. Restrained dilation has no counterpart: the blocks hold no spatial
convolutions (the only convolution is the patch embedding, kernel = stride = patch, with no
neighbourhood to dilate), and the receptive-field argument behind it is what the local branch and
the rotary positions (:mod:`.rope`) address in a transformer. FreeNoise's temporal windows are
VideoCrafter2's (16 trained frames); Wan attends over its clip length. ScaleDiff's latent
frequency mixing and structure guidance work on latents and apply unchanged (:mod:`.guidance`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn

from .attention import (
    AttentionModel,
    PlanCache,
    check_plain_self_attention,
    full_attention,
    processor_names,
    replaced_processors,
    windowed_attention,
)
from .blur import BlurMode, fusion_kernel_size
from .fusion import FusionMode, ScaleFusionConfig, fused_output
from .windows import WindowPlan, neighborhood_plan, reference_plan

if TYPE_CHECKING:
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel

TRANSFORMER_SELF_ATTENTION = r"blocks\.\d+\.attn1\.processor"


def token_grid(latent_size: tuple[int, int], patch_size: tuple[int, ...]) -> tuple[int, int]:
    """The (h, w) token grid of a latent (height, width) under a (t, h, w) patch size."""
    (height, width), (_, ph, pw) = latent_size, patch_size
    if height % ph or width % pw:
        raise ValueError(f"a {height}x{width} latent is not a whole number of {ph}x{pw} patches")
    return height // ph, width // pw


def token_windows(
    config: ScaleFusionConfig, n_tokens: int
) -> tuple[tuple[int, int, int], WindowPlan] | None:
    """((frames, h, w), local-attention plan) for ``n_tokens`` tokens of ``config``'s target grid,
    or None when that grid is not larger than the base grid (plain attention is exact there)."""
    (h, w), (bh, bw) = config.target_size, config.base_size
    frames, rest = divmod(n_tokens, h * w)
    if rest or not frames:
        raise ValueError(f"{n_tokens} tokens are not whole frames of the {h}x{w} token grid this "
                         "stage was patched for")
    if h <= bh and w <= bw:
        return None
    plan_of = reference_plan if config.mode == "reference" else neighborhood_plan
    return (frames, h, w), plan_of((h, w), (bh, bw), frames)


def rotary_self_attention(
    attn: Any, hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys, values (B, N, heads, head_dim) of a ``WanAttention`` self-attention, as
    ``WanAttnProcessor`` computes them: projections (fused or not), RMS norms across heads,
    rotary embedding on queries and keys (pairs of channels rotated)."""
    if getattr(attn, "fused_projections", False):
        query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    query, key = attn.norm_q(query), attn.norm_k(key)
    query, key, value = (x.unflatten(2, (attn.heads, -1)) for x in (query, key, value))
    if rotary_emb is not None:
        query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
    return query, key, value


def _rotate(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2k, 2k + 1) by the tables' angles; the same float ops as diffusers'."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = freqs_cos[..., 0::2], freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class TransformerFusionProcessor:
    """Attention processor for one ``blocks.N.attn1`` of a Wan transformer (module docstring).

    ``inner`` is the layer's previous processor, run unchanged where the token grid is not larger
    than the base grid. Its attention backend and parallel config are read and written through
    this object, so ``set_attention_backend`` acts on both while the patch is installed.
    """

    def __init__(self, inner: Any, config: ScaleFusionConfig, plans: PlanCache):
        self.inner = inner
        self.config = config
        self.plans = plans
        self.kernel_size = fusion_kernel_size(config.scale)

    @property
    def _attention_backend(self) -> Any:
        return getattr(self.inner, "_attention_backend", None)

    @_attention_backend.setter
    def _attention_backend(self, backend: Any) -> None:
        self.inner._attention_backend = backend

    @property
    def _parallel_config(self) -> Any:
        return getattr(self.inner, "_parallel_config", None)

    @_parallel_config.setter
    def _parallel_config(self, config: Any) -> None:
        self.inner._parallel_config = config

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        windows = self.plans.get(hidden_states.shape[1], hidden_states.device)
        if windows is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        check_plain_self_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        if self._parallel_config is not None:
            raise ValueError("scale fusion needs all tokens on one device; context parallelism splits them")
        grid, plan = windows
        query, key, value = (x.flatten(2) for x in rotary_self_attention(attn, hidden_states, rotary_emb))
        out = windowed_attention(query, key, value, attn.heads, plan, self._attend)
        if self.config.mode == "npa-only":
            return _project_out(attn, out)
        global_ = full_attention(query, key, value, attn.heads, self._attend)
        return fused_output(out, global_, grid, self.config, self.kernel_size, lambda x: _project_out(attn, x))

    def _attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The model's attention kernel on (batch, heads, L, d), which diffusers' dispatcher takes
        as (batch, L, heads, d): the transposes are views."""
        out = dispatch_attention_fn(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
            backend=self._attention_backend,
        )
        return out.transpose(1, 2)


def _project_out(attn: Any, out: torch.Tensor) -> torch.Tensor:
    """``to_out``: the output projection and its dropout, as ``WanAttnProcessor`` ends."""
    return attn.to_out[1](attn.to_out[0](out))


def transformer_self_attention_names(transformer: AttentionModel) -> list[str]:
    """The processor keys transformer fusion replaces: ``blocks.N.attn1`` (not ``attn2``)."""
    return processor_names(transformer, TRANSFORMER_SELF_ATTENTION)


@contextmanager
def transformer_fusion(
    transformer: WanTransformer3DModel,
    *,
    base_size: tuple[int, int],
    target_size: tuple[int, int],
    mode: FusionMode = "fast",
    sigma: float = 1.0,
    scale: int = 2,
    blur: BlurMode = "spatial",
) -> Iterator[dict[str, TransformerFusionProcessor]]:
    """Install :class:`TransformerFusionProcessor` on every self-attention of ``transformer``.

    Sizes are LATENT (height, width); the token grids are those divided by the transformer's
    patch size. On exit (also on an exception) the previous processor objects are back on every
    layer. Yields the installed processors by processor key.
    """
    patch = tuple(transformer.config["patch_size"])
    config = ScaleFusionConfig(
        token_grid(base_size, patch), token_grid(target_size, patch), mode, sigma, scale, blur
    )
    names = transformer_self_attention_names(transformer)
    if not names:
        raise ValueError(f"{type(transformer).__name__} has no blocks.N.attn1 self-attention: "
                         "transformer fusion is for Wan-style transformers")
    plans = PlanCache(lambda n_tokens: token_windows(config, n_tokens))
    with replaced_processors(
        transformer, lambda _, previous: TransformerFusionProcessor(previous, config, plans), names,
    ) as installed:
        yield installed


__all__ = [
    "token_grid", "token_windows", "rotary_self_attention", "TransformerFusionProcessor",
    "transformer_self_attention_names", "transformer_fusion",
]
