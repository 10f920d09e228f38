"""Chunked, resumable denoising on a causal 1 + 4k latent grid, checked with an oracle denoiser.

The model family is the test double of ``causal_backend`` (Wan's grid: the first frame encoded
alone, then 4 frames per latent frame; a decoder that needs the previous latent frame). Each
chunk's oracle predicts exactly the noise that separates its latent from the known clean latent
of its frames (the double's encoding of the clean frames), so every correct path must land on
the clean clip's latents; latent frames landing at the wrong place, noise keyed by the chunk
instead of the clip, lost context in the decode or a padding frame left in would all show up.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from causal_backend import GRID, CausalTestBackend, registered

from vidscale.pipeline.chunks import Anchor, ChunkInputs, Interrupted, denoise_chunks
from vidscale.pipeline.refine import Denoiser
from vidscale.pipeline.segments import SegmentedClip, crossfaded_frames
from vidscale.pipeline.steps import decoded_pixels, reference_latent, to_rgb16
from vidscale.progress import Progress
from vidscale.settings import Settings
from vidscale.work.plan import make_plan, plan_segments
from vidscale.work.store import JobStore

FRAMES = 23  # not 1 + 4k: the last chunk is padded by 2 frames
SIZE = 8  # pixels; the double's latent is 4x4, 8x8 at the 2x target


class Crash(Exception):
    pass


@pytest.fixture(autouse=True)
def causal_backend_known(monkeypatch):
    registered(monkeypatch)


def _settings(chunk_frames: int, overlap: int) -> Settings:
    # Structure guidance would pull the result toward the (degraded) reference on purpose: off here.
    return Settings().replace({"sampling.steps": 10, "sampling.guidance_scale": 1.0,
                               "freescale.structure_guidance": False, "jobs.checkpoint_seconds": 0.0,
                               "jobs.chunk_frames": chunk_frames, "jobs.overlap_frames": overlap})


def _clips() -> tuple[np.ndarray, np.ndarray]:
    """(clean, degraded) uint8 RGB clips of FRAMES frames: a drifting random picture, and it noisier."""
    generator = np.random.default_rng(0)
    still = generator.uniform(40, 215, (SIZE, SIZE, 3))
    drift = np.linspace(-30, 30, FRAMES)[:, None, None, None]
    clean = np.clip(still[None] + drift + generator.normal(0, 8, (FRAMES, SIZE, SIZE, 3)), 0, 255)
    degraded = np.clip(clean + generator.normal(0, 40, clean.shape), 0, 255)
    return clean.astype(np.uint8), degraded.astype(np.uint8)


def _job(chunk_frames, overlap, *, crash_after_calls=None, oracle=True):
    """(settings, backend, plan, inputs, denoiser) of the clip's upscale: each chunk's reference
    is the double's encoding of the degraded clip, its oracle's target that of the clean clip.
    Without ``oracle``, the double's stand-in network denoises (its result depends on context)."""
    settings = _settings(chunk_frames, overlap)
    backend = CausalTestBackend()
    plan = make_plan(SIZE, SIZE, (0, FRAMES), settings, grid=GRID, dtype_bytes=4)
    clean, degraded = _clips()
    calls = {"n": 0}

    def latent_of(frames, chunk):
        return reference_latent(backend, plan, frames[chunk.start:chunk.end], settings, pad=chunk.pad)

    def denoiser(chunk):
        target = latent_of(clean, chunk)

        def eps(x, t):
            calls["n"] += 1
            if crash_after_calls is not None and calls["n"] > crash_after_calls:
                raise Crash
            return backend.schedule.eps_from_x0(x, target, t)
        return Denoiser(eps_fn=eps)

    def inputs(chunk):
        return ChunkInputs(latent_of(degraded, chunk), torch.arange(chunk.start, chunk.end))

    network = Denoiser(eps_fn=backend.predictor(settings.sampling, fps=16))
    return settings, backend, plan, inputs, denoiser if oracle else lambda _chunk: network


def _run(folder, chunk_frames, overlap, *, crash_after_calls=None, stop_after_chunk=False, oracle=True):
    """Denoise the clip chunk by chunk into a job store; return (store, plan, backend)."""
    settings, backend, plan, inputs, denoiser = _job(chunk_frames, overlap, crash_after_calls=crash_after_calls,
                                                     oracle=oracle)
    store = JobStore.open(folder, "clip", {"chunks": chunk_frames, "overlap": overlap})
    denoise_chunks(plan, store, inputs=inputs, denoiser=denoiser, schedule=backend.schedule, settings=settings,
                   progress=Progress(enabled=False), should_stop=(lambda: True) if stop_after_chunk else None)
    return store, plan, backend


