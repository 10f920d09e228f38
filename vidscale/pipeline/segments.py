"""Long clips in segments: consecutive chunks that run independently, joined by a crossfade.

Inside a segment the chunks stay anchored (:mod:`vidscale.pipeline.chunks`), so they run in order;
segments do not depend on each other and can run at the same time on different workers
(:mod:`vidscale.jobs.cluster`). The segment plan is ``jobs.segment_frames``
(:func:`vidscale.work.plan.plan_segments`): a segment starts where the chunk plan anchored a
chunk, starts it fresh instead, and the frames that were anchored become the crossfade. Chunk
boundaries lie on the model's latent grid, so segment boundaries do too; on a causal grid the
fade is ``1 + n * temporal`` frames (at least the lone first frame of the fresh chunk).

Every random draw is keyed by (seed, latent frame of the clip)
(:func:`~vidscale.pipeline.chunks.frame_noise`), so a frame gets the same noise in whichever
segment, on whichever worker, after however many retries. The two versions of a crossfade frame
are therefore two denoisings of the same reference from the same noise, differing only in their
temporal context: close, so a short fade hides the join.

Why the crossfade is in pixels, not latents: VC2's VAE decoder is non-linear, so a mix of two
latents does not decode to the mix of their pictures (it can decode to a washed-out or ghosted
frame), and a causal decoder would carry the mix into the frames after it; a mix of decoded
pixels is exactly an editor's dissolve, and it costs only decoding the fade frames twice. The
seams this leaves are measured in ``tests/test_cluster.py`` with the chunk-boundary metric of
``tests/test_pipeline_upscale.py``; on a causal grid, the fades are checked against an oracle in
``tests/test_pipeline_grid.py``.

Each segment has its own job store (``NAME.sNNN-<key>``), so workers never write the same
manifest, and a segment is a unit of resume as well as of work.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..atomic import check_target
from ..backends import as_backend
from ..media import VideoInfo, VideoWriter, probe
from ..progress import Progress
from ..settings import Settings
from ..work.plan import Segment, UpscalePlan, plan_segments
from ..work.store import JobStore
from .chunks import denoise_chunks
from .loading import load_model, reset_peak_memory, runtime_report
from .result import UpscaleResult
from .steps import chunk_inputs, decoded_pixels, job_identity, plan_for_model, to_rgb16, upscale_denoiser


@dataclass(frozen=True)
class SegmentedClip:
    """One clip's plan cut into segments, and where their job stores live."""

    source: Path
    info: VideoInfo
    plan: UpscalePlan
    segments: tuple[Segment, ...]
    identity: dict[str, Any]  # what decides the result; each segment's store adds its frames

    @classmethod
    def prepare(cls, source: Path, settings: Settings, model: Any, *, frames=None) -> "SegmentedClip":
        """Probe and plan ``source`` for ``model`` (its native size and precision shape the plan)."""
        info = probe(source)
        plan = plan_for_model(info.width, info.height, info.frame_range(frames), settings, model)
        return cls(Path(source), info, plan, tuple(plan_segments(plan.chunks, settings.jobs.segment_frames)),
                   job_identity(source, plan, settings, model))

    def store(self, segment: Segment, root: Path) -> JobStore:
        """The job store of ``segment`` under ``root`` (opened, or resumed where it stopped)."""
        identity = {**self.identity, "segment": [segment.start, segment.end]}
        return JobStore.open(root, f"{self.source.stem}.s{segment.index:03d}", identity)

    def finished(self, segment: Segment, store: JobStore) -> bool:
        return store.finished >= {chunk.index for chunk in segment.chunks}


def denoise_segment(model: Any, clip: SegmentedClip, segment: Segment, store: JobStore,
                    settings: Settings, *, progress: Progress | None = None,
                    should_stop: Callable[[], bool] | None = None) -> None:
    """Denoise the unfinished chunks of ``segment`` into ``store``, anchored inside the segment."""
    plan = dataclasses.replace(clip.plan, chunks=list(segment.chunks))
    backend = as_backend(model)
    denoiser = upscale_denoiser(backend, settings, clip.plan,
                                fps=settings.sampling.fps or round(clip.info.frame_rate))
    denoise_chunks(plan, store, inputs=lambda chunk: chunk_inputs(backend, clip.info, clip.plan, chunk, settings),
                   denoiser=lambda _chunk: denoiser, schedule=backend.schedule, settings=settings,
                   progress=progress or Progress(enabled=False), should_stop=should_stop)


