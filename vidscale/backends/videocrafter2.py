"""VideoCrafter2 behind the backend seam: a UNet3D with fps conditioning, DDPM with ``scale_arr``.

FreeScale's parts for a UNet: restrained dilation of the deepest convolutions while a high stage
is early (:func:`~vidscale.freescale.freescale_step`), spatial scale fusion and FreeNoise temporal
windows for the whole stage (:func:`~vidscale.freescale.freescale_patches`), and the same temporal
windows plus FreeNoise's noise rescheduling at the base stage of clips longer than a window.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..freescale import freescale_patches, freescale_step, reschedule_noise, temporal_windows
from ..model import VideoCrafter2
from ..model.schedule import VC2Schedule
from ..model.unet import VC2UNet
from ..settings import FreeScaleSettings, SamplingSettings
from .base import EpsFn, LoadedModel


class VC2Backend(LoadedModel):
    """A loaded :class:`~vidscale.model.VideoCrafter2` as the pipelines use it."""

    model: VideoCrafter2
    schedule: VC2Schedule

    @torch.no_grad()
    def predictor(self, sampling: SamplingSettings, *, fps: int) -> EpsFn:
        """The UNet's noise prediction for the settings' prompt, guided against the negative prompt
        (one batched CFG call if the guidance scale is > 1)."""
        cond = self.model.encode_prompt([sampling.prompt])
        uncond = self.model.encode_prompt([sampling.negative_prompt]) if sampling.guidance_scale > 1 else None
        return guided_eps_fn(self.model.unet, cond, uncond, guidance_scale=sampling.guidance_scale, fps=fps)

    def initial_noise(self, frames: int, latent_size: tuple[int, int], generator: torch.Generator,
                      method: FreeScaleSettings) -> torch.Tensor:
        """Gaussian noise; frames past the first temporal window reuse earlier frames' noise
        (FreeNoise), so every window starts from noise the model saw together."""
        noise = randn_tensor((1, self.spec.grid.channels, frames, *latent_size), generator=generator,
                             device=self.device, dtype=torch.float32)
        if method.temporal_window and frames > method.temporal_window:
            noise = reschedule_noise(noise, method.temporal_window, method.temporal_stride, generator)
        return noise

    def base_patches(self, method: FreeScaleSettings, *, frames: int) -> AbstractContextManager:
        return temporal_windows(self.model.unet, window=method.temporal_window or frames,
                                stride=method.temporal_stride)

    def stage_patches(self, method: FreeScaleSettings, *, base_latent: tuple[int, int],
                      target_latent: tuple[int, int], scale: int) -> AbstractContextManager:
        return freescale_patches(self.model.unet, method, base_size=base_latent, target_size=target_latent,
                                 scale=scale)

    def step_patches(self, method: FreeScaleSettings, *, step_index: int, num_steps: int,
                     scale: int) -> AbstractContextManager:
        return freescale_step(self.model.unet, method, step_index=step_index, num_steps=num_steps, scale=scale)


def guided_eps_fn(unet: VC2UNet, cond: torch.Tensor, uncond: torch.Tensor | None, *, guidance_scale: float,
                  fps: int) -> EpsFn:
    """Noise prediction with classifier-free guidance in ONE batched UNet call.

    ``uncond`` is the empty prompt's features (VC2 guides against the empty string, with the
    same fps); without it (scale <= 1) the prompt alone is used. The UNet runs in its own dtype
    (bf16 on CUDA); the latents and the guidance arithmetic stay float32, so the sampler's small
    per-step updates are not rounded away.
    """
    context = cond if uncond is None else torch.cat([uncond, cond])

    def eps(x: torch.Tensor, t: float) -> torch.Tensor:
        batch = x if uncond is None else torch.cat([x, x])
        timestep = torch.full((batch.shape[0],), t, device=x.device, dtype=torch.int64)
        states = context.repeat_interleave(x.shape[0], dim=0)  # [uncond] * B + [cond] * B, like batch
        out = unet(batch.to(unet.dtype), timestep, states, fps=fps, return_dict=False)[0].to(x.dtype)
        if uncond is None:
            return out
        eps_uncond, eps_cond = out.chunk(2)
        return eps_uncond + guidance_scale * (eps_cond - eps_uncond)

    return eps