def clip_latents(store, plan) -> torch.Tensor:
    """The clip's latent frames, each from the chunk that owns it (a causal chunk saves all its own)."""
    return torch.cat([store.load_chunk(c.index)["latents"][:, :, GRID.latent_frames(c.anchored):]
                      for c in plan.chunks], dim=2)


def decoded_clip(store, plan, backend) -> tuple[torch.Tensor, list[int]]:
    frames, pts = [], []
    for chunk in plan.chunks:
        for pixels, numbers in decoded_pixels(backend, plan, store, chunk):
            frames.append(pixels)
            pts += numbers
    return torch.cat(frames), pts


def test_one_chunk_returns_the_known_latent_and_exactly_the_clips_frames(tmp_path):
    store, plan, backend = _run(tmp_path, 48, 5)
    assert [(c.start, c.end, c.pad) for c in plan.chunks] == [(0, FRAMES, 2)]
    clean, _ = _clips()
    known = reference_latent(backend, plan, clean, _settings(48, 5), pad=2)
    latents = clip_latents(store, plan)
    assert latents.shape[2] == GRID.latent_frames(FRAMES + 2) == 7
    # The last DDIM step leaves sqrt(1 - alpha_bar_0) ~ 0.029 times a unit-variance residual.
    error = (latents - known).abs()
    assert error.mean() < 0.03 and error.max() < 0.2
    frames, pts = decoded_clip(store, plan, backend)
    assert pts == list(range(FRAMES)) and frames.shape == (FRAMES, 3, 2 * SIZE, 2 * SIZE)  # padding dropped
    whole = torch.cat(list(backend.decoded(known)))[:FRAMES]
    assert (frames - whole).abs().mean() < 0.03


@pytest.mark.parametrize("chunk_frames, overlap, count", [(9, 5, 5), (13, 8, 3), (5, 1, 6)])
def test_many_chunks_on_the_grid_equal_one_chunk(tmp_path, chunk_frames, overlap, count):
    single, plan1, backend = _run(tmp_path / "one", 48, overlap)
    chunked, plan, _ = _run(tmp_path / "many", chunk_frames, overlap)
    assert len(plan.chunks) == count
    assert torch.equal(clip_latents(chunked, plan), clip_latents(single, plan1))
    frames, pts = decoded_clip(chunked, plan, backend)
    reference, _ = decoded_clip(single, plan1, backend)
    assert pts == list(range(FRAMES))  # every frame once, in order, the padding dropped
    if plan.chunks[1].anchored > 1:
        # The double's decoder needs one latent frame of context: an anchored one, with the
        # previous chunk's final value, so the chunked decode is the one-chunk decode bit for bit.
        assert torch.equal(frames, reference)
    else:
        # Sharing the lone frame only, the context is the next chunk's own latent of that frame
        # alone: close to the clip's, not equal. Only each chunk's first 3 owned frames see it
        # (the 4th is its latent frame itself).
        blended = {f for c in plan.chunks[1:] for f in range(c.owned[0], c.owned[0] + 3)}
        others = [f for f in range(FRAMES) if f not in blended]
        assert torch.equal(frames[others], reference[others])
        assert (frames - reference).abs().max() < 0.2


@pytest.mark.parametrize("chunk_frames, overlap", [(9, 5), (13, 9)])
def test_anchoring_hands_a_network_its_context_so_many_chunks_equal_one(tmp_path, chunk_frames, overlap):
    """The double's network looks one latent frame back. Anchored at the right latent frames
    (after the lone first one), each chunk sees the previous chunk's trajectory there, so the
    chunked run is the one-chunk run bit for bit (anchoring the lone latent instead would not be)."""
    single, plan1, backend = _run(tmp_path / "one", 48, overlap, oracle=False)
    chunked, plan, _ = _run(tmp_path / "many", chunk_frames, overlap, oracle=False)
    assert len(plan.chunks) > 2
    assert torch.equal(clip_latents(chunked, plan), clip_latents(single, plan1))
    assert torch.equal(decoded_clip(chunked, plan, backend)[0], decoded_clip(single, plan1, backend)[0])


def test_decoding_a_chunks_own_latents_without_their_context_would_be_wrong(tmp_path):
    """What the test above guards against: the owned latents decoded alone start as a clip's
    first frame (one frame for a latent of four)."""
    store, plan, backend = _run(tmp_path, 9, 5)
    chunk = plan.chunks[1]
    own = store.load_chunk(chunk.index)["latents"][:, :, GRID.latent_frames(chunk.anchored):]
    alone = torch.cat(list(backend.decoded(own)))
    right = torch.cat([p for p, _ in decoded_pixels(backend, plan, store, chunk)])
    assert len(alone) == len(right) - (GRID.temporal - 1)
    assert not torch.equal(alone[:4], right[:4])


