"""The tailored self-cascade: where a high stage restarts, how its reference is made, detail control.

A high stage (x2 per side) takes a clean latent ``z0`` (stage 1's result, or an existing clip's
encoded frames), upsamples it in latent space, re-noises it with ONE noise draw that is reused at
every timestep (``ref_t = q_sample(z0_up, t, eps)``) and denoises only the remaining steps. Before
every UNet call the current latent is pulled toward that reference by detail control::

    c(t) = ((1 + cos(pi * (T - t) / T)) / 2) ** alpha        z_t <- c * ref_t + (1 - c) * z_t

so early (large t) the stage follows the upsampled structure and late (small t) it is free to
invent detail. ``alpha`` may be a per-pixel map (region-aware detail: more freedom where the mask
is set). Nothing here calls a model: the pipeline passes tensors and its schedule's ``q_sample``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

# (z0, t, noise) -> z_t; the VC2 schedule's q_sample includes its signal scale (scale_arr).
QSample = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
UpsampleMode = Literal["bicubic", "bilinear", "nearest"]

_EPS = 1e-9  # absorbs float error in fraction * steps (0.29 * 100 = 28.999999999999996)


def restart_index(num_steps: int, fraction: float) -> int:
    """Index of the first sampling step a high stage runs: ``floor(fraction * num_steps)``.

    The released code uses ``int(0.3 * N)``: with VC2's 50 DDIM steps (981, 961, ..., 1) that is
    step 15, t = 681, and the stage runs the remaining 35 steps. A fraction of 1 still runs the
    last step.
    """
    if num_steps < 1 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"need num_steps >= 1 and 0 <= fraction <= 1, got {num_steps}, {fraction}")
    return min(num_steps - 1, math.floor(fraction * num_steps + _EPS))


def dilation_active(step_index: int, num_steps: int, tau: float) -> bool:
    """Whether restrained dilation is on at ``step_index`` (of the full schedule): index < tau * N.

    With tau = 0.7 and 50 steps the convolutions are dilated for steps 0..34 and original for the
    last 15, where only fine detail is decided.
    """
    return step_index < math.floor(tau * num_steps + _EPS)


def detail_weight(
    t: int | float | torch.Tensor, alpha: float | torch.Tensor, T: int = 1000
) -> torch.Tensor:
    """Detail-control weight ``c(t) = ((1 + cos(pi * (T - t) / T)) / 2) ** alpha`` in [0, 1].

    ``t`` is the discrete timestep (681 at the VC2 restart). ``alpha`` is a float or a tensor map
    (see :func:`alpha_map`); the result broadcasts like ``alpha``. Larger alpha -> smaller c ->
    more freedom from the reference.
    """
    t = torch.as_tensor(t, dtype=torch.float64)
    base = (1.0 + torch.cos(math.pi * (T - t) / T)) / 2.0
    return (base ** torch.as_tensor(alpha, dtype=torch.float64)).float()  # same rounding for maps


def detail_control(
    x_t: torch.Tensor, ref_t: torch.Tensor, t: int | float | torch.Tensor, alpha: float | torch.Tensor
) -> torch.Tensor:
    """``c(t) * ref_t + (1 - c(t)) * x_t``: pull the current latent toward the re-noised reference."""
    c = detail_weight(t, alpha).to(device=x_t.device, dtype=x_t.dtype)
    return torch.lerp(x_t, ref_t, c)


def alpha_map(
    mask: torch.Tensor, alpha_fg: float, alpha_bg: float, latent_size: tuple[int, int]
) -> torch.Tensor:
    """Per-pixel detail exponent ``mask * alpha_fg + (1 - mask) * alpha_bg`` as (1, 1, F, h, w).

    ``mask`` is (F, H, W) (one per frame) or (1, H, W) (one for the clip), values in [0, 1], at
    any resolution: it is resized to the latent size with nearest sampling so that a hard mask
    stays hard (a smooth resize would invent alpha values between the two settings).
    """
    if mask.ndim != 3:
        raise ValueError(f"mask must be (F, H, W) or (1, H, W), got shape {tuple(mask.shape)}")
    small = F.interpolate(mask[:, None].float(), size=latent_size, mode="nearest-exact")[:, 0]
    alpha = small * alpha_fg + (1.0 - small) * alpha_bg  # (F, h, w)
    return alpha[None, None]


def upsample_latent(
    z: torch.Tensor, size: tuple[int, int], mode: UpsampleMode = "bicubic"
) -> torch.Tensor:
    """Resize each frame of a latent clip (B, C, F, h, w) to (B, C, F, *size).

    Frames are resized independently (never across time). "nearest" uses torch's
    ``nearest-exact`` (pixel centres aligned), which is what nearest means for non-integer ratios.
    """
    b, c, f, h, w = z.shape
    frames = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    torch_mode = "nearest-exact" if mode == "nearest" else mode
    corners = None if mode == "nearest" else False
    big = F.interpolate(frames, size=size, mode=torch_mode, align_corners=corners)
    return big.reshape(b, f, c, *size).permute(0, 2, 1, 3, 4)


def stage_noise(z0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """The single noise draw of a high stage, from the job's generator (reused at every t)."""
    return randn_tensor(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)


def renoise(
    z0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor, q_sample: QSample
) -> torch.Tensor:
    """``ref_t = q_sample(z0, t, noise)`` with the model's own schedule (VC2: with scale_arr)."""
    return q_sample(z0, torch.as_tensor(t, device=z0.device), noise)


__all__ = [
    "QSample", "UpsampleMode", "restart_index", "dilation_active", "detail_weight",
    "detail_control", "alpha_map", "upsample_latent", "stage_noise", "renoise",
]
