"""``vidscale generate --model wan-tiny``: text to video with Wan end to end, through the CLI.

The base stage is WanPipeline's own sampling (tests/test_wan_diffusers.py proves it equal); here
the whole command runs: the family's default preset, the cascade with the transformer's FreeScale
patches installed for the high stage and removed after, the writer, the test-model label.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
from click.testing import CliRunner

from vidscale.backends import as_backend
from vidscale.cli import main
from vidscale.media import probe, read_frames
from vidscale.model.wan import tiny_wan
from vidscale.settings import FreeScaleSettings

TINY_PRESET = """
[generate]
frames = {frames}
base_width = 32
base_height = 32
width = 64
height = 64
[sampling]
steps = 3
guidance_scale = 5.0
[output]
codec = "h264"
crf = 0
"""


def _generate(tmp_path, name: str, frames: int = 5, *extra: str):
    preset = tmp_path / f"{name}.toml"
    preset.write_text(TINY_PRESET.format(frames=frames))
    out = tmp_path / f"{name}.mp4"
    return out, CliRunner().invoke(main, ["generate", "a red kite", "--model", "wan-tiny", "--preset", str(preset),
                                          "-o", str(out), "--json", *extra])


def _frames(path) -> np.ndarray:
    return np.concatenate([part.frames for part in read_frames(probe(path))])


def test_generate_writes_the_cascade_at_wans_rate(tmp_path):
    out, result = _generate(tmp_path, "a")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["test_model"] is True and "RANDOM TEST MODEL" in report["note"]
    info = probe(out)
    assert (info.width, info.height, info.frame_count, info.frame_rate) == (64, 64, 5, Fraction(16))
    again, result = _generate(tmp_path, "b")
    assert result.exit_code == 0, result.output
    assert np.array_equal(_frames(out), _frames(again))  # the seed decides everything


def test_frames_off_the_causal_grid_are_a_usage_error(tmp_path):
    _, result = _generate(tmp_path, "bad", 16)
    assert result.exit_code == 2
    assert "1 + 4k frames; use 13 or 17" in result.output


def test_without_a_preset_a_wan_model_starts_from_wan_t2v_960p():
    result = CliRunner().invoke(main, ["generate", "a red kite", "--model", "wan-tiny", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert (plan["width"], plan["height"], plan["frames"], plan["frame_rate"]) == (1664, 960, 81, 16)
    assert plan["stages"] == ["832x480", "1664x960"]


def test_a_high_stage_runs_under_the_transformers_patches():
    backend = as_backend(tiny_wan())
    processors = backend.model.transformer.attn_processors
    names = [name for name in processors if ".attn1." in name]
    before = {name: type(processors[name]) for name in names}
    with backend.stage_patches(FreeScaleSettings(), base_latent=(4, 4), target_latent=(8, 8), scale=2):
        during = backend.model.transformer.attn_processors
        assert all(type(during[name]) is not before[name] for name in names)
    after = backend.model.transformer.attn_processors
    assert {name: type(after[name]) for name in names} == before
