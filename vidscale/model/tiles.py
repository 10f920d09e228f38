"""Overlapping tiles blended with linear ramps: for the UNet's latent tiles and the VAE's decode.

A function applied window by window (``fn`` of a latent window, output ``scale`` times larger
per side: 1 for a noise prediction, 8 for the VAE decoder) and blended where windows overlap,
with weights that are flat inside a tile and ramp linearly (never to 0) at inner edges, so the
seams are smooth and a lone tile covering everything returns ``fn(x)`` exactly.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch


class Box(Protocol):
    """A window (top, left, height, width) in latent cells, like ``vidscale.work.plan.Tile``."""

    @property
    def top(self) -> int: ...
    @property
    def left(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def width(self) -> int: ...


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1 inside, rising linearly over ``overlap`` cells at an inner edge (never 0)."""
    ramp = torch.ones(length)
    steps = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if not at_start and overlap:
        ramp[:overlap] = steps
    if not at_end and overlap:
        ramp[length - overlap:] = steps.flip(0)
    return ramp


def tile_weights(tile: Box, size: tuple[int, int], overlap: int, scale: int = 1) -> torch.Tensor:
    """Blending weights (H, W) of one tile of a ``size`` latent, at ``scale`` x its resolution."""
    rows = _ramp(tile.height * scale, overlap * scale, tile.top == 0, tile.top + tile.height == size[0])
    cols = _ramp(tile.width * scale, overlap * scale, tile.left == 0, tile.left + tile.width == size[1])
    return rows[:, None] * cols[None, :]


def blend_tiles(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tiles: Sequence[Box],
                overlap: int, scale: int = 1) -> torch.Tensor:
    """``fn`` over each tile of ``x``'s last two dims, blended into one output ``scale`` x larger."""
    size = (x.shape[-2], x.shape[-1])
    total = weight = None
    for tile in tiles:
        part = fn(x[..., tile.top:tile.top + tile.height, tile.left:tile.left + tile.width])
        w = tile_weights(tile, size, overlap, scale).to(part.device)
        if total is None or weight is None:  # summed in float32: bf16 sums would round at every seam
            total = part.new_zeros(*part.shape[:-2], size[0] * scale, size[1] * scale, dtype=torch.float32)
            weight = part.new_zeros(size[0] * scale, size[1] * scale, dtype=torch.float32)
        rows = slice(tile.top * scale, (tile.top + tile.height) * scale)
        cols = slice(tile.left * scale, (tile.left + tile.width) * scale)
        total[..., rows, cols] += part * w
        weight[rows, cols] += w
    if total is None or weight is None:
        raise ValueError("blend_tiles needs at least one tile")
    return (total / weight).to(part.dtype)


__all__ = ["blend_tiles", "tile_weights"]
