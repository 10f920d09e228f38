"""Wan 2.x behind the backend seam: a diffusion transformer on a causal 3-D VAE's latents, flow matching.

What differs from VideoCrafter2, and why the seam hides it:

- **Noise path.** Flow matching, ``x_s = (1 - s) x0 + s eps`` at ``t = 1000 s``, predicting the
  velocity (:mod:`vidscale.model.wan_schedule`). FreeScale's self-cascade needs nothing else: the
  high stage re-noises the upsampled latent to its restart point with this ``q_sample`` (the
  flow's ``x_t``, not DDPM's), and detail control ``c(t) = ((1 + cos(pi (1000 - t) / 1000)) / 2)
  ** alpha`` reads the flow's own time. Wan's default shift (3.0) puts more of the schedule at
  high noise than VC2's, so the same ``restart_fraction`` restarts noisier; the Wan presets say
  which fraction matches VC2's restart (``presets/wan-upscale-2x.toml``).
- **Latent grid.** 16 channels, 8x in space and 4x in time with the first frame alone: clips have
  1 + 4k frames and latent sides are even (patch (1, 2, 2)). :meth:`WanBackend.initial_noise`
  takes pixel frames and maps them to latent frames.
- **Guidance.** Two transformer calls (prompt, negative prompt), each in its own diffusers
  ``cache_context``, as WanPipeline does: the transformer caches (``sampling.cache``) keep
  separate state per stream. The latent and the guidance arithmetic stay float32.
- **FreeScale's patches.** The transformer has no convolutions in its blocks, so restrained
  dilation has no counterpart (:meth:`WanBackend.step_patches` installs nothing) and neither do
  VC2's temporal windows (Wan attends over all frames at once). Scale fusion in the 3-D
  self-attention and the rotary positions above the trained size are installed for a whole
  high stage (:meth:`WanBackend.stage_patches`, :mod:`vidscale.freescale.transformer`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..errors import SettingsError
from ..freescale import transformer_patches
from ..model.wan import Wan
from ..model.wan_cache import cache_config, calibrate_mag_ratios, use_cache
from ..model.wan_schedule import FlowSchedule
from ..settings import FreeScaleSettings, SamplingSettings
from .base import EpsFn, LoadedModel


class WanBackend(LoadedModel):
    """A loaded :class:`~vidscale.model.wan.Wan` as the pipelines use it."""

    model: Wan
    schedule: FlowSchedule

    @torch.no_grad()
    def predictor(self, sampling: SamplingSettings, *, fps: int) -> EpsFn:
        """The guided velocity for the settings' prompt (``fps`` is unused: Wan is not conditioned
        on it). UMT5 runs here, once per prompt, before any denoising; ``sampling.cache`` is
        installed afresh at the start of every run the predictor serves."""
        transformer = self.model.transformer
        cond = self.model.encode_prompt(sampling.prompt)
        uncond = self.model.encode_prompt(sampling.negative_prompt) if sampling.guidance_scale > 1 else None
        use_cache(transformer, None)
        if sampling.cache == "none":
            return guided_velocity(transformer, cond, uncond, guidance_scale=sampling.guidance_scale)
        timesteps = self.schedule.timesteps(sampling.steps)
        ratios = self._mag_ratios(sampling.steps) if sampling.cache == "mag" else None

        def run_started(t: float) -> None:
            start = timesteps.index(t) if t in timesteps else 0
            use_cache(transformer, cache_config(sampling.cache, steps=sampling.steps, start=start, ratios=ratios))

        return guided_velocity(transformer, cond, uncond, guidance_scale=sampling.guidance_scale,
                               run_started=run_started)

    def _mag_ratios(self, steps: int) -> list[float]:
        """MagCache's ratios for these weights, ``steps`` and shift, calibrated once and kept on the
        model: an uncached run with the empty prompt at the model's base size and 81 frames."""
        key = (steps, self.schedule.shift)
        if key not in self.model.mag_ratios:
            velocity = guided_velocity(self.model.transformer, self.model.encode_prompt(""), None, guidance_scale=1.0)
            grid = self.spec.grid
            shape = (1, grid.channels, grid.latent_frames(81), *self.spec.base_latent)
            self.model.mag_ratios[key] = calibrate_mag_ratios(self.model.transformer, velocity, self.schedule, steps,
                                                              shape, self.device)
        return self.model.mag_ratios[key]

    def initial_noise(self, frames: int, latent_size: tuple[int, int], generator: torch.Generator,
                      method: FreeScaleSettings) -> torch.Tensor:
        """Gaussian noise on the latent grid of ``frames`` pixel frames, drawn as WanPipeline draws it."""
        grid = self.spec.grid
        if (frames - 1) % grid.temporal:
            below = (frames - 1) // grid.temporal * grid.temporal + 1
            raise SettingsError(f"generate.frames = {frames}: Wan's VAE makes 1 + {grid.temporal}k frames; "
                                f"use {below} or {below + grid.temporal} (Wan's own: 81)")
        spatial = grid.spatial * grid.multiple
        if latent_size[0] % grid.multiple or latent_size[1] % grid.multiple:
            raise SettingsError(f"generate base size {latent_size[1] * grid.spatial}x{latent_size[0] * grid.spatial}: "
                                f"Wan needs sides that are multiples of {spatial} pixels (e.g. 832x480)")
        shape = (1, grid.channels, grid.latent_frames(frames), *latent_size)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)

    def base_patches(self, method: FreeScaleSettings, *, frames: int) -> AbstractContextManager:
        """Nothing: Wan attends over all frames at once (no temporal windows to install)."""
        return nullcontext()

    def stage_patches(self, method: FreeScaleSettings, *, base_latent: tuple[int, int],
                      target_latent: tuple[int, int], scale: int) -> AbstractContextManager:
        """Scale fusion in the transformer's 3-D self-attention and the rotary-position mode
        (:func:`~vidscale.freescale.transformer_patches`)."""
        return transformer_patches(self.model.transformer, method, base_size=base_latent, target_size=target_latent,
                                   scale=scale)

    def step_patches(self, method: FreeScaleSettings, *, step_index: int, num_steps: int,
                     scale: int) -> AbstractContextManager:
        """Nothing: restrained dilation has no counterpart in a transformer (no convolutions)."""
        return nullcontext()


