"""``vidscale upscale --engine freescale``: an existing clip, made larger with generated detail.

Steps (numbered as in the code below):

1. probe the clip and plan geometry, chunks, tiles and cost (:mod:`vidscale.work.plan`);
2. open the job store (resume after the last finished chunk, or from the running chunk's last
   step checkpoint);
3. per chunk: read frames, pad to the model grid, VAE-encode, upsample in latent space (optionally
   mixed with the RGB upsample's high frequencies), re-noise and denoise at the target size with
   FreeScale (:func:`vidscale.pipeline.refine.refine`), anchored to the previous chunk; save;
4. as each chunk is saved, in order: decode its own frames, crop the padding and write them with
   the source's audio, colour tags, timecode and timestamps, under a temporary name renamed when
   the last chunk is written. With ``jobs.overlap_io`` the reading of chunk k+1 and the writing of
   chunk k-1 run in threads beside the denoising of chunk k (:mod:`vidscale.pipeline.overlap`);
5. report.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import check_target, remove_stale_temps
from ..freescale import freescale_patches, latent_frequency_mix, restrained_dilation, upsample_latent
from ..work.plan import Chunk, UpscalePlan, make_plan
from ..work.store import JobStore, fingerprint
from ..media import VideoInfo, VideoWriter, probe, read_frames
from ..settings import JobSettings
from ..model import VideoCrafter2
from ..progress import Progress
from ..settings import Settings
from .chunks import ChunkInputs, denoise_chunks, tiled
from .loading import load_model, reset_peak_memory, runtime_report
from .overlap import Sink
from .refine import Denoiser
from .result import UpscaleResult
from .conditioning import prompt_eps_fn
from .detail import detail_alpha


def plan_upscale(source: Path, settings: Settings, *, frames=None) -> UpscalePlan:
    """The plan ``--dry-run`` prints: no model is loaded."""
    info = probe(source)
    return make_plan(info.width, info.height, info.frame_range(frames), settings)


def upscale_clip(source: Path, output: Path, settings: Settings, *, frames=None, overwrite=False,
                 progress: Progress | None = None, model: VideoCrafter2 | None = None,
                 should_stop: Callable[[], bool] | None = None) -> UpscaleResult:
    """Upscale ``source`` into ``output``; resumable (run it again after an interruption).

    ``should_stop`` is asked after every denoising step: once it says yes, the running chunk is
    saved at that step and :class:`~vidscale.errors.Interrupted` is raised; the next call with
    the same arguments continues from that step and writes the very same output.
    """
    if settings.jobs.segment_frames:
        from .segments import upscale_segmented  # built on this module's steps

        return upscale_segmented(source, output, settings, frames=frames, overwrite=overwrite,
                                 progress=progress, model=model, should_stop=should_stop)
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. probe and plan
    info = probe(source)
    check_target(output, overwrite=overwrite)
    model = model or load_model(settings.model)
    reset_peak_memory(model.device)
    base = (model.base_height // 8, model.base_width // 8)
    plan = make_plan(info.width, info.height, info.frame_range(frames), settings, base_latent=base,
                     dtype_bytes=torch.finfo(model.dtype).bits // 8,
                     vae_width=model.vae.config.block_out_channels[1])
    # 2. job store
    identity = {"input": fingerprint(source), "frames": plan.frame_range,
                "settings": result_settings(settings).digest("upscale", "model", "sampling", "freescale", "jobs"),
                "model": model.name}
    if settings.upscale.detail_mask:  # a changed matte must not resume the old chunks
        identity["detail_mask"] = fingerprint(Path(settings.upscale.detail_mask))
    store = JobStore.open(output.parent / ".vidscale-jobs", source.stem, identity)
    remove_stale_temps(output)  # a killed run's half-written output: this run writes it anew
    # 3. + 4. denoise chunk by chunk; decode and write each saved chunk (beside the next one)
    denoiser = upscale_denoiser(model, settings, plan, fps=settings.sampling.fps or round(info.frame_rate))
    started_denoise = time.perf_counter()
    width, height = plan.geometry.output_size
    with VideoWriter(output, width=width, height=height, source=info, settings=settings.output,
                     frame_range=plan.frame_range, overwrite=overwrite) as writer, \
            progress.bar("write", total=plan.frame_count, unit="frame") as bar:
        def write(chunk: Chunk) -> None:
            for frames_rgb, pts in decoded_chunk(model, plan, store, chunk):
                if sink.cancelled.is_set():
                    return
                writer.write(frames_rgb, pts=pts)
                bar.update(len(pts))

        with Sink(write, enabled=settings.jobs.overlap_io) as sink:
            denoise_chunks(plan, store, inputs=lambda chunk: chunk_inputs(model, info, plan, chunk, settings),
                           denoiser=lambda _chunk: denoiser, schedule=model.schedule, settings=settings,
                           progress=progress, should_stop=should_stop, finished=sink.put)
    timings = {"denoise_and_write": time.perf_counter() - started_denoise}
    # 5. report
    result = UpscaleResult(
        input=source, output=output, engine="freescale", width=width, height=height,
        frames=plan.frame_count, frame_rate=info.frame_rate,
        codec=settings.output.codec,
        elapsed_seconds=time.perf_counter() - started, job_dir=store.root,
        test_model=model.is_test_model)
    store.complete({"result": result.to_dict(), "settings": settings.to_dict(), "plan": plan.to_dict(),
                    "seconds": timings, **runtime_report(model)})
    return result


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
        step_patches=lambda _i: restrained_dilation(model.unet, levels=method.dilate_levels,
                                                    dilation=scale),
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
