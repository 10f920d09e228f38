"""Region-aware detail: a matte turned into FreeScale's per-pixel detail exponent for one chunk.

Where the matte is white the high stage uses ``freescale.alpha_mask``, where it is black
``freescale.alpha`` (:func:`vidscale.freescale.alpha_map`). The matte is read at the size the
visible picture has on the target latent grid and padded like the picture is (edge replicated),
so a matte edge lands on the same latent cells as the picture edge it follows.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..freescale import alpha_map
from ..media import VideoInfo
from ..media.matte import open_matte, read_matte
from ..settings import Settings
from ..work.plan import UpscalePlan


def detail_alpha(settings: Settings, clip: VideoInfo, plan: UpscalePlan, start: int,
                 end: int) -> torch.Tensor | None:
    """(1, 1, F or 1, h, w) exponents for clip frames ``start .. end``; None without a mask."""
    if not settings.upscale.detail_mask:
        return None
    geometry = plan.geometry
    height, width = geometry.target_latent_size
    visible = (math.ceil(height * geometry.height / geometry.padded_height),
               math.ceil(width * geometry.width / geometry.padded_width))
    matte = open_matte(Path(settings.upscale.detail_mask), clip)
    cover = torch.from_numpy(read_matte(matte, start, end, size=(visible[1], visible[0])))
    cover = F.pad(cover[:, None], (0, width - visible[1], 0, height - visible[0]), mode="replicate")
    method = settings.freescale
    return alpha_map(cover[:, 0], method.alpha_mask, method.alpha, (height, width))
