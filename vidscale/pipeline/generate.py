"""``vidscale generate PROMPT``: VideoCrafter2 at its base size, then the FreeScale self-cascade.

1. check the sizes: the final size must be the base size times 2, 4, ... (one x2 stage each);
2. load the model and encode the prompt;
3. base stage: full DDIM sampling at the base size; clips longer than one temporal window use
   windowed temporal attention and FreeNoise's noise rescheduling;
4. each cascade stage: upsample the clean latent (latent space), re-noise with one noise draw and
   denoise the remaining steps with dilation, scale fusion and detail control (``refine``);
5. decode and write the clip (temporary name, renamed on success).

:func:`plan_generate` (``--dry-run``) makes step 1's checks, and those of the model and the
output, without running anything.
"""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..atomic import check_target, make_folder
from ..backends import as_backend
from ..errors import SettingsError
from ..freescale import upsample_latent
from ..media import VideoWriter
from ..media.write import check_output
from ..media.codecs import output_suffix
from ..model import resolve_model_path
from ..model.loading import resolve_spec
from ..progress import Progress
from ..settings import Settings
from ..work.plan import estimate_seconds, generate_tflops
from .base import sample_base
from .denoise import StepHook
from .loading import load_model, this_machine
from .refine import Denoiser, refine
from .result import GenerateResult
from .steps import to_rgb16



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
    """``SLUG_WxH.mp4`` in the current folder; the slug keeps the prompt's letters in any script."""
    slug = re.sub(r"[\W_]+", "-", settings.sampling.prompt.lower()).strip("-")[:48].strip("-") or "clip"
    g = settings.generate
    return Path(f"{slug}_{g.width}x{g.height}{output_suffix(settings.output.codec)}")


def plan_generate(settings: Settings, *, output: Path | None = None) -> dict[str, Any]:
    """``generate --dry-run``: what :func:`generate_clip` checks before it starts (sizes, output
    name and folder, the weights), and what it would make; nothing is loaded or written."""
    factors = cascade_factors(settings)
    output = Path(output) if output is not None else default_output(settings)
    check_output(output, settings.output.codec)
    g = settings.generate
    spec = resolve_spec(settings.model.path)
    tflops = generate_tflops(settings, spec.cost)
    machine = this_machine(settings.model)
    return {"engine": f"{spec.family} + freescale cascade", "output": str(output),
            "codec": settings.output.codec, "model": str(resolve_model_path(settings.model.path)),
            "width": g.width, "height": g.height, "frames": g.frames,
            "frame_rate": generation_fps(settings, spec.fps), "steps": settings.sampling.steps,
            "stages": [f"{g.base_width}x{g.base_height}"] + [
                f"{g.base_width * f}x{g.base_height * f}" for f in factors],
            "tflops_total": tflops, "machine": machine, "estimate_seconds": estimate_seconds(tflops, machine)}


def generate_clip(settings: Settings, *, output: Path | None = None, overwrite: bool = False,
                  progress: Progress | None = None, model: Any = None) -> GenerateResult:
    """Generate a clip for ``settings.sampling.prompt`` at ``settings.generate``'s size."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. sizes
    cascade_factors(settings)
    output = Path(output) if output is not None else default_output(settings)
    check_target(output, overwrite=overwrite)
    check_output(output, settings.output.codec)
    make_folder(output.parent, exit_code=2)
    g, sampling = settings.generate, settings.sampling
    # 2. model
    backend = as_backend(model or load_model(settings.model))
    generator = torch.Generator(backend.device).manual_seed(sampling.seed)
    # 3. and 4. base stage and cascade
    latents = generate_latents(backend, settings, generator=generator, progress=progress)
    # 5. decode and write
    fps = generation_fps(settings, backend.spec.fps)
    with VideoWriter(output, width=g.width, height=g.height, source=None, settings=settings.output,
                     frame_rate=Fraction(fps), overwrite=overwrite) as writer:
        for frames in decoded_rgb16(backend, latents, progress):
            writer.write(frames)
    return GenerateResult(output=output, prompt=sampling.prompt, width=g.width, height=g.height,
                          frames=g.frames, frame_rate=Fraction(fps),
                          codec=settings.output.codec, seed=sampling.seed,
                          elapsed_seconds=time.perf_counter() - started, test_model=backend.spec.is_test_model)


def generation_fps(settings: Settings, model_fps: int) -> int:
    """The frame rate the model is conditioned on (VC2) and the clip is written at: ``sampling.fps``,
    else the model family's own (``model_fps``)."""
    return settings.sampling.fps or model_fps


@torch.no_grad()
def generate_latents(model: Any, settings: Settings, *, generator: torch.Generator,
                     progress: Progress | None = None, after_step: StepHook | None = None) -> torch.Tensor:
    """Steps 3 and 4 in memory: base sampling, then each cascade stage; the final (1, C, f, h, w) latents.

    The CLI (:func:`generate_clip`) and the diffusers pipelines call this same function, so the
    same generator state and settings give the same frames. ``after_step`` runs after every
    denoising step of every stage.
    """
    factors = cascade_factors(settings)
    backend = as_backend(model)
    g, method = settings.generate, settings.freescale
    eps_fn = backend.predictor(settings.sampling, fps=generation_fps(settings, backend.spec.fps))
    # 3. base stage
    spatial = backend.spec.grid.spatial
    base_latent = (g.base_height // spatial, g.base_width // spatial)
    noise = backend.initial_noise(g.frames, base_latent, generator, method)
    with backend.base_patches(method, frames=g.frames):
        latents = sample_base(backend, eps_fn, noise, steps=settings.sampling.steps, eta=settings.sampling.eta,
                              scheduler=settings.sampling.scheduler, generator=generator,
                              progress=progress, after_step=after_step)
    # 4. cascade
    for factor in factors:
        target = (base_latent[0] * factor, base_latent[1] * factor)
        reference = upsample_latent(latents, target, method.upsample_mode)
        stage_noise = randn_tensor(reference.shape, generator=generator, device=backend.device, dtype=torch.float32)
        denoiser = Denoiser(
            eps_fn=eps_fn,
            stage_patches=lambda t=target, f=factor: backend.stage_patches(
                method, base_latent=base_latent, target_latent=t, scale=f),
            step_patches=lambda i, f=factor: backend.step_patches(
                method, step_index=i, num_steps=settings.sampling.steps, scale=f),
        )
        latents = refine(denoiser, backend.schedule, reference, stage_noise, settings, generator=generator,
                         progress=progress, after_step=after_step)
    return latents


def decoded_rgb16(model: Any, latents: torch.Tensor, progress: Progress) -> Iterator[np.ndarray]:
    """The latents decoded batch by batch as (n, H, W, 3) uint16 RGB: what is written."""
    backend = as_backend(model)
    with progress.bar("decode", total=backend.spec.grid.frames(latents.shape[2]), unit="frame") as bar:
        for pixels in backend.decoded(latents):
            yield to_rgb16(pixels)
            bar.update(pixels.shape[0])
