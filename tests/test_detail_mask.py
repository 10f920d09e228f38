"""``--detail-mask``: a matte steers FreeScale's detail exponent per pixel, frame by frame in time.

The oracle denoiser predicts the noise toward a known clean latent and mixes no pixels, so with a
half-white matte each half must equal the run whose matte is all of that colour. On the tiny
model, whose layers do mix pixels, the white half must still move further from the all-black
result than the black half does.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vidscale.cli import main
from vidscale.media import probe
from vidscale.media.matte import open_matte, read_matte
from vidscale.model.schedule import VC2Schedule
from vidscale.pipeline.chunks import ChunkInputs, denoise_chunks
from vidscale.pipeline.detail import detail_alpha
from vidscale.pipeline.loading import load_model
from vidscale.pipeline.refine import Denoiser
from vidscale.pipeline.steps import chunk_inputs, upscale_denoiser
from vidscale.progress import Progress
from vidscale.settings import load_settings
from vidscale.work.plan import make_plan
from vidscale.work.store import JobStore

FRAMES = 5
RATE = Fraction(30000, 1001)


def write_still(path: Path, cover: np.ndarray) -> Path:
    """A grey PNG of ``cover`` (H, W) uint8, through PyAV's image muxer."""
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = cover.shape[1], cover.shape[0], "gray"
        for packet in stream.encode(av.VideoFrame.from_ndarray(cover, format="gray")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_alpha_matte(path: Path, frames: int, rate: Fraction, size=(40, 30)) -> Path:
    """An RGBA PNG-in-MOV matte, black in colour, opaque on the left half of even frames only."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgba"
        for i in range(frames):
            rgba = np.zeros((height, width, 4), np.uint8)
            rgba[:, : width // 2, 3] = 255 if i % 2 == 0 else 0
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
            frame.pts, frame.time_base = i, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def half(width: int, height: int, value_left: int = 255) -> np.ndarray:
    cover = np.zeros((height, width), np.uint8)
    cover[:, : width // 2] = value_left
    return cover


def test_an_alpha_matte_clip_is_read_frame_by_frame_from_its_alpha(make_clip, tmp_path):
    clip = probe(make_clip(frames=FRAMES, rate=RATE))
    matte = open_matte(write_alpha_matte(tmp_path / "key.mov", FRAMES, RATE), clip)
    cover = read_matte(matte, 1, 4, size=(8, 6))  # frames 1, 2, 3 at the latent size
    assert cover.shape == (3, 6, 8)
    assert cover[1, :, :4].min() == 1.0 and cover[[0, 2]].max() == 0.0 and cover[:, :, 4:].max() == 0.0


def _oracle_run(tmp_path, clip, matte, name):
    settings = load_settings(None, {"sampling.steps": 10, "sampling.guidance_scale": 1.0,
                                    "freescale.structure_guidance": False, "freescale.alpha": 0.5,
                                    "freescale.alpha_mask": 4.0, "upscale.detail_mask": str(matte)})
    schedule = VC2Schedule()
    generator = torch.Generator().manual_seed(0)
    plan = make_plan(64, 64, (0, FRAMES), settings)
    height, width = plan.geometry.target_latent_size
    clean = torch.randn(1, 4, FRAMES, height, width, generator=generator)
    reference = clean + 0.5 * torch.randn(clean.shape, generator=generator)

    def inputs(chunk):
        return ChunkInputs(reference, torch.arange(FRAMES),
                           alpha=detail_alpha(settings, clip, plan, chunk.start, chunk.end))

    def oracle(_chunk):
        return Denoiser(eps_fn=lambda x, t: schedule.eps_from_x0(x, clean, t))

    store = JobStore.open(tmp_path / name, "clip", {"matte": name})
    denoise_chunks(plan, store, inputs=inputs, denoiser=oracle, schedule=schedule, settings=settings,
                   progress=Progress(enabled=False))
    return store.load_chunk(0)["latents"]


def test_with_the_oracle_each_half_of_a_half_matte_equals_that_colour_everywhere(make_clip, tmp_path):
    clip = probe(make_clip(width=64, height=64, frames=FRAMES, rate=RATE))
    results = {name: _oracle_run(tmp_path, clip, write_still(tmp_path / f"{name}.png", cover), name)
               for name, cover in [("white", np.full((30, 40), 255, np.uint8)),
                                   ("black", np.zeros((30, 40), np.uint8)),
                                   ("half", half(40, 30))]}
    middle = results["half"].shape[-1] // 2
    left, right = slice(0, middle - 1), slice(middle + 1, None)  # one latent cell off the edge
    # element-wise arithmetic only, on tensors of one shape, with equal exponents there: bit for bit
    assert torch.equal(results["half"][..., left], results["white"][..., left])
    assert torch.equal(results["half"][..., right], results["black"][..., right])
    assert (results["white"] - results["black"]).abs().mean() > 1e-3  # the exponent matters


TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
        "sampling.steps": 3, "sampling.guidance_scale": 1.0, "freescale.alpha": 0.5,
        "freescale.alpha_mask": 8.0}


def _tiny_latents(model, source: Path, matte: Path, folder: Path) -> torch.Tensor:
    """The upscale's denoised latents (steps 1-3 of upscale_clip); the random VAE decoder of the
    tiny model would smear any difference over the whole picture, so it is left out."""
    settings = load_settings(None, {**TINY, "upscale.detail_mask": str(matte)})
    info = probe(source)
    plan = make_plan(info.width, info.height, (0, info.frame_count), settings,
                     base_latent=(model.base_height // 8, model.base_width // 8))
    store = JobStore.open(folder, matte.stem, {"matte": matte.name})
    denoiser = upscale_denoiser(model, settings, plan, fps=30)
    denoise_chunks(plan, store, inputs=lambda chunk: chunk_inputs(model, info, plan, chunk, settings),
                   denoiser=lambda _chunk: denoiser, schedule=model.schedule, settings=settings,
                   progress=Progress(enabled=False))
    return torch.cat([store.load_chunk(chunk.index)["latents"] for chunk in plan.chunks], dim=2)


@pytest.mark.slow
def test_on_the_tiny_model_the_white_half_moves_further_from_the_all_black_result(make_clip, tmp_path):
    source = make_clip(width=64, height=48, frames=2, rate=RATE)
    model = load_model(load_settings(None, TINY).model)
    black, mixed = (_tiny_latents(model, source, write_still(tmp_path / f"{name}.png", cover), tmp_path)
                    for name, cover in [("black", np.zeros((24, 32), np.uint8)), ("half", half(32, 24))])
    change = (mixed - black).abs()
    middle = change.shape[-1] // 2
    white_half, black_half = change[..., : middle - 1].mean(), change[..., middle + 1:].mean()
    assert white_half > 2 * black_half, (white_half, black_half)


@pytest.mark.parametrize("frames, rate, said", [(10, RATE, "has 10 frames at 30000/1001 fps"),
                                                (20, Fraction(25), "has 20 frames at 25 fps")])
def test_a_matte_of_another_length_or_rate_is_exit_2_naming_both(make_clip, tmp_path, frames, rate, said):
    source = make_clip(frames=20, rate=RATE)
    matte = write_alpha_matte(tmp_path / "matte.mov", frames, rate)
    result = CliRunner().invoke(main, ["upscale", str(source), "--detail-mask", str(matte), "--model", "tiny",
                                       "-o", str(tmp_path / "out.mov")])
    assert result.exit_code == 2, result.output
    assert f"matte.mov {said}; {source.name} has 20 frames at 30000/1001 fps" in result.output
    assert not (tmp_path / "out.mov").exists()


def test_the_lanczos_engine_refuses_a_detail_mask(make_clip, tmp_path):
    still = write_still(tmp_path / "m.png", half(8, 8))
    result = CliRunner().invoke(main, ["upscale", str(make_clip()), "--detail-mask", str(still),
                                       "--engine", "lanczos", "-o", str(tmp_path / "out.mov")])
    assert result.exit_code == 2 and "needs --engine freescale" in result.output


def test_the_three_presets_trade_fidelity_for_invented_detail_in_order():
    faithful, balanced, creative = (load_settings(f"{name}-2x").freescale
                                    for name in ("faithful", "balanced", "creative"))
    # later restart (less noise), stronger pull to the source, stronger structure guidance
    assert faithful.restart_fraction > balanced.restart_fraction > creative.restart_fraction
    assert faithful.alpha < balanced.alpha < creative.alpha
    assert faithful.guidance_weight > balanced.guidance_weight > creative.guidance_weight
    for method in (faithful, balanced, creative):
        assert method.alpha_mask > method.alpha  # white in a mask always means more detail
