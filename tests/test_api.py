"""The Python API: lazy import, keyword settings, and the README's Python examples, run as written
with the tiny model and tiny sizes (the substitutions are listed in ``TINY``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vidscale
from vidscale.api import setting_keys
from vidscale.errors import SettingsError
from vidscale.model import load_videocrafter2
from vidscale.model.folder import save_model
from vidscale.pipeline.result import GenerateResult

ROOT = Path(__file__).resolve().parents[1]
TINY = [(r"num_inference_steps=\d+", "num_inference_steps=2"), (r"num_frames=\d+", "num_frames=2"),
        (r"(?<!_)steps=\d+", "steps=2"), (r"frames=\(0, \d+\)", "frames=(0, 2)")]
# The Wan example on wan-tiny: its 32x32 base doubled, 5 frames (Wan clips are 1 + 4k), on the CPU.
TINY_WAN = [(r"num_frames=\d+", "num_frames=5"), (r"height=\d+", "height=64"), (r"width=\d+", "width=64"),
            (r'"cuda"', '"cpu"'), (r"torch\.bfloat16", "torch.float32"),
            (r"\.frames\[0\]", ".frames[0]; FRAMES = frames")]


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_the_package_root_loads_the_api_only_when_used():
    code = ("import sys, vidscale; assert 'torch' not in sys.modules and 'vidscale.api' not in sys.modules; "
            "vidscale.probe; assert 'vidscale.api' in sys.modules and 'torch' not in sys.modules; "
            "print(sorted(set(dir(vidscale)) & {'upscale', 'generate', 'probe'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['generate', 'probe', 'upscale']"
    with pytest.raises(AttributeError, match="no attribute 'upscal'"):
        vidscale.upscal  # noqa: B018 (the attribute access is what is tested)


def test_keyword_settings_are_unique_names_and_wrong_ones_are_refused(tmp_path):
    keys = setting_keys()
    assert keys["steps"] == "sampling.steps" and keys["codec"] == "output.codec" and "path" not in keys
    with pytest.raises(SettingsError, match="unknown setting 'step'.*allowed: model, "):
        vidscale.upscale(tmp_path / "clip.mov", step=4)
    with pytest.raises(SettingsError, match="sampling.steps: 0 is out of range"):
        vidscale.generate("a cat", tmp_path / "cat.mp4", steps=0)


def test_generate_without_a_preset_starts_from_the_model_familys_own(tmp_path):
    """As ``vidscale generate``: a Wan model gets Wan's preset (16 fps, Wan's sampler), not VC2's."""
    result = vidscale.generate("a kite", tmp_path / "kite.mp4", model="wan-tiny", steps=2, frames=5,
                               base_width=32, base_height=32, width=32, height=32)
    assert (result.frames, result.frame_rate, result.test_model) == (5, 16, True)


def test_generate_returns_what_the_cli_prints(tmp_path):
    result = vidscale.generate("a cat", tmp_path / "cat.mp4", model="tiny", steps=2, frames=2, seed=3,
                               base_width=64, base_height=64, width=128, height=128)
    assert isinstance(result, GenerateResult)
    assert (result.width, result.height, result.frames, result.seed, result.test_model) == (128, 128, 2, 3, True)
    assert result.output.is_file()


@pytest.mark.slow
def test_the_readme_python_examples_run(tmp_path, monkeypatch, make_clip):
    from vidscale.model.wan import save_wan, tiny_wan

    blocks = readme_python_blocks()
    assert len(blocks) == 3
    assert [any(name in block for block in blocks) for name in ("vidscale.upscale(", "DiffusionPipeline",
                                                                  "WanFreeScalePipeline")] == [True] * 3
    (tmp_path / "clip.mov").symlink_to(make_clip(width=64, height=48, frames=4, container="mov"))
    save_model(load_videocrafter2("tiny"), tmp_path / "videocrafter2")  # what `vidscale model convert` makes
    save_wan(tiny_wan(), tmp_path / "Wan2.1-T2V-1.3B-Diffusers")  # the stock folder's layout
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIDSCALE_MODEL", "tiny")
    for block in blocks:
        if "export_to_video" in block and importlib.util.find_spec("imageio") is None:
            pytest.skip("the diffusers example's export_to_video needs imageio and imageio-ffmpeg")
        for pattern, tiny in TINY_WAN if "WanFreeScalePipeline" in block else TINY:
            block = re.sub(pattern, tiny, block)
        names: dict = {}
        exec(compile(block, "README.md", "exec"), names)
        if "vidscale.upscale(" in block:
            assert (vidscale.probe("clip_2x.mov").width, vidscale.probe("clip_2x.mov").frame_count) == (128, 2)
        if "WanFreeScalePipeline" in block:
            assert names["FRAMES"].shape == (5, 64, 64, 3)  # the Wan example's frames: 2x its 32x32 base
    assert vidscale.probe("kite_base.mp4").width == 64 and vidscale.probe("kite_2x.mp4").width == 128
