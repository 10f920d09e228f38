"""Gaussian blur over two spatial axes, per channel: the G of scale fusion.

Scale fusion keeps the LOW frequencies of local attention and the HIGH frequencies of global
attention, split by a small Gaussian (kernel ``2s - 1`` at scale s: 3 at x2, 7 at x4; sigma 1).

Borders are replicated, never zero-padded: zero padding darkens the border band of the blurred
map, and that dark band would leak into the fused attention output. The blur is written as
``x + sum_j w_j * (shift_j(x) - x)`` (separable, one axis at a time): a constant field has
``shift_j(x) - x == 0`` exactly, so it comes out exactly unchanged in any dtype, which a
convolution's float sum of weights (1 +- ulp) does not guarantee. The Gaussian is symmetric, so
taps come in pairs; the loop is over the 1 or 3 tap pairs of the kernel, not over data, and every
step is one batched elementwise op on the whole tensor.
"""

from __future__ import annotations

import math

import torch


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


__all__ = ["fusion_kernel_size", "gaussian_weights", "gaussian_blur"]
