"""The steps of an upscale, shared by every path that runs one: the plain file job
(:mod:`.upscale`), the segmented and cluster job (:mod:`.segments`) and frames in memory
(:mod:`.frames`, the diffusers pipeline). One definition each of what must agree between them:

- :func:`plan_for_model`: the plan for this model (its latent grid, base size, precision and VAE width);
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

from ..backends import Backend, as_backend
from ..freescale import latent_frequency_mix, upsample_latent
from ..media import VideoInfo, read_frames
from ..model import resolve_device, resolve_dtype
from ..model.loading import resolve_spec
from ..model.spec import ModelSpec
from ..settings import JobSettings, Settings
from ..work.plan import Chunk, UpscalePlan, make_plan
from ..work.store import JobStore, fingerprint
from .chunks import ChunkInputs, tiled
from .detail import detail_alpha
from .refine import Denoiser

RESULT_SECTIONS = ("upscale", "model", "sampling", "freescale", "jobs")  # what a job's frames depend on


def plan_for_model(width: int, height: int, frame_range: tuple[int, int], settings: Settings,
                   model: Any) -> UpscalePlan:
    """The plan of an upscale of ``frame_range`` of a ``width x height`` clip with ``model`` (a
    loaded model or its backend)."""
    backend = as_backend(model)
    return plan_for_spec(width, height, frame_range, settings, backend.spec, backend.dtype)


def planned_without_model(width: int, height: int, frame_range: tuple[int, int], settings: Settings) -> UpscalePlan:
    """The plan the run will make, from the model's configs alone (``--dry-run``: no weight loaded)."""
    device = resolve_device(settings.model.device)
    return plan_for_spec(width, height, frame_range, settings, resolve_spec(settings.model.path),
                         resolve_dtype(settings.model.dtype, device))


def plan_for_spec(width: int, height: int, frame_range: tuple[int, int], settings: Settings, spec: ModelSpec,
                  dtype: torch.dtype) -> UpscalePlan:
    """The one plan maker of every path: the model's latent grid sets the padding and where chunks
    are cut, its base size the fusion windows, its cost model, precision and VAE width the memory
    and the FLOPs."""
    return make_plan(width, height, frame_range, settings, base_latent=spec.base_latent,
                     dtype_bytes=torch.finfo(dtype).bits // 8, vae_width=spec.vae_width, cost=spec.cost,
                     grid=spec.grid)


def job_identity(source: Path, plan: UpscalePlan, settings: Settings, model: Any) -> dict[str, Any]:
    """Everything that decides a job's frames: the input file, the frames, the settings that
    change the result, the model and the detail matte's content. A stopped job resumes only
    into a job of the same identity (its folder is named by this identity's hash)."""
    identity: dict[str, Any] = {"input": fingerprint(source), "frames": plan.frame_range,
                                "settings": result_settings(settings).digest(*RESULT_SECTIONS),
                                "model": as_backend(model).spec.name}
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


def upscale_denoiser(model: Any, settings: Settings, plan: UpscalePlan, *, fps: int) -> Denoiser:
    """The model's guided prediction for the prompt, with the tiles and the FreeScale patches of
    this plan (which patches: the backend's, :mod:`vidscale.backends`)."""
    backend = as_backend(model)
    eps_fn = backend.predictor(settings.sampling, fps=fps)
    tile = (plan.tiles[0].height, plan.tiles[0].width) if plan.tiles else plan.geometry.target_latent_size
    if plan.tiles:
        eps_fn = tiled(eps_fn, plan.tiles, plan.tile_overlap)
    method = dataclasses.replace(settings.freescale, fusion=plan.fusion)
    scale = plan.geometry.fusion_scale
    return Denoiser(
        eps_fn=eps_fn,
        stage_patches=lambda: backend.stage_patches(method, base_latent=plan.geometry.base_latent,
                                                    target_latent=tile, scale=scale),
        step_patches=lambda i: backend.step_patches(method, step_index=i, num_steps=settings.sampling.steps,
                                                    scale=scale),
    )


