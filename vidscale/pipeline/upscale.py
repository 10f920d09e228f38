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
   chunk k-1 run in threads beside the denoising of chunk k (:mod:`vidscale.pipeline.background`);
5. report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..atomic import check_target, remove_stale_temps
from ..backends import as_backend
from ..media import VideoWriter, probe
from ..progress import Progress
from ..settings import Settings
from ..work.plan import Chunk, UpscalePlan
from ..work.store import JobStore
from .background import Sink
from .chunks import denoise_chunks
from .loading import load_model, reset_peak_memory, runtime_report
from .result import UpscaleResult
from .steps import chunk_inputs, decoded_chunk, job_identity, plan_for_model, planned_without_model, upscale_denoiser


def plan_upscale(source: Path, settings: Settings, *, frames=None) -> UpscalePlan:
    """The plan the run will make, read from the model's configs (no weight is loaded)."""
    info = probe(source)
    return planned_without_model(info.width, info.height, info.frame_range(frames), settings)


def upscale_clip(source: Path, output: Path, settings: Settings, *, frames=None, overwrite=False,
                 progress: Progress | None = None, model: Any = None,
                 should_stop: Callable[[], bool] | None = None) -> UpscaleResult:
    """Upscale ``source`` into ``output``; resumable (run it again after an interruption).

    ``should_stop`` is asked after every denoising step: once it says yes, the running chunk is
    saved at that step and :class:`~vidscale.errors.Interrupted` is raised; the next call with
    the same arguments continues from that step and writes the very same output.
    """
    if settings.jobs.segment_frames:
        from .segments import upscale_segmented

        return upscale_segmented(source, output, settings, frames=frames, overwrite=overwrite,
                                 progress=progress, model=model, should_stop=should_stop)
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. probe and plan
    info = probe(source)
    check_target(output, overwrite=overwrite)
    backend = as_backend(model or load_model(settings.model))
    reset_peak_memory(backend.device)
    plan = plan_for_model(info.width, info.height, info.frame_range(frames), settings, backend)
    # 2. job store
    store = JobStore.open(output.parent / ".vidscale-jobs", source.stem,
                          job_identity(source, plan, settings, backend))
    remove_stale_temps(output)  # a killed run's half-written output: this run writes it anew
    # 3. + 4. denoise chunk by chunk; decode and write each saved chunk (beside the next one)
    denoiser = upscale_denoiser(backend, settings, plan, fps=settings.sampling.fps or round(info.frame_rate))
    started_denoise = time.perf_counter()
    width, height = plan.geometry.output_size
    with VideoWriter(output, width=width, height=height, source=info, settings=settings.output,
                     frame_range=plan.frame_range, overwrite=overwrite) as writer, \
            progress.bar("write", total=plan.frame_count, unit="frame") as bar:
        def write(chunk: Chunk) -> None:
            for frames_rgb, pts in decoded_chunk(backend, plan, store, chunk):
                if sink.cancelled.is_set():
                    return
                writer.write(frames_rgb, pts=pts)
                bar.update(len(pts))

        with Sink(write, enabled=settings.jobs.overlap_io) as sink:
            denoise_chunks(plan, store, inputs=lambda chunk: chunk_inputs(backend, info, plan, chunk, settings),
                           denoiser=lambda _chunk: denoiser, schedule=backend.schedule, settings=settings,
                           progress=progress, should_stop=should_stop, finished=sink.put)
    timings = {"denoise_and_write": time.perf_counter() - started_denoise}
    # 5. report
    result = UpscaleResult(
        input=source, output=output, engine="freescale", width=width, height=height,
        frames=plan.frame_count, frame_rate=info.frame_rate,
        codec=settings.output.codec,
        elapsed_seconds=time.perf_counter() - started, job_dir=store.root,
        test_model=backend.spec.is_test_model)
    store.complete({"result": result.to_dict(), "settings": settings.to_dict(), "plan": plan.to_dict(),
                    "seconds": timings, **runtime_report(backend)})
    return result


