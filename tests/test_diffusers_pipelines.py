"""The model folder as a diffusers pipeline folder, and the pipeline classes against the CLI's own code.

"Equals the CLI" is checked losslessly: the CLI functions (``generate_clip``, ``upscale_clip``) run
with their ``VideoWriter`` replaced by one that keeps the uint16 frames it is handed, and the
pipelines' frames are compared with those, bit for bit (an encoded file would be lossy). Both run
on the pipeline's modules: the first test shows the two loaders give bit-identical weights, but CPU
kernels round differently for differently aligned (memory-mapped) copies of the same weights.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from float_bounds import gamma
from spies import KeepFrames

from vidscale.media import probe, read_frames
from vidscale.model import load_videocrafter2
from vidscale.model.folder import save_model
from vidscale.pipeline import generate as generate_module
from vidscale.pipeline import upscale as upscale_module
from vidscale.pipeline.diffusers_pipelines import (
    FreeScalePipeline,
    VideoCrafter2Pipeline,
    VideoCrafter2UpscalePipeline,
    as_rgb_frames,
)
from vidscale.pipeline.generate import generate_clip
from vidscale.pipeline.upscale import upscale_clip
from vidscale.settings import load_settings

PROMPT = "a red kite over the sea"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "vc2"
    save_model(load_videocrafter2("tiny"), path)
    return path


@pytest.fixture(scope="module")
def pipe(folder):
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe




def as_rgb16(frames: np.ndarray) -> np.ndarray:
    return np.round(frames[0] * 65535).astype(np.uint16)


def test_diffusers_loads_the_folder_as_the_vidscale_pipeline(folder, pipe):
    assert type(pipe) is VideoCrafter2Pipeline
    assert set(pipe.components) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    tiny = load_videocrafter2(folder)  # vidscale's own loader reads the same folder
    assert tiny.is_test_model and (tiny.base_height, tiny.base_width) == pipe.base_size == (64, 64)
    for name in ("unet", "vae", "text_encoder"):
        ours, theirs = getattr(tiny, name).state_dict(), getattr(pipe, name).state_dict()
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(folder)  # diffusers runs no code from a folder unasked
    assert type(FreeScalePipeline.from_pretrained(folder)) is FreeScalePipeline  # trusts vidscale's lines only
    code = folder / "tokenizer" / "clip_tokenizer.py"
    code.write_text("import os\n" + code.read_text())
    try:
        with pytest.raises(ValueError, match="trust_remote_code"):
            VideoCrafter2Pipeline.from_pretrained(folder)
    finally:
        (folder / "tokenizer" / "clip_tokenizer.py").write_text("from vidscale.model.tokenizer import ClipTokenizer\n")


def test_a_folder_of_the_first_format_still_loads(folder, tmp_path):
    """vidscale 0.1.0 wrote every component's weights as model.safetensors and ``"format": 1``."""
    import json
    import shutil
    old = tmp_path / "old"
    shutil.copytree(folder, old, ignore=shutil.ignore_patterns("*.py", "scheduler"))
    for component in ("unet", "vae"):
        (old / component / "diffusion_pytorch_model.safetensors").rename(old / component / "model.safetensors")
        config = json.loads((old / component / "config.json").read_text())
        (old / component / "config.json").write_text(json.dumps({k: v for k, v in config.items()
                                                                  if not k.startswith("_")}))
    (old / "model_index.json").write_text(json.dumps({"format": 1, "converted_from": {"file": "model.ckpt"},
                                                      "base_size": [320, 512]}))
    loaded, new = load_videocrafter2(old), load_videocrafter2(folder)
    assert loaded.name == "VideoCrafter2 (model.ckpt)"
    for name in ("unet", "vae", "text_encoder"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(loaded, name).state_dict().values(),
                                                     getattr(new, name).state_dict().values())), name


