"""``vidscale upscale --engine freescale`` end to end on the tiny random model.

Random weights make noise, so these tests check what noise cannot hide: sizes, frame counts and
timestamps, resumed runs identical to uninterrupted ones, no partial output under the final name,
and chunk boundaries no rougher than the inside of a chunk. (The oracle tests in
``test_pipeline_chunks`` check that the stitching returns a known latent exactly.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import ffmpeg
import numpy as np
import pytest
from job_files import ffprobe_video, stored_chunks, write_preset
from watch_helpers import decoded

from vidscale.pipeline.upscale import plan_upscale, upscale_clip
from vidscale.settings import Settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
        "sampling.steps": 4, "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast"}
CHUNKED = {**TINY, "jobs.chunk_frames": 4, "jobs.overlap_frames": 2}


def tiny_settings(**overrides) -> Settings:
    return Settings().replace({**CHUNKED, **{k.replace("__", "."): v for k, v in overrides.items()}})






@pytest.mark.slow
def test_a_multi_chunk_upscale_keeps_every_frame_and_timestamp(make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=9)
    result = upscale_clip(clip, tmp_path / "out.mp4", tiny_settings())
    stream = ffprobe_video(result.output)
    assert (int(stream["width"]), int(stream["height"])) == (128, 96)
    assert int(stream["nb_read_frames"]) == 9
    source_pts = [f["pts"] for f in ffmpeg.probe(str(clip), show_frames=None, select_streams="v")["frames"]]
    output_pts = [f["pts"] for f in ffmpeg.probe(str(result.output), show_frames=None, select_streams="v")["frames"]]
    assert np.diff(output_pts).tolist() == np.diff(source_pts).tolist()
    assert result.test_model
    report = json.loads((result.job_dir / "report.json").read_text())
    assert len(report["plan"]["chunks"]) >= 3
    assert {"settings", "plan", "seconds", "peak_memory_gb", "versions"} <= set(report)
    assert report["test_model"] is True and report["versions"]["torch"]


@pytest.mark.parametrize("size, frames, fusion", [((319, 241), 2, "fast"), ((854, 480), 1, "npa-only")])
@pytest.mark.slow
def test_odd_sizes_come_back_at_exactly_twice_the_input(make_clip, tmp_path, size, frames, fusion):
    """Padded to the model grid, cropped on output. The large sizes use windowed (NPA) attention
    only, to keep the CPU test short; the geometry is the same in every fusion mode."""
    clip = make_clip(width=size[0], height=size[1], frames=frames, pix_fmt="yuv444p")
    settings = tiny_settings(sampling__steps=2, output__codec="prores-hq", freescale__fusion=fusion)
    result = upscale_clip(clip, tmp_path / "out.mov", settings)
    stream = ffprobe_video(result.output)
    assert (int(stream["width"]), int(stream["height"])) == (2 * size[0], 2 * size[1])
    assert int(stream["nb_read_frames"]) == frames


def test_the_plan_for_large_sizes_is_exact_and_says_how_it_fits(make_clip):
    clip = make_clip(width=64, height=48, frames=2)
    plan = plan_upscale(clip, tiny_settings())
    assert plan.geometry.output_size == (128, 96)
    from vidscale.work.plan import make_plan
    for width, height in ((1280, 720), (854, 480), (319, 241)):
        big = make_plan(width, height, (0, 240), Settings().replace({"jobs.memory_budget_gb": 24.0}))
        assert big.geometry.output_size == (2 * width, 2 * height)
        assert big.chunks[0].start == 0 and big.chunks[-1].end == 240
    huge = make_plan(1920, 1080, (0, 64), Settings().replace({"jobs.memory_budget_gb": 8.0}))
    assert huge.tiles and huge.fusion == "npa-only" and huge.notes


@pytest.mark.slow
def test_seams_at_chunk_boundaries_are_no_rougher_than_inside_chunks(make_clip, tmp_path):
    """Metric: mean absolute change between consecutive output frames (8-bit RGB).

    The largest change across a chunk boundary must not exceed the largest change between two
    frames of the same chunk by more than 10 %.
    """
    clip = make_clip(width=64, height=48, frames=10)
    result = upscale_clip(clip, tmp_path / "out.mp4", tiny_settings())
    frames = [f.astype(np.float64) for f in decoded(result.output)]
    change = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    plan = json.loads((result.job_dir / "report.json").read_text())["plan"]
    # frame k belongs to the chunk that owns it; a seam is between the last owned frame and the next
    starts = [c["start"] + c["anchored"] for c in plan["chunks"][1:]]
    seams = [change[s - 1] for s in starts]
    inside = [c for i, c in enumerate(change) if i + 1 not in starts]
    assert seams and inside
    assert max(seams) <= 1.1 * max(inside), (seams, inside)


def run_upscale(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidscale", "upscale", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **popen)


@pytest.mark.slow
def test_sigkill_in_a_middle_chunk_then_rerun_gives_the_uninterrupted_output(make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=12)
    preset = write_preset(tmp_path / "tiny.toml", CHUNKED)
    args = ["--preset", str(preset), "-q"]
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = run_upscale(str(clip), "-o", str(tmp_path / "straight" / "out.mp4"), *args)
    assert straight.wait(300) == 0, straight.stdout.read().decode()
    target = tmp_path / "killed" / "out.mp4"
    killed = run_upscale(str(clip), "-o", str(target), *args)
    jobs = tmp_path / "killed" / ".vidscale-jobs"
    deadline = time.monotonic() + 240
    while stored_chunks(jobs) < 2:  # chunks 0 and 1 stored, 2 running
        assert killed.poll() is None, killed.stdout.read().decode()
        assert time.monotonic() < deadline, "no second chunk within 240 s"
        assert not target.exists()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert not target.exists(), "a partial output appeared under the final name"
    manifest = json.loads(next(jobs.glob("*/manifest.json")).read_text())
    assert 2 <= len(manifest["chunks"]) < len(plan_upscale(clip, Settings().replace(CHUNKED)).chunks)
    rerun = run_upscale(str(clip), "-o", str(target), *args)
    assert rerun.wait(300) == 0, rerun.stdout.read().decode()
    a, b = decoded(tmp_path / "straight" / "out.mp4"), decoded(target)
    assert len(a) == len(b) == 12
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"frame {i} differs after the resume"
    assert [p.name for p in (tmp_path / "killed").iterdir() if p.name != ".vidscale-jobs"] == ["out.mp4"]


@pytest.mark.slow
def test_dry_run_prints_the_plan_without_loading_a_model(make_clip, tmp_path):
    """The dry run reads the model's configs (its base size decides the plan), never its weights."""
    from vidscale.model.configs import TINY_TEXT, TINY_UNET, TINY_VAE

    clip = make_clip(width=64, height=48, frames=9)
    unloadable = tmp_path / "configs-only"  # a model folder without a single weight file
    for component, config in {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}.items():
        (unloadable / component).mkdir(parents=True)
        (unloadable / component / "config.json").write_text(json.dumps(config))
    (unloadable / "model_index.json").write_text(json.dumps({"_class_name": "VideoCrafter2Pipeline",
                                                               "_vidscale_format": 2}))
    preset = write_preset(tmp_path / "tiny.toml", {**CHUNKED, "model.path": str(unloadable)})
    done = subprocess.run([sys.executable, "-m", "vidscale", "upscale", str(clip), "--preset", str(preset),
                           "--dry-run", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["items"][0]["result"]["plan"]
    assert len(plan["chunks"]) >= 3 and "memory_gb" in plan and "tflops_per_step" in plan
    assert plan["geometry"]["base_latent"] == [8, 8]  # the tiny UNet's sample_size, read from its config
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.slow
def test_bf16_runs_the_gpu_precision_path_on_the_cpu(make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=3)
    result = upscale_clip(clip, tmp_path / "out.mp4", tiny_settings(model__dtype="bf16", sampling__steps=2))
    report = json.loads((result.job_dir / "report.json").read_text())
    assert report["dtype"] == "bfloat16"
    frames = decoded(result.output)
    assert len(frames) == 3 and frames[0].shape == (96, 128, 3) and np.ptp(frames[0]) > 0


def test_dry_run_text_names_chunks_windows_tiles_and_cost(make_clip):
    from click.testing import CliRunner

    from vidscale.cli import main
    clip = make_clip(width=64, height=48, frames=9)
    done = CliRunner().invoke(main, ["upscale", str(clip), "--dry-run", "--model", "tiny"])
    assert done.exit_code == 0, done.output
    for line in ("size      64x48 -> 128x96", "frames    0-8 (9) in 1 chunk(s)", "windows", "tiles     none",
                 "GB GPU memory"):
        assert line in done.output


@pytest.mark.slow
def test_over_the_memory_budget_the_latent_is_tiled_and_blended(make_clip, tmp_path):
    """The tiny model priced as full-size VideoCrafter2 (its weights alone fill 0.1 GB), so the plan
    must tile; the tiles run on the tiny model and are blended into exactly scale x the input."""
    from vidscale.model.spec import VC2_COST
    from vidscale.model.videocrafter2 import tiny_videocrafter2

    model = tiny_videocrafter2()
    model.cost = VC2_COST
    clip = make_clip(width=128, height=96, frames=2)
    settings = tiny_settings(jobs__memory_budget_gb=0.1, sampling__steps=2)
    result = upscale_clip(clip, tmp_path / "out.mp4", settings, model=model)
    plan = json.loads((result.job_dir / "report.json").read_text())["plan"]
    assert len(plan["tiles"]) > 1 and plan["tile_overlap"] > 0
    frames = decoded(result.output)
    assert len(frames) == 2 and frames[0].shape == (192, 256, 3)


@pytest.mark.slow
def test_eta_one_upscales_repeatably_from_the_seed_alone(make_clip, tmp_path):
    """DDIM's step noise comes from a generator keyed by (seed, chunk), never the global RNG."""
    import torch
    clip = make_clip(width=32, height=32, frames=2)
    outputs = []
    for run, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)
        settings = tiny_settings(sampling__eta=1.0, sampling__steps=2, jobs__chunk_frames=2,
                                 jobs__overlap_frames=0)
        outputs.append(decoded(upscale_clip(clip, tmp_path / f"{run}.mp4", settings).output))
    assert all(np.array_equal(a, b) for a, b in zip(*outputs))
