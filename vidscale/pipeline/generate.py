"""``vidscale generate PROMPT``: VideoCrafter2 at its base size, then the FreeScale self-cascade.

1. check the sizes: the final size must be the base size times 2, 4, ... (one x2 stage each);
2. load the model and encode the prompt;
3. base stage: full DDIM sampling at the base size; clips longer than one temporal window use
   windowed temporal attention and FreeNoise's noise rescheduling;
4. each cascade stage: upsample the clean latent (latent space), re-noise with one noise draw and
   denoise the remaining steps with dilation, scale fusion and detail control (``refine``);
5. decode and write the clip (temporary name, renamed on success).
"""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path

import torch
from diffusers.utils.torch_utils import randn_tensor

from ..atomic import check_target
from ..errors import SettingsError
from ..freescale import freescale_patches, restrained_dilation, temporal_windows, upsample_latent
from ..media import VideoWriter
from ..media.codecs import output_suffix
from ..model import VideoCrafter2
from ..progress import Progress
from ..settings import Settings
from .base import sample_base
from .conditioning import prompt_eps_fn
from .loading import load_model
from .refine import Denoiser, refine
from .result import GenerateResult
from .upscale import to_rgb16


def cascade_factors(settings: Settings) -> list[int]:
    """The scale of each cascade stage relative to the base: [2, 4] for 320x512 -> 1280x2048."""
    g = settings.generate
    ratio_w, ratio_h = Fraction(g.width, g.base_width), Fraction(g.height, g.base_height)
    if ratio_w != ratio_h or ratio_w.denominator != 1 or ratio_w.numerator & (ratio_w.numerator - 1):
        raise SettingsError(
            f"generate: size {g.width}x{g.height} is not the base {g.base_width}x{g.base_height} "
            "times 1, 2, 4, 8, ... (the cascade doubles each side per stage)")
    stages = ratio_w.numerator.bit_length() - 1
    return [2 ** (k + 1) for k in range(stages)]


def default_output(settings: Settings) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", settings.sampling.prompt.lower()).strip("-")[:48] or "clip"
    g = settings.generate
    return Path(f"{slug}_{g.width}x{g.height}{output_suffix(settings.output.codec)}")


def reschedule_noise(noise: torch.Tensor, window: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise: frames past the first window reuse the noise of earlier frames, shuffled in groups.

    Frames [i, i+stride) take the noise of frames [i-window, i-window+stride) in a random order
    (drawn from ``generator``), so every window starts from noise the model saw together.
    """
    noise = noise.clone()
    for start in range(window, noise.shape[2], stride):
        count = min(stride, noise.shape[2] - start)
        order = torch.randperm(stride, generator=generator, device=generator.device)[:count]
        noise[:, :, start:start + count] = noise[:, :, start - window + order.to(noise.device)]
    return noise


def generate_clip(settings: Settings, *, output: Path | None = None, overwrite: bool = False,
                  progress: Progress | None = None, model: VideoCrafter2 | None = None) -> GenerateResult:
    """Generate a clip for ``settings.sampling.prompt`` at ``settings.generate``'s size."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. sizes
    factors = cascade_factors(settings)
    output = Path(output) if output is not None else default_output(settings)
    check_target(output, overwrite=overwrite)
    g, sampling, method = settings.generate, settings.sampling, settings.freescale
    # 2. model
    model = model or load_model(settings.model)
    generator = torch.Generator(model.device).manual_seed(sampling.seed)
    fps = sampling.fps or 28  # VC2's official script conditions on 28
    eps_fn = prompt_eps_fn(model, sampling, fps=fps)
    # 3. base stage
    base_latent = (g.base_height // 8, g.base_width // 8)
    noise = randn_tensor((1, 4, g.frames, *base_latent), generator=generator, device=model.device,
                         dtype=torch.float32)
    if method.temporal_window and g.frames > method.temporal_window:
        noise = reschedule_noise(noise, method.temporal_window, method.temporal_stride, generator)
    with temporal_windows(model.unet, window=method.temporal_window or g.frames, stride=method.temporal_stride):
        latents = sample_base(model, eps_fn, noise, steps=sampling.steps, eta=sampling.eta,
                              scheduler=sampling.scheduler, generator=generator,
                              progress=progress)
    # 4. cascade
    for factor in factors:
        target = (base_latent[0] * factor, base_latent[1] * factor)
        reference = upsample_latent(latents, target, method.upsample_mode)
        stage_noise = randn_tensor(reference.shape, generator=generator, device=model.device, dtype=torch.float32)
        denoiser = Denoiser(
            eps_fn=eps_fn,
            stage_patches=lambda t=target, f=factor: freescale_patches(
                model.unet, method, base_size=base_latent, target_size=t, scale=f),
            step_patches=lambda _i, f=factor: restrained_dilation(model.unet, levels=method.dilate_levels, dilation=f),
        )
        latents = refine(denoiser, model.schedule, reference, stage_noise, settings, generator=generator,
                         progress=progress)
    # 5. decode and write
    with VideoWriter(output, width=g.width, height=g.height, source=None, settings=settings.output,
                     frame_rate=Fraction(fps), overwrite=overwrite) as writer:
        with progress.bar("decode", total=g.frames, unit="frame") as bar:
            for pixels in model.decoded(latents):
                writer.write(to_rgb16(pixels))
                bar.update(pixels.shape[0])
    return GenerateResult(output=output, prompt=sampling.prompt, width=g.width, height=g.height,
                          frames=g.frames, frame_rate=Fraction(fps),
                          codec=settings.output.codec, seed=sampling.seed,
                          elapsed_seconds=time.perf_counter() - started, test_model=model.is_test_model)
