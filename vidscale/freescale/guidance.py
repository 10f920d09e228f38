"""ScaleDiff's latent-space helpers (arXiv 2510.25818): frequency split, LFM, structure guidance.

Low/high split (CHOICE). ScaleDiff splits by "downsample by a factor, upsample back". We do that
resampling in the DCT-II domain: keep the first ``round(factor * n)`` cosine coefficients per
axis and transform back at full size. That is an orthogonal PROJECTION (``low(low(x)) ==
low(x)``, ``low(high(x)) == 0``), which an area-down / bilinear-up pair is not, so:
- structure guidance with weight 1 gives the prediction exactly the reference's low band (a
  non-projecting filter would leave a residue of its own low band every step), and
- latent frequency mixing is exact: the mix's low band IS the latent upsample's, its high band
  IS the RGB path's, with no leakage between the two.
The DCT's implied mirror extension avoids the wrap-around of an FFT low-pass (no bleeding between
opposite borders). The operator is two small matrices per call (h x h and w x w), applied to every
frame and channel by one batched matmul each, in float32.
"""

from __future__ import annotations

import math

import torch

from .cascade import detail_weight


def _dct_low_projector(n: int, factor: float, device: torch.device) -> torch.Tensor:
    """(n, n) projector onto the first ``round(factor * n)`` (at least 1) DCT-II basis vectors."""
    keep = min(n, max(1, round(factor * n)))
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)  # orthonormal DC row
    return (basis.T @ basis).to(device=device, dtype=torch.float32)


def low_pass(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Low band of ``x`` over its last two axes: DCT resampling down by ``factor`` and back.

    ``x`` is (..., H, W), e.g. a latent clip (B, C, F, H, W): frames are filtered one by one,
    never across time. ``factor`` in (0, 1]; 1 returns ``x`` (up to float rounding).
    """
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"low-pass factor must be in (0, 1], got {factor}")
    rows = _dct_low_projector(x.shape[-2], factor, x.device)
    cols = _dct_low_projector(x.shape[-1], factor, x.device)
    return (rows @ x.float() @ cols).to(x.dtype)


def high_pass(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x - low_pass(x, factor)``."""
    return x - low_pass(x, factor)


def latent_frequency_mix(latent_up: torch.Tensor, rgb_latent: torch.Tensor, factor: float) -> torch.Tensor:
    """LFM reference latent: low band of the latent-space upsample + high band of the RGB path.

    ``latent_up``: the base latent upsampled in latent space (right structure, decodes with
    artifacts); ``rgb_latent``: the decoded base frames upsampled in RGB and re-encoded by the VAE
    (clean but over-smooth high band). Both (B, C, F, H, W) at the target size; the VAE calls
    belong to the pipeline.
    """
    return rgb_latent + low_pass(latent_up - rgb_latent, factor)


def structure_guidance(
    z0: torch.Tensor, reference: torch.Tensor, weight: float | torch.Tensor, factor: float
) -> torch.Tensor:
    """Pull the low band of a predicted clean latent toward the reference's by ``weight``.

    ``z0 - weight * (low(z0) - low(reference))``: weight 0 returns ``z0``, weight 1 replaces the
    low band by the reference's and keeps ``z0``'s high band. The sampler then continues its step
    from the guided prediction. For upscaling an existing clip, ``reference`` is the clip's own
    latent (upsampled, or the LFM mix); for generation, stage 1's result.
    """
    return z0 - weight * low_pass(z0 - reference, factor)


def guidance_weight_schedule(
    t: int | float | torch.Tensor, weight_max: float, power: float = 1.0, T: int = 1000
) -> torch.Tensor:
    """Structure-guidance weight at timestep ``t``: ``weight_max * ((1 + cos(pi (T - t) / T)) / 2) ** power``.

    CHOICE: the same cosine as detail control, so guidance is strongest at the restart (t = 681:
    0.77 * weight_max with power 1) when the layout is being decided, fades through the middle
    (0.50 at t = 501, 0.21 at t = 301) and is nearly off at the end (0.025 at t = 101), when the
    steps only decide fine detail, which structure guidance must not flatten. ``power`` > 1
    releases it sooner.
    """
    return weight_max * detail_weight(t, power, T)


__all__ = [
    "low_pass", "high_pass", "latent_frequency_mix", "structure_guidance", "guidance_weight_schedule",
]