def test_freescale_pipeline_gives_the_frames_vidscale_generate_writes(folder, pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(generate_module, "VideoWriter", KeepFrames)
    settings = load_settings("t2v-640p", {
        "model.path": str(folder), "model.device": "cpu", "model.dtype": "fp32", "sampling.prompt": PROMPT,
        "sampling.steps": 2, "sampling.seed": 5, "generate.frames": 2, "generate.base_width": 64,
        "generate.base_height": 64, "generate.width": 128, "generate.height": 128})
    generate_clip(settings, output=tmp_path / "kite.mp4", model=pipe.videocrafter2())
    cli = np.concatenate(KeepFrames.frames)
    steps = []
    cascade = FreeScalePipeline.from_pipe(pipe)
    frames = cascade(PROMPT, num_frames=2, num_inference_steps=2, generator=torch.Generator().manual_seed(5),
                     callback_on_step_end=lambda p, i, t, kw: steps.append((i, t)) or {}).frames
    assert frames.shape == (1, 2, 128, 128, 3) and frames.dtype == np.float32
    assert np.array_equal(as_rgb16(frames), cli)
    assert steps == [(0, 501), (1, 1), (0, 501), (1, 1)]  # base stage, then the x2 stage
    other = cascade(PROMPT, num_frames=2, num_inference_steps=2, generator=torch.Generator().manual_seed(6)).frames
    assert not np.array_equal(other, frames)


def test_output_types_and_the_base_size(pipe, tmp_path):
    run = dict(num_frames=2, num_inference_steps=1, guidance_scale=1.0)
    as_np = pipe(PROMPT, **run).frames
    as_pt = pipe(PROMPT, output_type="pt", **run).frames
    as_pil = pipe(PROMPT, output_type="pil", **run).frames
    assert as_np.shape == (1, 2, 64, 64, 3) and as_pt.shape == (1, 2, 3, 64, 64)
    assert torch.equal(as_pt.permute(0, 1, 3, 4, 2), torch.from_numpy(as_np))
    assert len(as_pil[0]) == 2 and as_pil[0][0].size == (64, 64)
    # PIL's frames are the 16-bit values rounded to 8 bits (0.5 / 255); 'np' divides them in float32
    # (under u, as they are at most 1), and the float64 division here rounds once more
    assert np.abs(np.asarray(as_pil[0][1]) / 255.0 - as_np[0, 1]).max() <= 0.5 / 255 + gamma(2)
    with pytest.raises(ValueError, match="FreeScalePipeline"):
        pipe(PROMPT, height=128, width=128, **run)
    if importlib.util.find_spec("imageio") is not None:  # export_to_video's backend
        from diffusers.utils import export_to_video
        assert probe(export_to_video(as_np[0], str(tmp_path / "a.mp4"), fps=8)).frame_count == 2


def test_upscale_pipeline_gives_the_frames_vidscale_upscale_writes(folder, pipe, make_clip, tmp_path, monkeypatch):
    clip = make_clip(width=64, height=48, frames=5)
    overrides = {"jobs.chunk_frames": 4, "jobs.overlap_frames": 2, "sampling.steps": 2}
    monkeypatch.setattr(upscale_module, "VideoWriter", KeepFrames)
    settings = load_settings(None, {"model.path": str(folder), "model.device": "cpu", "model.dtype": "fp32",
                                    **overrides})  # `vidscale upscale` without --preset
    upscale_clip(clip, tmp_path / "out.mov", settings, model=pipe.videocrafter2())
    cli = np.concatenate(KeepFrames.frames)
    info = probe(clip)
    source = np.concatenate([part.frames for part in read_frames(info, 0, 5)])
    upscaler = VideoCrafter2UpscalePipeline.from_pipe(pipe)
    frames = upscaler(source, fps=round(info.frame_rate), overrides=overrides).frames
    assert frames.shape == (1, 5, 96, 128, 3)
    assert np.array_equal(as_rgb16(frames), cli)


def test_frames_in_every_accepted_form_become_the_same_integers():
    import PIL.Image
    rgb = np.random.default_rng(0).integers(0, 256, (2, 6, 4, 3), dtype=np.uint8)
    as_float = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    assert np.array_equal(as_rgb_frames(rgb), rgb)
    assert np.array_equal(as_rgb_frames([PIL.Image.fromarray(f) for f in rgb]), rgb)
    assert np.array_equal(as_rgb_frames(as_float) // 257, rgb)  # floats become 16-bit: 255 * 257 = 65535
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\)"):
        as_rgb_frames(rgb[..., :2])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_model_offload_give_the_frames_of_a_plain_cuda_run(pipe):
    run = dict(num_frames=2, num_inference_steps=2)
    pipe.to("cuda")
    try:
        on_gpu = pipe(PROMPT, generator=torch.Generator("cuda").manual_seed(1), **run).frames
        if importlib.util.find_spec("accelerate") is not None:
            pipe.to("cpu")
            pipe.enable_model_cpu_offload()
            offloaded = pipe(PROMPT, generator=torch.Generator("cuda").manual_seed(1), **run).frames
            assert np.array_equal(offloaded, on_gpu)
    finally:
        pipe.remove_all_hooks()
        pipe.to("cpu")
