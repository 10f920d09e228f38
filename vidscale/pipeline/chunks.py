"""Frame-consistent chunks: per-frame noise, trajectory anchoring, and spatial tiles.

Why anchoring rather than a crossfade: VC2's spatial layers and VAE are per frame and its temporal
convolutions are local, so a chunk only needs to *see* its predecessor's last frames to continue
its motion. Chunk k records the latents of its last ``overlap`` frames before every UNet call;
chunk k+1 overwrites its first ``overlap`` frames with them at the same step. Chunk k+1 then
continues chunk k's trajectory, and every output frame is owned by exactly one chunk: nothing is
blended, dropped or duplicated, and the result does not depend on where the chunks were cut.
The price is order: chunks run one after another (a crossfade could run them in parallel).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Interrupted
from ..freescale import restart_index
from ..model.tiles import blend_tiles
from ..work.plan import Chunk, Tile, UpscalePlan
from ..work.store import JobStore
from ..progress import Progress
from ..settings import Settings
from .checkpoints import StepCheckpoints, resume_step
from .denoise import EpsFn
from .overlap import Prefetch
from .refine import Denoiser, refine

_GOLDEN = 0x9E3779B97F4A7C15  # spreads consecutive frame indices over the seed space


def frame_noise(seed: int, frames: Sequence[int], shape: tuple[int, ...], *,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise of shape (1, C, F, H, W), each frame drawn from a generator keyed by (seed, frame).

    Keyed per frame, a frame gets the same noise whichever chunk it lands in, so the result does
    not depend on the chunking or on a resume. Drawn on the CPU so CPU and GPU runs agree.
    """
    draws = []
    for frame in frames:
        generator = torch.Generator("cpu").manual_seed((seed + frame * _GOLDEN) % 2**63)
        draws.append(torch.randn(shape, generator=generator, dtype=torch.float32))
    return torch.stack(draws, dim=1).unsqueeze(0).to(device=device, dtype=dtype)


class Anchor:
    """A before-model hook that continues the previous chunk's trajectory and records its own.

    ``previous`` holds (steps, 1, C, anchored, H, W): the previous chunk's last frames before
    each model call; they replace this chunk's first ``anchored`` frames at the same step.
    ``keep`` is how many of this chunk's last frames the next chunk will need; ``recorded`` is
    what a resumed chunk had recorded before its checkpoint.
    """

    def __init__(self, previous: torch.Tensor | None, anchored: int, keep: int,
                 recorded: torch.Tensor | None = None):
        if anchored and previous is None:
            raise ValueError("an anchored chunk needs the previous chunk's trajectory")
        self.previous = previous
        self.anchored = anchored
        self.keep = keep
        self._recorded: list[torch.Tensor] = list(recorded) if recorded is not None else []

    def __call__(self, step: int, t: int, x: torch.Tensor) -> torch.Tensor:
        index = len(self._recorded)
        if self.anchored:
            x = x.clone()
            x[:, :, : self.anchored] = self.previous[index].to(device=x.device, dtype=x.dtype)
        self._recorded.append(x[:, :, x.shape[2] - self.keep:].detach().cpu())
        return x

    def trajectory(self) -> torch.Tensor:
        """What this chunk hands the next one: (steps, 1, C, keep, H, W)."""
        return torch.stack(self._recorded)


def tiled(eps_fn: EpsFn, tiles: Sequence[Tile], overlap: int) -> EpsFn:
    """Predict noise tile by tile (bounded memory) and blend the tiles with smooth weights."""
    return lambda x, t: blend_tiles(lambda part: eps_fn(part, t), x, tiles, overlap)


@dataclass
class ChunkInputs:
    """What one chunk is denoised from: (1, C, F, H, W) latents and the frames' source pts."""

    reference: torch.Tensor
    pts: torch.Tensor
    alpha: torch.Tensor | None = None  # per-pixel detail exponent (a --detail-mask); None: settings'


