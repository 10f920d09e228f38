"""Wan through vidscale equals Wan through diffusers: the proof of the Wan backend (issue #20, item 3).

One tiny Wan folder (the real classes at toy widths, written by ``WanPipeline.save_pretrained``)
is loaded by diffusers' own ``WanPipeline`` / ``WanVideoToVideoPipeline`` and by vidscale's
faces, which run the CLI's code (prompt encoding, noise, UniPC with its corrector, the restart,
VAE normalisation). The frames must agree to 1e-4, the issue's bound: vidscale's frames are
quantised to 16 bits (at most 0.5 / 65535 = 7.6e-6 off) and its solver evaluates UniPC's
coefficients in float64 where diffusers uses float32, so agreement is close to float32 rounding,
far inside the bound; a wrong noise draw, sigma, corrector order or normalisation is off by O(1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanVideoToVideoPipeline

from vidscale.model.wan import load_wan, save_wan, tiny_wan
from vidscale.pipeline.diffusers_pipelines import WanFreeScalePipeline, WanFreeScaleVideoToVideoPipeline

BOUND = 1e-4  # issue #20: "its frames equal WanPipeline's ... to 1e-4"
PROMPT, NEGATIVE = "a red kite over the sea", "blurry, static"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("wan") / "tiny"
    save_wan(tiny_wan(), path)
    return path


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_folder_loads_in_both(folder):
    ours = load_wan(folder)
    assert ours.is_test_model and (ours.base_height, ours.base_width) == (32, 32)
    assert ours.schedule.shift == 3.0
    theirs = WanPipeline.from_pretrained(folder)
    for name, param in theirs.transformer.state_dict().items():
        assert torch.equal(param, ours.transformer.state_dict()[name]), name


@pytest.mark.parametrize("guidance", [5.0, 1.0])  # with and without the negative prompt's pass
def test_text_to_video_equals_wan_pipeline(folder, guidance):
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=32, num_frames=9,
                num_inference_steps=4, guidance_scale=guidance, output_type="np")
    theirs = _quiet(WanPipeline.from_pretrained(folder))(**args, generator=torch.Generator().manual_seed(7)).frames
    ours = _quiet(WanFreeScalePipeline.from_pretrained(folder))(**args,
                                                                generator=torch.Generator().manual_seed(7)).frames
    assert ours.shape == theirs.shape == (1, 9, 32, 32, 3)
    assert np.abs(ours - theirs).max() < BOUND
    other_seed = _quiet(WanPipeline.from_pretrained(folder))(**args, generator=torch.Generator().manual_seed(8)).frames
    assert np.abs(other_seed - theirs).max() > 100 * BOUND  # the bound can tell runs apart


def test_video_to_video_equals_wan_video_to_video_pipeline(folder):
    video = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, height=32, width=32, num_inference_steps=5,
                guidance_scale=5.0, strength=0.6, output_type="np")
    pil = [__import__("PIL.Image", fromlist=["Image"]).fromarray(frame) for frame in video]
    theirs = _quiet(WanVideoToVideoPipeline.from_pretrained(folder))(
        video=pil, **args, generator=torch.Generator().manual_seed(3)).frames
    ours = _quiet(WanFreeScaleVideoToVideoPipeline.from_pretrained(folder))(
        video=video, **args, generator=torch.Generator().manual_seed(3)).frames
    assert ours.shape == theirs.shape == (1, 9, 32, 32, 3)
    assert np.abs(ours - theirs).max() < BOUND


def test_cascade_makes_twice_the_base(folder):
    pipe = _quiet(WanFreeScalePipeline.from_pretrained(folder))
    frames = pipe(PROMPT, negative_prompt="", num_frames=5, num_inference_steps=3, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(1)).frames
    assert frames.shape == (1, 5, 64, 64, 3)  # default: 2x the 32x32 base
    with pytest.raises(ValueError, match="not the base"):
        pipe(PROMPT, height=48, width=48, num_frames=5)
