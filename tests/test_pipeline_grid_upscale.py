"""File upscales on a causal 1 + 4k latent grid, end to end, with the test double of ``causal_backend``.

The double's network is a stand-in (its pictures mean nothing), so these tests check what the
grid must not break: exactly the input's frames and timestamps whatever the frame count (the
padding frames dropped), chunk and segment boundaries on the grid, the same frames with reading
and writing beside the denoising or not, a crashed job resumed from its step checkpoint to the
uninterrupted output, segments on the grid, and a detail matte folded onto the latent frames.
(test_pipeline_grid checks the latents, the decoded frames and the segment joins with an oracle.)
"""

from __future__ import annotations

import json

import ffmpeg
import numpy as np
import pytest
from causal_backend import CausalTestBackend, registered
from job_files import ffprobe_video
from watch_helpers import decoded

from vidscale.media import probe
from vidscale.pipeline.frames import upscale_frames
from vidscale.pipeline.steps import chunk_inputs, plan_for_model
from vidscale.pipeline.upscale import upscale_clip
from vidscale.settings import Settings

# chunks of 9 frames (1 + 2 * 4) sharing 5 (1 + 4): a new chunk every 4 frames
GRID_JOB = {"upscale.engine": "freescale", "sampling.steps": 4, "sampling.guidance_scale": 1.0,
            "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast",
            "jobs.chunk_frames": 9, "jobs.overlap_frames": 5}


class Crash(Exception):
    pass


class CrashingBackend(CausalTestBackend):
    """The double, dying after ``calls`` network calls (as a killed process would, mid-chunk)."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls = calls

    def predictor(self, sampling, *, fps):
        network = super().predictor(sampling, fps=fps)

        def eps(x, t):
            self.calls -= 1
            if self.calls < 0:
                raise Crash
            return network(x, t)
        return eps


@pytest.fixture
def backend(monkeypatch) -> CausalTestBackend:
    return registered(monkeypatch)


def settings(**overrides) -> Settings:
    return Settings().replace({**GRID_JOB, **{k.replace("__", "."): v for k, v in overrides.items()}})


def same_frames(a, b) -> bool:
    x, y = decoded(a), decoded(b)
    return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))


@pytest.mark.parametrize("frames", [1, 2, 7, 12])
def test_any_frame_count_comes_back_with_exactly_its_frames_and_timestamps(backend, make_clip, tmp_path, frames):
    clip = make_clip(width=64, height=48, frames=frames)
    result = upscale_clip(clip, tmp_path / "out.mp4", settings(), model=backend)
    stream = ffprobe_video(result.output)
    assert (int(stream["width"]), int(stream["height"])) == (128, 96)
    assert int(stream["nb_read_frames"]) == frames
    source = [f["pts"] for f in ffmpeg.probe(str(clip), show_frames=None, select_streams="v")["frames"]]
    output = [f["pts"] for f in ffmpeg.probe(str(result.output), show_frames=None, select_streams="v")["frames"]]
    assert np.diff(output).tolist() == np.diff(source).tolist()
    chunks = json.loads((result.job_dir / "report.json").read_text())["plan"]["chunks"]
    assert all(c["start"] % 4 == 0 and (c["end"] + c["pad"] - c["start"]) % 4 == 1 for c in chunks)
    assert chunks[-1]["end"] == frames and chunks[-1]["pad"] == (1 - frames) % 4
    assert result.test_model


def test_reading_and_writing_beside_the_denoising_changes_no_frame(backend, make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=14)
    on = upscale_clip(clip, tmp_path / "on.mp4", settings(jobs__overlap_io=True), model=backend)
    off = upscale_clip(clip, tmp_path / "off.mp4", settings(jobs__overlap_io=False), model=backend)
    assert len(json.loads((on.job_dir / "report.json").read_text())["plan"]["chunks"]) == 3
    assert same_frames(on.output, off.output) and len(decoded(on.output)) == 14


def test_a_crash_mid_chunk_resumes_from_its_step_checkpoint_to_the_same_output(backend, make_clip, tmp_path):
    clip = make_clip(width=64, height=48, frames=12)
    job = settings(jobs__checkpoint_seconds=0.0)
    straight = upscale_clip(clip, tmp_path / "straight" / "out.mp4", job, model=backend)
    target = tmp_path / "crashed" / "out.mp4"
    with pytest.raises(Crash):
        upscale_clip(clip, target, job, model=CrashingBackend(calls=5))  # 3 steps a chunk: inside chunk 2
    assert not target.exists()
    manifest = json.loads(next((tmp_path / "crashed" / ".vidscale-jobs").glob("*/manifest.json")).read_text())
    assert list(manifest["chunks"]) == ["0"] and manifest["running"] == {
        "chunk": 1, "step": 2, "file": "chunk-0001-step-0002.safetensors"}
    upscale_clip(clip, target, job, model=backend)
    assert same_frames(straight.output, target)


def test_a_segmented_job_lies_on_the_grid_and_keeps_every_frame(backend, make_clip, tmp_path):
    """Segment 0 is the same anchored chain as the unsegmented job's, so its frames before the
    first fade are that job's exactly. (How close the fades come: test_pipeline_grid's oracle;
    the double's network is no model, so its pictures say nothing about a real seam.)"""
    clip = make_clip(width=64, height=48, frames=23)
    segmented = upscale_clip(clip, tmp_path / "segmented.mp4", settings(jobs__segment_frames=13), model=backend)
    plain = upscale_clip(clip, tmp_path / "plain.mp4", settings(), model=backend)
    segments = json.loads((segmented.job_dir / "report.json").read_text())["segments"]
    assert [(s["chunks"][0]["start"], s["chunks"][-1]["end"], s["fade"]) for s in segments] == \
        [(0, 13, 0), (8, 21, 5), (16, 23, 5)]
    a, b = decoded(segmented.output), decoded(plain.output)
    assert len(a) == len(b) == 23
    assert all(np.array_equal(x, y) for x, y in zip(a[:8], b[:8]))
    assert not np.array_equal(a[8], b[8])  # the fade starts where segment 1 does


def test_a_detail_matte_gives_one_exponent_per_latent_frame(backend, make_clip):
    clip = make_clip(width=64, height=48, frames=7)
    job = settings(upscale__detail_mask=str(clip))  # the clip is its own (grey) matte
    info = probe(clip)
    plan = plan_for_model(info.width, info.height, (0, 7), job, backend)
    for chunk in plan.chunks:  # [0, 9) padded by 2
        data = chunk_inputs(backend, info, plan, chunk, job)
        assert data.alpha.shape[2] == data.reference.shape[2] == 3 and len(data.pts) == 7


def test_frames_in_memory_come_back_exactly(backend):
    frames = np.random.default_rng(0).integers(0, 256, (6, 16, 24, 3), dtype=np.uint8)
    out = upscale_frames(backend, frames, settings(), fps=24)
    assert out.shape == (6, 32, 48, 3) and out.dtype == np.uint16