def test_a_crash_midway_resumes_to_the_same_result(tmp_path):
    reference, plan, backend = _run(tmp_path / "ref", 9, 5)
    with pytest.raises(Crash):
        _run(tmp_path / "job", 9, 5, crash_after_calls=10)  # 7 steps a chunk: dies inside the second
    files = sorted(p.name for p in next((tmp_path / "job").iterdir()).iterdir())
    assert files == ["chunk-0000.safetensors", "chunk-0001-step-0003.safetensors", "manifest.json"]
    with pytest.raises(Interrupted):
        _run(tmp_path / "job", 9, 5, stop_after_chunk=True)  # a polite stop after one more chunk
    resumed, _, _ = _run(tmp_path / "job", 9, 5)
    assert torch.equal(clip_latents(resumed, plan), clip_latents(reference, plan))
    assert torch.equal(decoded_clip(resumed, plan, backend)[0], decoded_clip(reference, plan, backend)[0])


def test_a_causal_chunk_anchors_the_latents_after_its_lone_first_one():
    first = Anchor(previous=None, anchored=0, keep=2, lone=1)
    states = [torch.randn(1, 3, 4, 8, 8) for _ in range(3)]
    for step, x in enumerate(states):
        assert torch.equal(first(step, 0, x), x)
    second = Anchor(previous=first.trajectory(), anchored=2, keep=0, lone=1)
    for step, x in enumerate(torch.randn(1, 3, 4, 8, 8) for _ in range(3)):
        anchored = second(step, 0, x)
        assert torch.equal(anchored[:, :, 1:3], states[step][:, :, 2:])  # the previous chunk's last 2
        assert torch.equal(anchored[:, :, :1], x[:, :, :1]) and torch.equal(anchored[:, :, 3:], x[:, :, 3:])


def test_a_saved_causal_chunk_decodes_from_the_previous_chunks_final_latents(tmp_path):
    """With a network whose result depends on context, a chunk's anchored latents end the last
    step off the previous trajectory; what it saves for its decode are the previous chunk's."""
    store, plan, backend = _run(tmp_path, 13, 9, oracle=False)
    assert len(plan.chunks) == 4 and GRID.anchored_latents(plan.chunks[1].anchored) == 2
    for previous, chunk in zip(plan.chunks, plan.chunks[1:]):
        mine, theirs = store.load_chunk(chunk.index)["latents"], store.load_chunk(previous.index)["latents"]
        assert torch.equal(mine[:, :, 1:3], theirs[:, :, -2:])
    frames, pts = decoded_clip(store, plan, backend)
    assert pts == list(range(FRAMES)) and len(frames) == FRAMES


def test_segments_on_the_grid_crossfade_exactly_their_shared_frames(tmp_path):
    """Segments run apart (a fresh chunk where the plan anchored one) and join by a crossfade.
    With the oracle every latent frame of a segment is the one-chunk run's bit for bit; only the
    frames decoded with the fresh chunk's lone latent as context differ (its first 4a + 1, the
    fade). So every frame outside the fades must be the one-chunk run's exactly, and the fades
    close to it: a fade one frame off, or a padding frame left in, would break both."""
    settings, backend, plan, inputs, denoiser = _job(9, 5)
    segments = plan_segments(plan.chunks, 13)
    assert [(s.start, s.end, s.fade) for s in segments] == [(0, 13, 0), (8, 21, 5), (16, 23, 5)]
    stores = []
    for segment in segments:
        stores.append(JobStore.open(tmp_path / "segments", f"s{segment.index}", {"segment": segment.index}))
        denoise_chunks(dataclasses.replace(plan, chunks=list(segment.chunks)), stores[-1], inputs=inputs,
                       denoiser=denoiser, schedule=backend.schedule, settings=settings,
                       progress=Progress(enabled=False))
    clip = SegmentedClip(Path("clip.mp4"), None, plan, tuple(segments), {})
    joined = list(crossfaded_frames(backend, clip, stores, Progress(enabled=False)))
    assert [pts for _, (pts,) in joined] == list(range(FRAMES))
    single, plan1, _ = _run(tmp_path / "one", 48, 5)
    reference = to_rgb16(decoded_clip(single, plan1, backend)[0]).astype(np.int64)
    frames = np.concatenate([rgb for rgb, _ in joined]).astype(np.int64)
    fades = [f for s in segments[1:] for f in range(s.start, s.start + s.fade)]
    others = [f for f in range(FRAMES) if f not in fades]
    assert np.array_equal(frames[others], reference[others])
    assert np.abs(frames[fades] - reference[fades]).max() < 0.1 * 32767.5
