"""The steps of an upscale, shared by every path that runs one: the plain file job
(:mod:`.upscale`), the segmented and cluster job (:mod:`.segments`) and frames in memory
(:mod:`.frames`, the diffusers pipeline). One definition each of what must agree between them:

- :func:`plan_for_model`: the plan for this model (its base size, precision and VAE width);
- :func:`job_identity`: what decides the result, and so whether a stopped job may resume;
- the chunk steps: read and encode a chunk (:func:`chunk_inputs`, :func:`reference_latent`,
  :func:`to_model_pixels`), the denoiser with its FreeScale patches (:func:`upscale_denoiser`),
  and decode a saved chunk (:func:`decoded_chunk`, :func:`to_rgb16`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..freescale import freescale_patches, freescale_step, latent_frequency_mix, upsample_latent
from ..media import VideoInfo, read_frames
from ..model import VideoCrafter2
from ..settings import JobSettings, Settings
from ..work.plan import Chunk, UpscalePlan, make_plan
from ..work.store import JobStore, fingerprint
from .chunks import ChunkInputs, tiled
from .conditioning import prompt_eps_fn
from .detail import detail_alpha
from .refine import Denoiser

RESULT_SECTIONS = ("upscale", "model", "sampling", "freescale", "jobs")  # what a job's frames depend on


def plan_for_model(width: int, height: int, frame_range: tuple[int, int], settings: Settings,
                   model: VideoCrafter2) -> UpscalePlan:
    """The plan of an upscale of ``frame_range`` of a ``width x height`` clip with ``model``: its
    base size sets the fusion windows, its precision and VAE width the memory."""
    return make_plan(width, height, frame_range, settings,
                     base_latent=(model.base_height // 8, model.base_width // 8),
                     dtype_bytes=torch.finfo(model.dtype).bits // 8,
                     vae_width=model.vae.config.block_out_channels[1])


def job_identity(source: Path, plan: UpscalePlan, settings: Settings, model: VideoCrafter2) -> dict[str, Any]:
    """Everything that decides a job's frames: the input file, the frames, the settings that
    change the result, the model and the detail matte's content. A stopped job resumes only
    into a job of the same identity (its folder is named by this identity's hash)."""
    identity: dict[str, Any] = {"input": fingerprint(source), "frames": plan.frame_range,
                                "settings": result_settings(settings).digest(*RESULT_SECTIONS),
                                "model": model.name}
    if settings.upscale.detail_mask:  # a changed matte must not resume the old chunks
        identity["detail_mask"] = content_digest(Path(settings.upscale.detail_mask))
    return identity


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes: a matte rewritten with the same size and mtime still differs."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upscale_denoiser(model: VideoCrafter2, settings: Settings, plan: UpscalePlan, *, fps: int) -> Denoiser:
    """The VC2 UNet with the prompt, CFG, tiles and the FreeScale patches of this plan."""
    eps_fn = prompt_eps_fn(model, settings.sampling, fps=fps)
    tile = (plan.tiles[0].height, plan.tiles[0].width) if plan.tiles else plan.geometry.target_latent_size
    if plan.tiles:
        eps_fn = tiled(eps_fn, plan.tiles, plan.tile_overlap)
    method = dataclasses.replace(settings.freescale, fusion=plan.fusion)
    scale = plan.geometry.fusion_scale
    return Denoiser(
        eps_fn=eps_fn,
        stage_patches=lambda: freescale_patches(model.unet, method, base_size=plan.geometry.base_latent,
                                                target_size=tile, scale=scale),
        step_patches=lambda i: freescale_step(model.unet, method, step_index=i,
                                              num_steps=settings.sampling.steps, scale=scale),
    )


def chunk_inputs(model: VideoCrafter2, info: VideoInfo, plan: UpscalePlan, chunk: Chunk,
                 settings: Settings) -> ChunkInputs:
    """Read a chunk's frames and build its reference latent at the target size."""
    first = plan.frame_range[0]
    frames, pts = [], []
    for part in read_frames(info, first + chunk.start, first + chunk.end):
        frames.append(part.frames)
        pts.extend(part.pts)
    reference = reference_latent(model, plan, np.concatenate(frames), settings)
    return ChunkInputs(reference=reference, pts=torch.tensor(pts, dtype=torch.int64),
                       alpha=detail_alpha(settings, info, plan, first + chunk.start, first + chunk.end))


def reference_latent(model: VideoCrafter2, plan: UpscalePlan, frames: np.ndarray, settings: Settings) -> torch.Tensor:
    """(F, H, W, 3) integer RGB frames -> their reference latent at the target size (in memory)."""
    pixels = to_model_pixels(frames, plan, model)
    latent = model.encode_frames(pixels)
    target = plan.geometry.target_latent_size
    reference = upsample_latent(latent, target, settings.freescale.upsample_mode)
    if settings.freescale.frequency_mixing or settings.freescale.upsample == "rgb":
        size = (target[0] * 8, target[1] * 8)
        rgb = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        rgb_latent = model.encode_frames(rgb)
        reference = (rgb_latent if settings.freescale.upsample == "rgb"
                     else latent_frequency_mix(reference, rgb_latent, settings.freescale.mixing_factor))
    return reference


def to_model_pixels(frames: np.ndarray, plan: UpscalePlan, model: VideoCrafter2) -> torch.Tensor:
    """(F, H, W, 3) integer RGB -> (F, 3, H', W') in [-1, 1], edge-padded to the model grid."""
    peak = float(np.iinfo(frames.dtype).max)
    pixels = torch.from_numpy(frames.astype(np.float32) / peak).permute(0, 3, 1, 2) * 2 - 1
    geometry = plan.geometry
    pad = (0, geometry.padded_width - geometry.width, 0, geometry.padded_height - geometry.height)
    if any(pad):
        pixels = F.pad(pixels, pad, mode="replicate")
    return pixels.to(device=model.device, dtype=model.dtype)


def decoded_chunk(model: VideoCrafter2, plan: UpscalePlan, store: JobStore,
                  chunk: Chunk) -> Iterator[tuple[np.ndarray, list[int]]]:
    """A saved chunk's own frames, decoded (tiled when the plan says so), cropped to exactly
    scale x the input, as uint16 RGB with their source pts, one VAE pass at a time."""
    width, height = plan.geometry.output_size
    saved = store.load_chunk(chunk.index)
    pts = saved["pts"].tolist()
    first = 0
    for pixels in model.decoded(saved["latents"], tiles=plan.vae_tiles, overlap=plan.vae_tile_overlap,
                                pixels_per_pass=plan.vae_pixels_per_pass):
        count = pixels.shape[0]
        yield to_rgb16(pixels[..., :height, :width]), pts[first:first + count]
        first += count


def result_settings(settings: Settings) -> Settings:
    """``settings`` with the fields that only decide how a job runs (not what it makes) at their
    defaults: a job interrupted with one value resumes with another."""
    defaults = JobSettings()
    jobs = dataclasses.replace(settings.jobs, overlap_io=defaults.overlap_io,
                               checkpoint_seconds=defaults.checkpoint_seconds)
    return dataclasses.replace(settings, jobs=jobs)


def to_rgb16(pixels: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint16, full 16-bit range (10-bit codecs keep it)."""
    scaled = ((pixels.float().clamp(-1, 1) + 1) * 32767.5).round()
    return scaled.to(torch.int32).permute(0, 2, 3, 1).cpu().numpy().astype(np.uint16)
