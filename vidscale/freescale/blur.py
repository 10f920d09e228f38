"""Gaussian blur over two spatial axes, per channel: the G of scale fusion.

Scale fusion keeps the LOW frequencies of local attention and the HIGH frequencies of global
attention, split by a small Gaussian (kernel ``2s - 1`` at scale s: 3 at x2, 7 at x4; sigma 1).

Which axes G blurs (setting ``freescale.blur``). The paper blurs the token map over (height,
width) only, each channel on its own: the split into low and high bands is a split of SPATIAL
frequencies, which is what the method argues for. So does the authors' attention file
(ali-vilab/FreeScale, ``scale_attention.py``) after its first "fix filter" commit of 7 March
2025 (as first released, its 2-D kernel met a (batch, h, w, channels) layout, blurring width and
channels). That is ``"spatial"``, the default. The file's latest version (a second "fix filter"
commit, the same day) convolves each item's attention output with a 3-D Gaussian over (height,
width, channels) instead: the same 1-D taps (size ``2s - 1``, sigma 1, normalised) on all three
axes, zero padding on all three, applied to the output of the whole attention module, after its
output projection. Neighbouring channels of a feature vector are not neighbours in any sense the
model knows, so that filter also mixes unrelated features; it is offered as ``"released"``
(:func:`released_blur`) for users who compare with the authors' images, and scale fusion then
runs after ``to_out``, as the released code does (:mod:`.fusion`).

Borders of the spatial blur are replicated, never zero-padded: zero padding darkens the border
band of the blurred map, and that dark band would leak into the fused attention output. The blur
is written as ``x + sum_j w_j * (shift_j(x) - x)`` (separable, one axis at a time): a constant
field has ``shift_j(x) - x == 0`` exactly, so it comes out exactly unchanged in any dtype, which
a convolution's float sum of weights (1 +- ulp) does not guarantee. The Gaussian is symmetric,
so taps come in pairs; the loop is over the 1 or 3 tap pairs of the kernel, not over data, and
every step is one batched elementwise op on the whole tensor. The released blur keeps the
released zero padding (fusion is linear in G, so in ``global + G(local - global)`` the padding
only pulls the border band toward global attention), separable as well.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

BlurMode = Literal["spatial", "released"]


def fusion_kernel_size(scale: int) -> int:
    """Kernel size of the fusion blur at an upscale factor: ``2 * scale - 1`` (3 at x2, 7 at x4)."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    return 2 * scale - 1


def gaussian_weights(kernel_size: int, sigma: float) -> list[float]:
    """Normalised 1-D Gaussian taps, centred (kernel_size odd)."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise ValueError(f"need an odd kernel_size >= 1 and sigma > 0, got {kernel_size}, {sigma}")
    radius = kernel_size // 2
    taps = [math.exp(-((i - radius) ** 2) / (2.0 * sigma**2)) for i in range(kernel_size)]
    total = sum(taps)
    return [tap / total for tap in taps]


def gaussian_blur(
    x: torch.Tensor, kernel_size: int, sigma: float = 1.0, dims: tuple[int, int] = (-2, -1)
) -> torch.Tensor:
    """Blur ``x`` over the two axes ``dims`` (default the last two), each channel separately.

    Any other axes are batch or channel axes: the token layout (B, h, w, C) of the attention
    processors is blurred with ``dims=(1, 2)`` without transposing to channels-first.
    """
    weights = gaussian_weights(kernel_size, sigma)
    for dim in dims:
        x = _blur_axis(x, weights, dim)
    return x


def released_blur(x: torch.Tensor, kernel_size: int, sigma: float = 1.0) -> torch.Tensor:
    """The authors' released filter on (..., h, w, C): a 3-D Gaussian over the last three axes
    (h, w, C) per batch item (and frame), zero padding, the same taps on every axis (see the
    module docstring)."""
    weights = gaussian_weights(kernel_size, sigma)
    for dim in (-3, -2, -1):
        x = _blur_axis_zero(x, weights, dim)
    return x


def _blur_axis(x: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """1-D blur along ``dim`` with replicated borders, in the exact-on-constants difference form.

    One gather builds the replicate-padded tensor; each symmetric tap pair +-j then reads two
    views of it: ``x + w_j * ((x[i - j] - x[i]) + (x[i + j] - x[i]))``.
    """
    radius = len(weights) // 2
    size = x.shape[dim]
    padded = x.index_select(dim, torch.arange(-radius, size + radius, device=x.device).clamp(0, size - 1))
    out = x
    for j in range(1, radius + 1):
        before = padded.narrow(dim, radius - j, size) - x
        after = padded.narrow(dim, radius + j, size) - x
        out = out + weights[radius + j] * (before + after)
    return out


def _blur_axis_zero(x: torch.Tensor, weights: list[float], dim: int) -> torch.Tensor:
    """1-D blur along ``dim`` with zeros beyond the borders (a convolution's default padding)."""
    radius = len(weights) // 2
    size = x.shape[dim]
    zeros = x.new_zeros((*x.shape[:dim % x.ndim], radius, *x.shape[dim % x.ndim + 1:]))
    padded = torch.cat([zeros, x, zeros], dim)
    out = weights[radius] * x
    for j in range(1, radius + 1):
        out = out + weights[radius + j] * (padded.narrow(dim, radius - j, size)
                                           + padded.narrow(dim, radius + j, size))
    return out


__all__ = ["BlurMode", "fusion_kernel_size", "gaussian_weights", "gaussian_blur", "released_blur"]
