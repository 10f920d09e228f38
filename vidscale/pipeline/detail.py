"""Region-aware detail: a matte turned into FreeScale's per-pixel detail exponent for one chunk.

Where the matte is white the high stage uses ``freescale.alpha_mask``, where it is black
``freescale.alpha`` (:func:`vidscale.freescale.alpha_map`). The matte is read at the size the
visible picture has on the target latent grid and padded like the picture is (edge replicated),
so a matte edge lands on the same latent cells as the picture edge it follows. In time it is
folded onto the latent grid like the frames are: on a temporally compressed grid a latent frame
gets the mean coverage of the frames it holds (the tail padded with the last frame, as the
picture is).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..freescale import alpha_map
from ..media import VideoInfo
from ..media.matte import open_matte, read_matte
from ..model.spec import LatentGrid
from ..settings import Settings
from ..work.plan import UpscalePlan


def detail_alpha(settings: Settings, clip: VideoInfo, plan: UpscalePlan, start: int,
                 end: int, *, pad: int = 0) -> torch.Tensor | None:
    """(1, 1, f or 1, h, w) exponents for the latent frames of clip frames ``start .. end`` (and
    ``pad`` copies of the last); None without a mask."""
    if not settings.upscale.detail_mask:
        return None
    geometry = plan.geometry
    height, width = geometry.target_latent_size
    visible = (math.ceil(height * geometry.height / geometry.padded_height),
               math.ceil(width * geometry.width / geometry.padded_width))
    matte = open_matte(Path(settings.upscale.detail_mask), clip)
    cover = torch.from_numpy(read_matte(matte, start, end, size=(visible[1], visible[0])))
    cover = F.pad(cover[:, None], (0, width - visible[1], 0, height - visible[0]), mode="replicate")[:, 0]
    if matte.info is not None:  # a video matte; a still covers every frame as it is
        cover = on_latent_frames(torch.cat([cover, cover[-1:].expand(pad, -1, -1)]) if pad else cover, plan.grid)
    method = settings.freescale
    return alpha_map(cover, method.alpha_mask, method.alpha, (height, width))


def on_latent_frames(per_frame: torch.Tensor, grid: LatentGrid) -> torch.Tensor:
    """(F, ...) values of F frames on ``grid`` -> (f, ...) per latent frame: the lone first frame
    as it is, then the mean over each ``temporal`` frames (VC2: unchanged)."""
    if grid.temporal == 1:
        return per_frame
    lone, groups = per_frame[:grid.lone], per_frame[grid.lone:]
    return torch.cat([lone, groups.reshape(-1, grid.temporal, *groups.shape[1:]).mean(1)])
