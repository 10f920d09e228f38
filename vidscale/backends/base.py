"""The seam between the pipelines and a model family: what upscaling and generation need of a model.

The pipelines (chunk plan, anchoring, job store, background I/O, segments, detail mask, cascade)
know only this interface; each family implements it over its own modules. FreeScale's parts live
where their mechanism lives, so a backend also says which patches a stage installs: dilation and
spatial scale fusion in VideoCrafter2's UNet, 3-D scale fusion in Wan's transformer.

Conventions every backend keeps:

- latents are float32, shape (1, C, F, h, w) on the latent grid of :attr:`ModelSpec.grid`; the
  model itself may run in bf16/fp16 (the backend casts at its boundary);
- "eps" is the model's prediction in its own parameterisation (noise for VC2's DDPM, velocity
  for Wan's flow matching): the schedule turns it into a clean-latent estimate and back;
- timesteps are on the model's 0..1000 scale, so FreeScale's restart index and detail control
  c(t) read the same for every family;
- every random draw comes from a generator the caller passes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator, Protocol, Sequence, TypeVar

import torch

from ..model.solvers import Solver
from ..model.spec import VAE_PIXELS_PER_PASS, ModelSpec
from ..model.tiles import Box
from ..settings import FreeScaleSettings, SamplingSettings

EpsFn = Callable[[torch.Tensor, float], torch.Tensor]  # (latents (B, C, F, h, w), t) -> prediction
# A family's timestep: int for VC2's discrete DDPM steps, float for Wan's flow times (both 0..1000).
Timestep = TypeVar("Timestep")


class NoiseSchedule(Protocol[Timestep]):
    """A family's noising path and its samplers, over its own timesteps."""

    def timesteps(self, num_steps: int) -> Sequence[Timestep]:
        """The ``num_steps`` timesteps of a full sampling run, from most to least noisy."""

    def q_sample(self, z0: torch.Tensor, t: Timestep, noise: torch.Tensor) -> torch.Tensor:
        """``z0`` noised to timestep ``t`` with ``noise`` (FreeScale's restart and detail control)."""

    def pred_x0(self, x_t: torch.Tensor, eps: torch.Tensor, t: Timestep) -> torch.Tensor:
        """The clean latent that the prediction ``eps`` at ``t`` implies."""

    def eps_from_x0(self, x_t: torch.Tensor, z0: torch.Tensor, t: Timestep) -> torch.Tensor:
        """The prediction that implies the clean latent ``z0`` (after structure guidance)."""

    def solver(self, name: str, *, eta: float = 0.0, generator: torch.Generator | None = None) -> Solver:
        """A fresh sampler ``name`` (``sampling.scheduler``) for one run over this schedule."""


class Backend(Protocol):
    """A loaded model of one family, as the pipelines use it."""

    spec: ModelSpec

    @property
    def schedule(self) -> NoiseSchedule[Any]:
        """The family's schedule: the pipelines hand it back only the timesteps it gave them."""

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def predictor(self, sampling: SamplingSettings, *, fps: int) -> EpsFn:
        """The prompt's guided prediction ``(x, t) -> eps`` (the prompt encoded once, CFG batched)."""

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1] -> (1, C, f, h, w) float32 latents (deterministic: the mean)."""

    def decoded(self, latents: torch.Tensor, *, tiles: Sequence[Box] = (), overlap: int = 0,
                pixels_per_pass: int = VAE_PIXELS_PER_PASS) -> Iterator[torch.Tensor]:
        """(1, C, f, h, w) latents -> successive (n, 3, H, W) pixel batches in about [-1, 1]."""

    def initial_noise(self, frames: int, latent_size: tuple[int, int], generator: torch.Generator,
                      method: FreeScaleSettings) -> torch.Tensor:
        """The starting noise of text-to-video at the base size, drawn from ``generator``."""

    def base_patches(self, method: FreeScaleSettings, *, frames: int) -> AbstractContextManager:
        """What the base (1x) stage of generation runs under (VC2: temporal windows)."""

    def stage_patches(self, method: FreeScaleSettings, *, base_latent: tuple[int, int],
                      target_latent: tuple[int, int], scale: int) -> AbstractContextManager:
        """What a whole FreeScale high stage runs under (scale fusion, temporal windows)."""

    def step_patches(self, method: FreeScaleSettings, *, step_index: int, num_steps: int,
                     scale: int) -> AbstractContextManager:
        """What one step of a high stage runs under (VC2: restrained dilation while early)."""


class LoadedModel:
    """What every backend holds: the loaded model, and its schedule, spec, device and dtype (read
    from the model at each call, so a model moved to another device is followed)."""

    def __init__(self, model: Any):
        self.model = model
        self.schedule = model.schedule
        self.spec: ModelSpec = model.spec

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frames(pixels)

    def decoded(self, latents: torch.Tensor, *, tiles: Sequence[Box] = (), overlap: int = 0,
                pixels_per_pass: int = VAE_PIXELS_PER_PASS) -> Iterator[torch.Tensor]:
        return self.model.decoded(latents, tiles=tiles, overlap=overlap, pixels_per_pass=pixels_per_pass)
