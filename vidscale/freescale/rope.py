"""Rotary positions of a video transformer denoising a latent larger than its training size.

Wan's transformer has no absolute position embedding: its only notion of place is the rotary
embedding (RoPE) of queries and keys in self-attention, one set of frequencies per axis (frames,
height, width; diffusers' ``WanRotaryPosEmbed``, a table of ``rope_max_seq_len`` positions per
axis, theta 10000). A token at (f, i, j) of the token grid is rotated by angles ``i * w_k`` on
its height channels and ``j * w_k`` on its width channels, so an attention logit depends only on
the OFFSET between the two tokens. At a size the model was not trained at there are three ways to
place the tokens (setting ``freescale.rope``):

- ``"extrapolate"`` (diffusers' own behaviour): positions 0, 1, 2, ... as at any size. Offsets
  between neighbours are the trained ones; offsets larger than the trained grid appear only
  between tokens further apart than the base size.
- ``"interpolate"`` (position interpolation): positions ``i * base / target`` squeezed into the
  trained range. Every offset across the picture is a trained one, but neighbours now sit at
  fractional offsets (1/2 at x2) the model never saw, on every frequency.
- ``"ntk"`` (NTK-aware scaling): theta raised to ``theta * s ** (d / (d - 2))`` per axis (``d``
  that axis's rotary channels, ``s = target / base``), which leaves the fastest frequency as
  trained and slows the slowest by exactly ``s``: the picture's overall extent is interpolated,
  neighbour offsets are (nearly) as trained.

Why ``"extrapolate"`` is the default. With scale fusion on, the low spatial frequencies of the
output (layout, object size) come from the LOCAL branch, which attends only inside windows of the
base size (:mod:`.transformer`); since logits depend only on offsets, every offset that branch
sees is one of the trained offsets, at every frequency, exactly as at the base size. Only
extrapolation keeps that: both interpolating modes shrink the angles a base-size window spans,
so the local branch would attend over a picture that looks smaller than the one it was trained on
(the object-size prior FreeScale's local branch exists to keep). The global branch does meet
offsets beyond the trained range, but fusion keeps only its high spatial frequencies, which are
decided between near tokens. Interpolation belongs where there is no local branch: fusion
``"off"`` (direct inference at the high size), where global attention alone would otherwise face
untrained offsets; ``"ntk"`` is the one tuned high-resolution Wan ports use (with training).
Which mode looks best on real Wan weights is a measurement still to make; this is the argument.

The frame axis is never rescaled: the cascade changes height and width, not the frame count.
The patch replaces the rope module's two tables (buffers of the same shape, device and dtype) and
puts the very same tensors back on exit, so hooks on the module (context parallelism, caches)
stay in place and nothing changes outside the ``with`` block.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator, Literal, get_args

import torch
from diffusers.models.embeddings import get_1d_rotary_pos_embed

if TYPE_CHECKING:
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

RopeMode = Literal["extrapolate", "interpolate", "ntk"]

THETA = 10000.0  # WanTransformer3DModel builds its WanRotaryPosEmbed with the default theta


def axis_scales(base_tokens: tuple[int, int], target_tokens: tuple[int, int]) -> tuple[float, float]:
    """How much larger the target token grid is per axis (height, width); never below 1."""
    (th, tw), (bh, bw) = target_tokens, base_tokens
    return max(1.0, th / bh), max(1.0, tw / bw)


def rope_tables(
    rope: WanRotaryPosEmbed, mode: RopeMode, scales: tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(freqs_cos, freqs_sin)`` shaped like ``rope``'s tables, the height and width channels
    recomputed for ``mode`` at ``scales`` (height, width); the frame channels are copied.

    Built the way ``WanRotaryPosEmbed`` builds its own (on the CPU, float64 frequencies, then
    float32), so at scale 1 every mode returns bit-for-bit the module's tables.
    """
    _check_mode(mode)
    length = rope.max_seq_len
    freqs_dtype = torch.float32 if torch.backends.mps.is_available() else torch.float64
    own_cos, own_sin = _tables(rope)
    cos = [own_cos[:, : rope.t_dim].cpu()]
    sin = [own_sin[:, : rope.t_dim].cpu()]
    for dim, scale in zip((rope.h_dim, rope.w_dim), scales):
        positions: torch.Tensor | int = length
        ntk_factor = 1.0
        if mode == "interpolate":
            positions = torch.arange(length, dtype=freqs_dtype) * (1.0 / scale)
        elif mode == "ntk":
            if dim <= 2:
                raise ValueError(f"NTK rope scaling needs more than 2 rotary channels per axis, got {dim}")
            ntk_factor = scale ** (dim / (dim - 2))
        axis_cos, axis_sin = get_1d_rotary_pos_embed(
            dim, positions, THETA,  # type: ignore[arg-type]  # diffusers takes a tensor, annotates ndarray | int
            use_real=True, repeat_interleave_real=True,
            ntk_factor=ntk_factor, freqs_dtype=freqs_dtype,
        )
        cos.append(axis_cos)
        sin.append(axis_sin)
    return (torch.cat(cos, dim=1).to(own_cos.device, own_cos.dtype),
            torch.cat(sin, dim=1).to(own_cos.device, own_cos.dtype))


def _tables(rope: WanRotaryPosEmbed) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's own (freqs_cos, freqs_sin) buffers."""
    return rope.get_buffer("freqs_cos"), rope.get_buffer("freqs_sin")


def _check_mode(mode: str) -> None:
    if mode not in get_args(RopeMode):
        raise ValueError(f"rope mode must be one of {', '.join(get_args(RopeMode))}, got {mode!r}")


@contextmanager
def rope_positions(
    rope: WanRotaryPosEmbed,
    mode: RopeMode,
    *,
    base_tokens: tuple[int, int],
    target_tokens: tuple[int, int],
) -> Iterator[None]:
    """Give ``rope`` the tables of ``mode`` for a stage from ``base_tokens`` to ``target_tokens``
    (token grids, (height, width)); restore on exit.

    ``"extrapolate"`` changes nothing. Otherwise the tables are first checked against the
    module's own at scale 1 (to float32 rounding: a model whose tables were computed on its GPU
    passes): a rope built differently (another theta or layout) is refused rather than rescaled
    wrongly. Its inverse is the exit of the ``with`` block (the original tensors).
    """
    _check_mode(mode)
    if max(target_tokens) > rope.max_seq_len:
        raise ValueError(f"a {target_tokens[0]}x{target_tokens[1]} token grid is past the rope "
                         f"table's {rope.max_seq_len} positions per axis (rope_max_seq_len)")
    if mode == "extrapolate":
        yield
        return
    own = rope_tables(rope, mode, (1.0, 1.0))
    if not all(torch.allclose(a.float(), b.float(), atol=1e-5, rtol=0)
               for a, b in zip(own, _tables(rope))):
        raise ValueError("this transformer's rotary tables are not WanRotaryPosEmbed's (theta "
                         f"{THETA:g}); freescale.rope = {mode!r} cannot rescale them: use 'extrapolate'")
    cos, sin = rope_tables(rope, mode, axis_scales(base_tokens, target_tokens))
    before = rope.freqs_cos, rope.freqs_sin
    try:
        rope.freqs_cos, rope.freqs_sin = cos, sin
        yield
    finally:
        rope.freqs_cos, rope.freqs_sin = before


__all__ = ["RopeMode", "axis_scales", "rope_positions", "rope_tables"]
