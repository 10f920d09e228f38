"""Frame-consistent chunks: per-frame noise, trajectory anchoring, and spatial tiles.

Why anchoring rather than a crossfade: VC2's spatial layers and VAE are per frame and its temporal
convolutions are local, so a chunk only needs to *see* its predecessor's last frames to continue
its motion. Chunk k records the latents of its last ``overlap`` frames before every UNet call;
chunk k+1 overwrites its first ``overlap`` frames with them at the same step. Chunk k+1 then
continues chunk k's trajectory, and every output frame is owned by exactly one chunk: nothing is
blended, dropped or duplicated, and the result does not depend on where the chunks were cut.
The price is order: chunks run one after another (a crossfade could run them in parallel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Interrupted
from ..work.plan import Chunk, Tile, UpscalePlan
from ..work.store import JobStore
from ..progress import Progress
from ..settings import Settings
from .denoise import EpsFn
from .refine import Denoiser, refine

_GOLDEN = 0x9E3779B97F4A7C15  # spreads consecutive frame indices over the seed space


def frame_noise(seed: int, frames: Sequence[int], shape: tuple[int, ...], *,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise of shape (1, C, F, H, W), each frame drawn from a generator keyed by (seed, frame).

    Keyed per frame, a frame gets the same noise whichever chunk it lands in, so the result does
    not depend on the chunking or on a resume. Drawn on the CPU so CPU and GPU runs agree.
    """
    draws = []
    for frame in frames:
        generator = torch.Generator("cpu").manual_seed((seed + frame * _GOLDEN) % 2**63)
        draws.append(torch.randn(shape, generator=generator, dtype=torch.float32))
    return torch.stack(draws, dim=1).unsqueeze(0).to(device=device, dtype=dtype)


class Anchor:
    """A before-model hook that continues the previous chunk's trajectory and records its own.

    ``previous`` holds (steps, 1, C, anchored, H, W): the previous chunk's last frames before
    each model call; they replace this chunk's first ``anchored`` frames at the same step.
    ``keep`` is how many of this chunk's last frames the next chunk will need.
    """

    def __init__(self, previous: torch.Tensor | None, anchored: int, keep: int):
        if anchored and previous is None:
            raise ValueError("an anchored chunk needs the previous chunk's trajectory")
        self.previous = previous
        self.anchored = anchored
        self.keep = keep
        self._recorded: list[torch.Tensor] = []

    def __call__(self, step: int, t: int, x: torch.Tensor) -> torch.Tensor:
        index = len(self._recorded)
        if self.anchored:
            x = x.clone()
            x[:, :, : self.anchored] = self.previous[index].to(device=x.device, dtype=x.dtype)
        self._recorded.append(x[:, :, x.shape[2] - self.keep:].detach().cpu())
        return x

    def trajectory(self) -> torch.Tensor:
        """What this chunk hands the next one: (steps, 1, C, keep, H, W)."""
        return torch.stack(self._recorded)


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1 inside, rising linearly over ``overlap`` cells at an inner edge (never 0)."""
    ramp = torch.ones(length)
    steps = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if not at_start and overlap:
        ramp[:overlap] = steps
    if not at_end and overlap:
        ramp[length - overlap:] = steps.flip(0)
    return ramp


def tile_weights(tile: Tile, latent: tuple[int, int], overlap: int) -> torch.Tensor:
    """Smooth blending weights (H, W) of one tile: flat inside, linear ramps where tiles meet."""
    rows = _ramp(tile.height, overlap, tile.top == 0, tile.top + tile.height == latent[0])
    cols = _ramp(tile.width, overlap, tile.left == 0, tile.left + tile.width == latent[1])
    return rows[:, None] * cols[None, :]


def tiled(eps_fn: EpsFn, tiles: Sequence[Tile], overlap: int) -> EpsFn:
    """Predict noise tile by tile (bounded memory) and blend the tiles with smooth weights."""

    def run(x: torch.Tensor, t: int) -> torch.Tensor:
        latent = (x.shape[-2], x.shape[-1])
        total = torch.zeros_like(x)
        weight = torch.zeros(latent, device=x.device, dtype=x.dtype)
        for tile in tiles:
            rows = slice(tile.top, tile.top + tile.height)
            cols = slice(tile.left, tile.left + tile.width)
            w = tile_weights(tile, latent, overlap).to(device=x.device, dtype=x.dtype)
            total[..., rows, cols] += eps_fn(x[..., rows, cols], t) * w
            weight[rows, cols] += w
        return total / weight

    return run


@dataclass
class ChunkInputs:
    """What one chunk is denoised from: (1, C, F, H, W) latents and the frames' source pts."""

    reference: torch.Tensor
    pts: torch.Tensor
    alpha: torch.Tensor | None = None  # per-pixel detail exponent (a --detail-mask); None: settings'


def denoise_chunks(plan: UpscalePlan, store: JobStore, *, inputs: Callable[[Chunk], ChunkInputs],
                   denoiser: Callable[[Chunk], Denoiser], schedule, settings: Settings, progress: Progress,
                   should_stop: Callable[[], bool] | None = None) -> None:
    """Denoise every unfinished chunk in order, each anchored to the one before, and save it."""
    with progress.bar("chunks", total=len(plan.chunks), unit="chunk") as bar:
        for chunk in plan.chunks:
            if chunk.index not in store.finished:
                _denoise_chunk(plan, store, chunk, inputs(chunk), denoiser(chunk), schedule, settings,
                               progress)
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped after chunk {chunk.index + 1} of {len(plan.chunks)}; "
                                      "run the same command again to resume")
            bar.update(1)


def _denoise_chunk(plan, store, chunk, data: ChunkInputs, denoiser, schedule, settings, progress) -> None:
    keep = plan.chunks[chunk.index + 1].anchored if chunk.index + 1 < len(plan.chunks) else 0
    previous = store.load_chunk(chunk.index - 1)["trajectory"] if chunk.anchored else None
    _, channels, _, height, width = data.reference.shape
    noise = frame_noise(settings.sampling.seed, range(chunk.start, chunk.end), (channels, height, width),
                        device=data.reference.device, dtype=data.reference.dtype)
    anchor = Anchor(previous, chunk.anchored, keep)
    # DDIM's step noise (eta > 0 only), keyed by (seed, chunk) so a resumed chunk draws it again
    steps = torch.Generator("cpu").manual_seed((settings.sampling.seed - (chunk.start + 1) * _GOLDEN) % 2**63)
    latents = refine(denoiser, schedule, data.reference, noise, settings, anchor=anchor, alpha=data.alpha, generator=steps,
                     progress=progress)
    store.save_chunk(chunk.index, {"latents": latents[:, :, chunk.anchored:], "pts": data.pts[chunk.anchored:],
                                   "trajectory": anchor.trajectory()},
                     {"frames": [chunk.start, chunk.end]})
