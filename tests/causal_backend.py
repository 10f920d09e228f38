"""A TEST DOUBLE of a model family with a causal, temporally compressed VAE (Wan's 1 + 4k grid).

It is not a model and makes no pictures worth looking at: it implements the
:class:`~vidscale.backends.Backend` protocol with a few lines of arithmetic, so the pipelines'
grid handling (padding, chunk boundaries, anchoring, noise keys, decoding with context, the job
store, segments) can be checked without Wan's weights or diffusers' Wan classes.

- ``encode_frames``: a clip of ``1 + 4k`` frames -> ``1 + k`` latent frames, as a causal VAE
  does: frame 0 alone, then the mean of each following 4 frames; in space the mean of each 2x2
  pixels (3 latent channels: the colours). Any other frame count is refused, as Wan's VAE would.
- ``decoded``: a causal decoder: latent 0 -> its frame; latent j -> 4 frames moving linearly
  from latent j-1 to latent j. It needs the previous latent frame as context: a chunk's own
  latents decoded alone would start with one frame instead of four, from the wrong place.
- ``predictor``: a stand-in network, NOT trained and NOT an oracle: its clean-latent estimate of
  a latent frame is the mean of the current latent's signal part there and one latent frame
  before, so what a chunk makes depends on its temporal context (through the anchored latents),
  as with a temporal layer. (The oracle tests give ``denoise_chunks`` a per-chunk oracle instead.)
- ``schedule``: VideoCrafter2's DDPM schedule; no FreeScale patches.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from vidscale.backends import BACKENDS
from vidscale.model.schedule import VC2Schedule
from vidscale.model.spec import LatentGrid, ModelSpec

GRID = LatentGrid(channels=3, spatial=2, temporal=4, causal=True, multiple=2)


class CausalTestBackend:
    """The test double described above (register it with :func:`registered` to pass ``as_backend``)."""

    def __init__(self, base_size: tuple[int, int] = (32, 32)):
        self.spec = ModelSpec(family="causal-test-double", name="causal-test-double", is_test_model=True,
                              base_size=base_size, grid=GRID, fps=16)
        self.schedule = VC2Schedule()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        frames = pixels.shape[0]
        if (frames - 1) % GRID.temporal:
            raise ValueError(f"a causal VAE encodes 1 + {GRID.temporal}k frames, got {frames}")
        small = F.avg_pool2d(pixels.float(), GRID.spatial)  # (F, 3, h, w)
        groups = small[1:].reshape(-1, GRID.temporal, *small.shape[1:]).mean(1)
        return torch.cat([small[:1], groups]).permute(1, 0, 2, 3).unsqueeze(0)

    def decoded(self, latents: torch.Tensor, *, tiles: Sequence = (), overlap: int = 0,
                pixels_per_pass: int = 2**21) -> Iterator[torch.Tensor]:
        z = latents[0].permute(1, 0, 2, 3)  # (f, C, h, w)
        yield _to_pixels(z[:1])
        steps = torch.arange(1, GRID.temporal + 1, dtype=z.dtype).view(-1, 1, 1, 1) / GRID.temporal
        for previous, current in zip(z, z[1:]):
            yield _to_pixels(torch.lerp(previous.expand(GRID.temporal, -1, -1, -1), current, steps))

    def predictor(self, sampling, *, fps: int):
        def eps(x: torch.Tensor, t: float) -> torch.Tensor:
            signal = self.schedule.pred_x0(x, torch.zeros_like(x), t)
            before = torch.cat([signal[:, :, :1], signal[:, :, :-1]], dim=2)
            return self.schedule.eps_from_x0(x, (before + signal) / 2, t)
        return eps

    def initial_noise(self, frames, latent_size, generator, method) -> torch.Tensor:
        return torch.randn((1, GRID.channels, frames, *latent_size), generator=generator)

    def base_patches(self, method, *, frames):
        return nullcontext()

    def stage_patches(self, method, *, base_latent, target_latent, scale):
        return nullcontext()

    def step_patches(self, method, *, step_index, num_steps, scale):
        return nullcontext()


def _to_pixels(z: torch.Tensor) -> torch.Tensor:
    return z.repeat_interleave(GRID.spatial, dim=2).repeat_interleave(GRID.spatial, dim=3)


def registered(monkeypatch) -> CausalTestBackend:
    """A backend that :func:`vidscale.backends.as_backend` passes through, for this test only."""
    monkeypatch.setitem(BACKENDS, CausalTestBackend, CausalTestBackend)
    return CausalTestBackend()
