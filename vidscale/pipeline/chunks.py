"""Frame-consistent chunks: per-frame noise, trajectory anchoring, and spatial tiles.

Why anchoring rather than a crossfade: VC2's spatial layers and VAE are per frame and its temporal
convolutions are local, so a chunk only needs to *see* its predecessor's last frames to continue
its motion. Chunk k records the latents of its last ``overlap`` frames before every UNet call;
chunk k+1 overwrites its first ``overlap`` frames with them at the same step. Chunk k+1 then
continues chunk k's trajectory, and every output frame is owned by exactly one chunk: nothing is
blended, dropped or duplicated, and the result does not depend on where the chunks were cut.
The price is order: chunks run one after another (a crossfade could run them in parallel).

On a temporally compressed grid (:class:`~vidscale.model.spec.LatentGrid`) all of this is in
latent frames: chunks start on the grid, so a chunk's latent frames are the clip's, anchoring
overwrites latent frames and noise is keyed by the clip's latent frame. A causal VAE's chunk
starts with a latent frame of its first frame alone, which no other chunk has: see
:class:`Anchor` for why it is the chunk's own, and :mod:`vidscale.pipeline.steps` for how a
chunk's frames are decoded with its shared head as context.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import Interrupted
from ..freescale import restart_index
from ..model.spec import LatentGrid
from ..model.tiles import blend_tiles
from ..progress import Progress
from ..settings import Settings
from ..work.plan import Chunk, Tile, UpscalePlan
from ..work.store import JobStore
from .background import Prefetch
from .checkpoints import StepCheckpoints, resume_step
from .denoise import EpsFn
from .refine import Denoiser, refine

_GOLDEN = 0x9E3779B97F4A7C15  # spreads consecutive frame indices over the seed space


def frame_noise(seed: int, frames: Sequence[int], shape: tuple[int, ...], *,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Noise of shape (1, C, F, H, W), each latent frame drawn from a generator keyed by (seed,
    its index among the clip's latent frames: ``frames``, :meth:`LatentGrid.latent_index`).

    Keyed per latent frame of the clip, a frame gets the same noise whichever chunk or segment
    it lands in, so the result does not depend on the chunking or on a resume. Drawn on the CPU
    so CPU and GPU runs agree.
    """
    draws = []
    for frame in frames:
        generator = torch.Generator("cpu").manual_seed((seed + frame * _GOLDEN) % 2**63)
        draws.append(torch.randn(shape, generator=generator, dtype=torch.float32))
    return torch.stack(draws, dim=1).unsqueeze(0).to(device=device, dtype=dtype)


class Anchor:
    """A before-model hook that continues the previous chunk's trajectory and records its own.

    ``previous`` holds (steps, 1, C, anchored, H, W): the previous chunk's last latent frames
    before each model call; they replace this chunk's latent frames ``lone .. lone + anchored``
    at the same step. ``keep`` is how many of this chunk's last latent frames the next chunk will
    need; ``recorded`` is what a resumed chunk had recorded before its checkpoint.

    ``lone`` = 1 on a causal grid: a chunk's latent 0 holds its first frame alone, and it is
    never anchored. The previous chunk has no latent of that frame alone (it folded the frame
    into a latent of ``temporal`` frames), and putting that one in its place would hand the model
    and the decoder a latent of the wrong kind where a clip's first latent is expected (what
    they were trained on). Making one each step (decode the previous chunk's latent, re-encode the
    frame alone) would cost a VAE round trip per step and mix noise levels. So latent 0 is
    denoised with the chunk from its own reference, with the noise of the clip's latent frame it
    ends (the same draw as the previous chunk's latent there); it is never output (the previous
    chunk owns its frame) and serves as context only: for the model and for decoding.
    """

    def __init__(self, previous: torch.Tensor | None, anchored: int, keep: int,
                 recorded: torch.Tensor | None = None, *, lone: int = 0):
        if anchored and previous is None:
            raise ValueError("an anchored chunk needs the previous chunk's trajectory")
        self.previous = previous if anchored else None  # the trajectory continued, if any
        self.anchored = anchored
        self.keep = keep
        self.lone = lone
        self._recorded: list[torch.Tensor] = list(recorded) if recorded is not None else []

    def __call__(self, step: int, t: int, x: torch.Tensor) -> torch.Tensor:
        index = len(self._recorded)
        if self.previous is not None:
            x = x.clone()
            x[:, :, self.lone:self.lone + self.anchored] = self.previous[index].to(device=x.device, dtype=x.dtype)
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
    grid = plan.grid
    after = plan.chunks[chunk.index + 1] if chunk.index + 1 < len(plan.chunks) else None
    keep = grid.anchored_latents(after.anchored) if after else 0
    anchored = grid.anchored_latents(chunk.anchored)
    previous = store.load_chunk(chunk.index - 1) if anchored else None
    _, channels, latent_frames, height, width = data.reference.shape
    first = grid.latent_index(chunk.start)
    noise = frame_noise(settings.sampling.seed, range(first, first + latent_frames), (channels, height, width),
                        device=data.reference.device, dtype=data.reference.dtype)
    solver = schedule.solver(settings.sampling.scheduler, eta=settings.sampling.eta,
                             generator=step_generator(settings.sampling.seed, chunk, settings.sampling.eta))
    resume, saved = resume_step(store, chunk.index, solver, data.reference.device)
    done = resume[0] if resume else 0
    anchor = Anchor(previous["trajectory"] if previous is not None else None, anchored, keep,
                    saved.get("trajectory"), lone=grid.lone)
    steps = settings.sampling.steps - restart_index(settings.sampling.steps, settings.freescale.restart_fraction)
    checkpoints = StepCheckpoints(store, chunk.index, unit="chunk", units=len(plan.chunks), steps=steps, done=done,
                                  every=settings.jobs.checkpoint_seconds, solver=solver, should_stop=should_stop,
                                  extra=lambda: {"trajectory": anchor.trajectory()})
    latents = refine(denoiser, schedule, data.reference, noise, settings, anchor=anchor, alpha=data.alpha,
                     solver=solver, progress=progress, after_step=checkpoints, resume=resume)
    store.save_chunk(chunk.index, {"latents": kept_latents(grid, latents, anchored,
                                                           previous["latents"] if previous is not None else None),
                                   "pts": data.pts[chunk.anchored:], "trajectory": anchor.trajectory()},
                     {"frames": [chunk.start, chunk.end]})


def kept_latents(grid: LatentGrid, latents: torch.Tensor, anchored: int,
                 previous: torch.Tensor | None) -> torch.Tensor:
    """What a finished chunk keeps of its (1, C, F, H, W) latents: what decoding its own frames needs
    (``previous``: what the previous chunk kept, when ``anchored`` latent frames follow it).

    Frame by frame (VC2) that is its own latent frames. A causal decoder carries state from the
    clip's first latent on, so a chunk's own latents decoded alone would start as a clip's first
    frame (one frame, not ``temporal``). A causal chunk keeps all of them: its lone latent 0, the
    anchored ones, its own. The anchored ones take the previous chunk's final values (the last
    step moves them off the previous trajectory), so the context its frames are decoded with is
    the latent sequence the previous chunk's frames came from (what a decode of the whole clip
    would see, up to the lone frame that starts it).
    """
    if not grid.causal:
        return latents[:, :, anchored:]
    if previous is None:
        return latents
    latents = latents.clone()
    latents[:, :, grid.lone:grid.lone + anchored] = previous[:, :, previous.shape[2] - anchored:].to(latents)
    return latents