def guided_velocity(transformer, cond: torch.Tensor, uncond: torch.Tensor | None, *, guidance_scale: float,
                    run_started: Callable[[float], None] | None = None) -> EpsFn:
    """Velocity with classifier-free guidance: the prompt's call, then the negative prompt's.

    The transformer gets ``int(t)`` (diffusers feeds Wan int64 timesteps). Each call runs in its
    own ``cache_context``, named by stream and by its place among the calls at the same ``t`` (a
    tiled latent makes several), so a transformer cache never mixes tiles or streams. A call at a
    larger ``t`` than the last (or the first call) starts a new run: a cascade stage, the next
    chunk; ``run_started(t)`` hears of it.
    """
    last = {"t": float("inf"), "call": 0, "runs": 0}

    def call(x: torch.Tensor, timestep: torch.Tensor, states: torch.Tensor, stream: str) -> torch.Tensor:
        with transformer.cache_context(f"{stream}{last['call']}"):
            out = transformer(hidden_states=x.to(transformer.dtype), timestep=timestep,
                              encoder_hidden_states=states, return_dict=False)[0]
        return out.float()

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        if run_started is not None and (t > last["t"] or not last["runs"]):
            run_started(t)
            last["runs"] += 1
        last["call"] = last["call"] + 1 if t == last["t"] else 0
        last["t"] = t
        timestep = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.int64)
        v = call(x, timestep, cond, "cond")
        if uncond is None:
            return v
        v_uncond = call(x, timestep, uncond, "uncond")
        return v_uncond + guidance_scale * (v - v_uncond)

    return velocity
