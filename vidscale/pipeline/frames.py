"""Upscaling frames held in memory: the plan, chunks, FreeScale denoising and decoding of
:func:`~vidscale.pipeline.upscale.upscale_clip` (:mod:`.steps`), with an array in place of the files.

The chunk store lives in a temporary folder for the call (chunks are anchored through it exactly
as in a file job), so the frames come out identical to those ``upscale_clip`` hands its writer
for the same frames, settings and frame rate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backends import as_backend
from ..progress import Progress
from ..settings import Settings
from ..work.store import JobStore
from .chunks import ChunkInputs, denoise_chunks
from .steps import decoded_chunk, plan_for_model, reference_latent, upscale_denoiser


def upscale_frames(model: Any, frames: np.ndarray, settings: Settings, *, fps: int,
                   progress: Progress | None = None) -> np.ndarray:
    """(F, H, W, 3) integer RGB -> (F, s*H, s*W, 3) uint16 RGB, s = ``settings.upscale.scale``.

    ``fps`` is the frame rate the model is conditioned on (VC2) (the CLI uses the clip's rate unless
    ``sampling.fps`` is set); the noise of each frame is keyed by ``settings.sampling.seed``.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or not np.issubdtype(frames.dtype, np.integer):
        raise ValueError(f"expected (frames, height, width, 3) integer RGB, got {frames.dtype} {frames.shape}")
    progress = progress or Progress(enabled=False)
    backend = as_backend(model)
    count, height, width = frames.shape[:3]
    plan = plan_for_model(width, height, (0, count), settings, backend)
    denoiser = upscale_denoiser(backend, settings, plan, fps=fps)

    def inputs(chunk) -> ChunkInputs:
        reference = reference_latent(backend, plan, frames[chunk.start:chunk.end], settings, pad=chunk.pad)
        return ChunkInputs(reference=reference, pts=torch.arange(chunk.start, chunk.end))

    with tempfile.TemporaryDirectory(prefix="vidscale-frames-") as scratch:
        store = JobStore.open(Path(scratch), "frames", {"frames": count, "size": [width, height]})
        denoise_chunks(plan, store, inputs=inputs, denoiser=lambda _chunk: denoiser, schedule=backend.schedule,
                       settings=settings, progress=progress)
        return np.concatenate([rgb for chunk in plan.chunks
                               for rgb, _pts in decoded_chunk(backend, plan, store, chunk)])
