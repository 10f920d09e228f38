"""Chunked, resumable denoising checked with an oracle denoiser.

The oracle predicts exactly the noise that separates the current latent from a known clean latent,
so every correct sampler path must land on that latent (up to the final step's noise floor). Frame
offsets, dropped or duplicated frames and wrong stitching would all show up as a mismatch.
"""

import pytest
import torch
from float_bounds import gamma

from vidscale.model.schedule import VC2Schedule
from vidscale.pipeline.chunks import Anchor, ChunkInputs, Interrupted, denoise_chunks, frame_noise, tiled
from vidscale.pipeline.refine import Denoiser
from vidscale.progress import Progress
from vidscale.settings import Settings
from vidscale.work.plan import make_plan, plan_tiles
from vidscale.work.store import JobStore

FRAMES = 11


class Crash(Exception):
    pass


def _settings(chunk_frames, overlap):
    # Structure guidance would pull the result toward the (degraded) reference on purpose: off here.
    return Settings().replace({"sampling.steps": 10, "sampling.guidance_scale": 1.0,
                               "freescale.structure_guidance": False,
                               "jobs.chunk_frames": chunk_frames, "jobs.overlap_frames": overlap})


def _clean_and_reference():
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 4, FRAMES, 16, 16, generator=generator)
    return clean, clean + 0.5 * torch.randn(clean.shape, generator=generator)


def _run(tmp_path, chunk_frames, overlap, crash_after_calls=None, stop_after_chunk=False):
    settings = _settings(chunk_frames, overlap)
    schedule = VC2Schedule()
    clean, reference = _clean_and_reference()
    plan = make_plan(64, 64, (0, FRAMES), settings)
    calls = {"n": 0}

    def oracle(chunk):
        def eps(x, t):
            calls["n"] += 1
            if crash_after_calls is not None and calls["n"] > crash_after_calls:
                raise Crash
            return schedule.eps_from_x0(x, clean[:, :, chunk.start:chunk.end], t)
        return Denoiser(eps_fn=eps)

    def inputs(chunk):
        part = reference[:, :, chunk.start:chunk.end]
        return ChunkInputs(part, torch.arange(chunk.start, chunk.end))

    store = JobStore.open(tmp_path, "clip", {"chunks": chunk_frames, "overlap": overlap})
    denoise_chunks(plan, store, inputs=inputs, denoiser=oracle, schedule=schedule, settings=settings,
                   progress=Progress(enabled=False), should_stop=(lambda: True) if stop_after_chunk else None)
    latents = torch.cat([store.load_chunk(c.index)["latents"] for c in plan.chunks], dim=2)
    pts = torch.cat([store.load_chunk(c.index)["pts"] for c in plan.chunks])
    return latents, pts, clean, plan


def test_one_chunk_returns_the_known_latent(tmp_path):
    latents, pts, clean, plan = _run(tmp_path, 48, 4)
    assert len(plan.chunks) == 1
    # The last DDIM step leaves sqrt(1 - alpha_bar_0) ~ 0.029 times a unit-variance residual.
    error = (latents - clean).abs()
    assert error.mean() < 0.03 and error.max() < 0.2
    assert pts.tolist() == list(range(FRAMES))


def test_many_overlapping_chunks_equal_one_chunk(tmp_path):
    single, _, _, _ = _run(tmp_path / "one", 48, 4)
    chunked, pts, clean, plan = _run(tmp_path / "many", 5, 2)
    assert len(plan.chunks) == 3
    assert pts.tolist() == list(range(FRAMES))  # every frame once, in order
    assert torch.equal(chunked, single)


def test_a_crash_midway_resumes_to_the_same_result(tmp_path):
    reference, _, _, _ = _run(tmp_path / "ref", 5, 2)
    with pytest.raises(Crash):
        _run(tmp_path / "job", 5, 2, crash_after_calls=10)  # 7 steps a chunk: dies inside the second
    store_files = sorted(p.name for p in next((tmp_path / "job").iterdir()).iterdir())
    assert store_files == ["chunk-0000.safetensors", "manifest.json"]
    with pytest.raises(Interrupted):
        _run(tmp_path / "job", 5, 2, stop_after_chunk=True)  # a polite stop after one more chunk
    resumed, _, _, _ = _run(tmp_path / "job", 5, 2)
    assert torch.equal(resumed, reference)


def test_anchored_frames_follow_the_previous_chunk_at_every_step():
    # A denoiser that mixes frames (like temporal attention) makes chunk contexts differ; the
    # anchor must still hand the next chunk exactly the previous chunk's states.
    first = Anchor(previous=None, anchored=0, keep=2)
    states = [torch.randn(1, 4, 5, 8, 8) for _ in range(3)]
    for step, x in enumerate(states):
        assert torch.equal(first(step, 0, x), x)
    second = Anchor(previous=first.trajectory(), anchored=2, keep=0)
    for step, x in enumerate(torch.randn(1, 4, 5, 8, 8) for _ in range(3)):
        anchored = second(step, 0, x)
        assert torch.equal(anchored[:, :, :2], states[step][:, :, 3:])
        assert torch.equal(anchored[:, :, 2:], x[:, :, 2:])


def test_frame_noise_depends_on_the_frame_not_the_chunk():
    whole = frame_noise(7, range(0, 6), (4, 8, 8))
    tail = frame_noise(7, range(3, 6), (4, 8, 8))
    assert torch.equal(whole[:, :, 3:], tail)
    assert not torch.equal(frame_noise(8, range(3, 6), (4, 8, 8)), tail)


def test_tiles_blend_back_to_the_untiled_prediction():
    def local(x, t):  # a per-pixel "model": tiling must not change it
        return torch.sin(x) * t

    x = torch.randn(1, 4, 3, 40, 56)
    tiles = plan_tiles((40, 56), (24, 32), overlap=8)
    assert len(tiles) > 2
    expected = local(x, 3)
    # sin within 2 ulps (4 u: libm's, or SLEEF's vectorised one) and * t: 5 u on each side; per pixel
    # up to 4 tiles: weight products, 4-term sums of values and of weights, the division: 9 more
    assert ((tiled(local, tiles, 8)(x, 3) - expected).abs() <= gamma(19) * expected.abs()).all()
