"""``vidscale generate`` on the tiny random model: cascade sizes, frame counts, seeding, selftest.

Tests use a 64x64 base instead of VC2's 320x512 to stay fast; the x2 and x4 cascades are the
same code as 320x512 -> 640x1024 -> 1280x2048.
"""

from __future__ import annotations

import json
import subprocess
import sys

import ffmpeg
import pytest
import torch
from job_files import write_preset
from watch_helpers import decoded

from vidscale.errors import SettingsError
from vidscale.freescale import reschedule_noise
from vidscale.pipeline.generate import cascade_factors, generate_clip
from vidscale.settings import Settings, load_settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "sampling.steps": 3,
        "sampling.prompt": "a red kite over the sea", "generate.base_width": 64, "generate.base_height": 64,
        "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast"}


def video_stream(path):
    info = ffmpeg.probe(str(path), count_frames=None)
    return next(s for s in info["streams"] if s["codec_type"] == "video")


@pytest.mark.slow
@pytest.mark.parametrize("size, frames", [(128, 18), (256, 4)])
def test_generate_writes_the_cascade_size_and_frame_count(tmp_path, size, frames):
    settings = Settings().replace({**TINY, "generate.width": size, "generate.height": size,
                                   "generate.frames": frames})
    result = generate_clip(settings, output=tmp_path / "clip.mp4")
    stream = video_stream(result.output)
    assert (int(stream["width"]), int(stream["height"]), int(stream["nb_read_frames"])) == (size, size, frames)
    assert result.test_model and "RANDOM TEST MODEL" in result.to_dict()["note"]


@pytest.mark.slow
def test_the_same_seed_gives_the_same_clip_and_another_seed_does_not(tmp_path):
    def run(name, seed):
        settings = Settings().replace({**TINY, "generate.width": 128, "generate.height": 128,
                                       "generate.frames": 3, "sampling.seed": seed})
        return decoded(generate_clip(settings, output=tmp_path / name).output)
    first, again, other = run("a.mp4", 5), run("b.mp4", 5), run("c.mp4", 6)
    assert all((x == y).all() for x, y in zip(first, again))
    assert any((x != y).any() for x, y in zip(first, other))


def test_presets_cascade_from_the_base_size():
    assert cascade_factors(load_settings("t2v-640p")) == [2]
    assert cascade_factors(load_settings("t2v-1280p")) == [2, 4]
    g = load_settings("t2v-1280p").generate
    assert (g.width, g.height, g.base_width, g.base_height) == (2048, 1280, 512, 320)
    with pytest.raises(SettingsError, match="times 1, 2, 4"):
        cascade_factors(Settings().replace({"generate.width": 1536, "generate.height": 960}))


def test_noise_rescheduling_reuses_the_first_windows_noise():
    noise = torch.randn(1, 4, 26, 2, 2, generator=torch.Generator().manual_seed(0))
    out = reschedule_noise(noise, window=16, stride=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[:, :, :16], noise[:, :, :16])
    for start in range(16, 26, 4):
        group = out[:, :, start:start + 4]
        sources = noise[:, :, start - 16:start - 12]
        for k in range(group.shape[2]):  # each frame is one of the frames one window earlier
            assert any(torch.equal(group[:, :, k], sources[:, :, j]) for j in range(sources.shape[2]))


@pytest.mark.slow
def test_generate_command_labels_a_test_model_result(tmp_path):
    preset = write_preset(tmp_path / "tiny.toml", {**TINY, "generate.width": 128, "generate.height": 128,
                                                   "generate.frames": 2})
    done = subprocess.run([sys.executable, "-m", "vidscale", "generate", "a cat", "--preset", str(preset),
                           "-o", str(tmp_path / "cat.mp4"), "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["test_model"] is True and "RANDOM TEST MODEL" in result["note"]
    assert (tmp_path / "cat.mp4").is_file()


@pytest.mark.slow
def test_selftest_passes_and_says_its_output_is_noise(tmp_path):
    done = subprocess.run([sys.executable, "-m", "vidscale", "selftest", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "selftest passed" in done.stdout and "RANDOM TEST MODEL" in done.stdout
    assert video_stream(tmp_path / "selftest.mp4")["width"] == 128
    # its stages and steps as they go, on stderr (not a terminal here: whole lines)
    starts = [line.split(":")[0] for line in done.stderr.splitlines() if line.endswith((" ...", " 0/4 step",
                                                                                       " 0/3 step", " 0/18 frame"))]
    assert starts == ["selftest 1/4", "selftest 2/4", "selftest 3/4", "base", "steps", "decode", "selftest 4/4"]


@pytest.mark.slow
def test_selftest_says_its_first_stage_before_importing_torch():
    """The imports take seconds (tens on a loaded machine): the first line must not wait for them."""
    code = ("import sys; from vidscale.pipeline.selftest import run_selftest\n"
            "def log(line): sys.exit(f'{line} torch imported: {\"torch\" in sys.modules}')\n"
            "run_selftest(log=log)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "selftest 1/4: importing torch, diffusers and PyAV ... torch imported: False"