def step_generator(seed: int, chunk: Chunk, eta: float) -> torch.Generator | None:
    """The generator of a chunk's per-step DDIM noise (eta > 0 only), keyed by (seed, chunk).

    Its state goes into each step checkpoint, so a resumed chunk draws what it would have drawn.
    On the CPU, like :func:`frame_noise`, so CPU and GPU runs agree.
    """
    if eta <= 0:
        return None
    key = hashlib.sha256(f"ddim-eta:{seed}:{chunk.start}".encode()).digest()  # apart from frame_noise's keys
    return torch.Generator("cpu").manual_seed(int.from_bytes(key[:8], "little") % 2**63)


def denoise_chunks(plan: UpscalePlan, store: JobStore, *, inputs: Callable[[Chunk], ChunkInputs],
                   denoiser: Callable[[Chunk], Denoiser], schedule, settings: Settings, progress: Progress,
                   should_stop: Callable[[], bool] | None = None,
                   finished: Callable[[Chunk], None] | None = None) -> None:
    """Denoise every unfinished chunk in order, each anchored to the one before, and save it.

    ``finished(chunk)`` is called for every chunk in order once it is on disk (at once for those a
    previous run finished). With ``jobs.overlap_io`` the next chunk's ``inputs`` are prepared in
    a background thread while this one denoises. ``should_stop`` is asked after every step: when
    it says yes, the running chunk is checkpointed and :class:`Interrupted` is raised.
    """
    pending = [chunk for chunk in plan.chunks if chunk.index not in store.finished]
    prepared = ((chunk, inputs(chunk)) for chunk in pending)
    with progress.bar("chunks", total=len(plan.chunks), unit="chunk") as bar, \
            Prefetch(prepared, enabled=settings.jobs.overlap_io) as ready:
        for chunk in plan.chunks:
            if chunk.index not in store.finished:
                _, data = next(ready)
                _denoise_chunk(plan, store, chunk, data, denoiser(chunk), schedule, settings, progress,
                               should_stop)
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped after chunk {chunk.index + 1} of {len(plan.chunks)}; "
                                      f"kept in {store.root}: {len(store.finished)} finished chunk(s)")
            if finished is not None:
                finished(chunk)
            bar.update(1)


def _denoise_chunk(plan, store, chunk, data: ChunkInputs, denoiser, schedule, settings, progress,
                   should_stop) -> None:
    keep = plan.chunks[chunk.index + 1].anchored if chunk.index + 1 < len(plan.chunks) else 0
    previous = store.load_chunk(chunk.index - 1)["trajectory"] if chunk.anchored else None
    _, channels, _, height, width = data.reference.shape
    noise = frame_noise(settings.sampling.seed, range(chunk.start, chunk.end), (channels, height, width),
                        device=data.reference.device, dtype=data.reference.dtype)
    solver = schedule.solver(settings.sampling.scheduler, eta=settings.sampling.eta,
                             generator=step_generator(settings.sampling.seed, chunk, settings.sampling.eta))
    resume, saved = resume_step(store, chunk.index, solver, data.reference.device)
    done = resume[0] if resume else 0
    anchor = Anchor(previous, chunk.anchored, keep, saved.get("trajectory"))
    steps = settings.sampling.steps - restart_index(settings.sampling.steps, settings.freescale.restart_fraction)
    checkpoints = StepCheckpoints(store, chunk.index, unit="chunk", units=len(plan.chunks), steps=steps, done=done,
                                  every=settings.jobs.checkpoint_seconds, solver=solver, should_stop=should_stop,
                                  extra=lambda: {"trajectory": anchor.trajectory()})
    latents = refine(denoiser, schedule, data.reference, noise, settings, anchor=anchor, alpha=data.alpha,
                     solver=solver, progress=progress, after_step=checkpoints, resume=resume)
    store.save_chunk(chunk.index, {"latents": latents[:, :, chunk.anchored:], "pts": data.pts[chunk.anchored:],
                                   "trajectory": anchor.trajectory()},
                     {"frames": [chunk.start, chunk.end]})