def crossfaded_frames(model: Any, clip: SegmentedClip, stores: list[JobStore],
                      progress: Progress) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Every output frame once, in order, as (1, H, W, 3) uint16 RGB with its pts; a segment's
    first ``fade`` frames dissolve from the previous segment's version into its own."""
    width, height = clip.plan.geometry.output_size
    held: list[tuple[torch.Tensor, int]] = []  # the previous segment's last frames, to fade from
    with progress.bar("decode", total=clip.plan.frame_count, unit="frame") as bar:
        for segment, store in zip(clip.segments, stores):
            after = clip.segments[segment.index + 1].fade if segment.index + 1 < len(clip.segments) else 0
            fading, held = held, []
            length = segment.end - segment.start
            for position, (pixels, pts) in enumerate(_segment_pixels(model, clip.plan, segment, store)):
                pixels = pixels[None, :, :height, :width]
                if position < segment.fade:
                    weight = (position + 1) / (segment.fade + 1)
                    pixels = fading[position][0].float() * (1 - weight) + pixels.float() * weight
                elif position >= length - after:
                    held.append((pixels, pts))
                    continue
                yield to_rgb16(pixels), [pts]
                bar.update(1)


def _segment_pixels(model: Any, plan: UpscalePlan, segment: Segment,
                    store: JobStore) -> Iterator[tuple[torch.Tensor, int]]:
    """A segment's frames, decoded: (3, H, W) in [-1, 1] and the source pts, frame by frame."""
    for chunk in segment.chunks:
        for pixels, pts in decoded_pixels(model, plan, store, chunk):
            yield from zip(pixels, pts)


def write_segmented(model: Any, clip: SegmentedClip, stores: list[JobStore], output: Path,
                    settings: Settings, *, overwrite: bool = False, progress: Progress | None = None) -> None:
    """Decode, crossfade and write every finished segment into ``output`` (atomically)."""
    width, height = clip.plan.geometry.output_size
    with VideoWriter(output, width=width, height=height, source=clip.info, settings=settings.output,
                     frame_range=clip.plan.frame_range, overwrite=overwrite) as writer:
        for frames_rgb, pts in crossfaded_frames(model, clip, stores, progress or Progress(enabled=False)):
            writer.write(frames_rgb, pts=pts)


def complete_segmented(model: Any, clip: SegmentedClip, stores: list[JobStore], output: Path,
                       settings: Settings, *, started: float, timings: dict[str, float]) -> UpscaleResult:
    """The job's result; every segment store is marked complete with the same report."""
    width, height = clip.plan.geometry.output_size
    result = UpscaleResult(
        input=clip.source, output=output, engine="freescale", width=width, height=height,
        frames=clip.plan.frame_count, frame_rate=clip.info.frame_rate, codec=settings.output.codec,
        elapsed_seconds=time.perf_counter() - started, job_dir=stores[0].root,
        test_model=as_backend(model).spec.is_test_model)
    report = {"result": result.to_dict(), "settings": settings.to_dict(), "plan": clip.plan.to_dict(),
              "segments": [dataclasses.asdict(s) for s in clip.segments], "seconds": timings,
              **runtime_report(model)}
    for store in stores:
        store.complete(report)
    return result


def upscale_segmented(source: Path, output: Path, settings: Settings, *, frames=None, overwrite=False,
                      progress: Progress | None = None, model: Any = None,
                      should_stop: Callable[[], bool] | None = None) -> UpscaleResult:
    """:func:`~vidscale.pipeline.upscale.upscale_clip` for ``jobs.segment_frames`` > 0: the segments
    one after another in this process; the reference a cluster run must equal bit for bit."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. probe, plan, segments
    check_target(output, overwrite=overwrite)
    model = as_backend(model or load_model(settings.model))
    reset_peak_memory(model.device)
    clip = SegmentedClip.prepare(source, settings, model, frames=frames)
    # 2. one job store per segment
    stores = [clip.store(segment, output.parent / ".vidscale-jobs") for segment in clip.segments]
    # 3. denoise segment by segment
    timings = {"denoise": time.perf_counter()}
    with progress.bar("segments", total=len(clip.segments), unit="segment") as bar:
        for segment, store in zip(clip.segments, stores):
            denoise_segment(model, clip, segment, store, settings, progress=progress, should_stop=should_stop)
            bar.update(1)
    timings["denoise"] = time.perf_counter() - timings["denoise"]
    # 4. crossfade and write
    timings["write"] = time.perf_counter()
    write_segmented(model, clip, stores, output, settings, overwrite=overwrite, progress=progress)
    timings["write"] = time.perf_counter() - timings["write"]
    # 5. report
    return complete_segmented(model, clip, stores, output, settings, started=started, timings=timings)