def chunk_inputs(model: Any, info: VideoInfo, plan: UpscalePlan, chunk: Chunk,
                 settings: Settings) -> ChunkInputs:
    """Read a chunk's frames and build its reference latent at the target size."""
    first = plan.frame_range[0]
    frames: list[np.ndarray] = []
    pts: list[int] = []
    for part in read_frames(info, first + chunk.start, first + chunk.end):
        frames.append(part.frames)
        pts.extend(part.pts)
    reference = reference_latent(model, plan, np.concatenate(frames), settings, pad=chunk.pad)
    return ChunkInputs(reference=reference, pts=torch.tensor(pts, dtype=torch.int64),
                       alpha=detail_alpha(settings, info, plan, first + chunk.start, first + chunk.end,
                                          pad=chunk.pad))


def reference_latent(model: Any, plan: UpscalePlan, frames: np.ndarray, settings: Settings, *,
                     pad: int = 0) -> torch.Tensor:
    """(F, H, W, 3) integer RGB frames (and ``pad`` copies of the last, to fill the latent grid)
    -> their reference latent at the target size (in memory)."""
    backend = as_backend(model)
    pixels = to_model_pixels(frames, plan, backend, pad=pad)
    latent = backend.encode_frames(pixels)
    target = plan.geometry.target_latent_size
    reference = upsample_latent(latent, target, settings.freescale.upsample_mode)
    if settings.freescale.frequency_mixing or settings.freescale.upsample == "rgb":
        size = (target[0] * backend.spec.grid.spatial, target[1] * backend.spec.grid.spatial)
        rgb = F.interpolate(pixels, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        rgb_latent = backend.encode_frames(rgb)
        reference = (rgb_latent if settings.freescale.upsample == "rgb"
                     else latent_frequency_mix(reference, rgb_latent, settings.freescale.mixing_factor))
    return reference


def to_model_pixels(frames: np.ndarray, plan: UpscalePlan, backend: Backend, *, pad: int = 0) -> torch.Tensor:
    """(F, H, W, 3) integer RGB -> (F + pad, 3, H', W') in [-1, 1], edge-padded to the model grid:
    in space on the right and bottom, in time by repeating the last frame ``pad`` times."""
    peak = float(np.iinfo(frames.dtype).max)
    pixels = torch.from_numpy(frames.astype(np.float32) / peak).permute(0, 3, 1, 2) * 2 - 1
    geometry = plan.geometry
    edges = (0, geometry.padded_width - geometry.width, 0, geometry.padded_height - geometry.height)
    if any(edges):
        pixels = F.pad(pixels, edges, mode="replicate")
    if pad:
        pixels = torch.cat([pixels, pixels[-1:].expand(pad, -1, -1, -1)])
    return pixels.to(device=backend.device, dtype=backend.dtype)


def decoded_pixels(model: Any, plan: UpscalePlan, store: JobStore,
                   chunk: Chunk) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """A saved chunk's own frames, decoded one VAE pass at a time (tiled when the plan says so):
    (n, 3, H, W) in [-1, 1] at the padded size, with their source pts.

    On a causal grid the chunk's saved latents start with its shared head (see
    :func:`~vidscale.pipeline.chunks.kept_latents`): the decoder runs over it for its state, and
    its frames (the previous chunk's) are dropped here, as are the padding frames at the tail.
    """
    saved = store.load_chunk(chunk.index)
    pts = saved["pts"].tolist()
    context = chunk.anchored if plan.grid.causal else 0  # decoded frames that only give context
    first = -context  # index in pts of the batch's first frame
    for pixels in as_backend(model).decoded(saved["latents"], tiles=plan.vae_tiles, overlap=plan.vae_tile_overlap,
                                            pixels_per_pass=plan.vae_pixels_per_pass):
        low, high = max(first, 0), min(first + pixels.shape[0], len(pts))
        if low < high:
            yield pixels[low - first:high - first], pts[low:high]
        first += pixels.shape[0]


def decoded_chunk(model: Any, plan: UpscalePlan, store: JobStore,
                  chunk: Chunk) -> Iterator[tuple[np.ndarray, list[int]]]:
    """:func:`decoded_pixels` cropped to exactly scale x the input, as uint16 RGB: what is written."""
    width, height = plan.geometry.output_size
    for pixels, pts in decoded_pixels(model, plan, store, chunk):
        yield to_rgb16(pixels[..., :height, :width]), pts


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
