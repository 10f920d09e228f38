"""The steps every upscale path shares (:mod:`vidscale.pipeline.steps`): one job identity, one plan.

A stopped job resumes only into a job of the same identity, so the plain file job and the
segmented (cluster) job must compute it the same way; the identity follows the detail matte's
content, not its name and date.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from vidscale.errors import Interrupted
from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.pipeline.segments import SegmentedClip
from vidscale.pipeline.steps import job_identity, plan_for_model
from vidscale.pipeline.upscale import upscale_clip
from vidscale.settings import Settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "sampling.steps": 2,
        "output.codec": "h264", "jobs.chunk_frames": 4, "jobs.overlap_frames": 2}


@pytest.fixture(scope="module")
def model():
    return tiny_videocrafter2()


def _matte(path, value: int) -> str:
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path, compress_level=0)  # size set by 8x8 alone
    return str(path)


def test_the_plain_and_segmented_jobs_have_one_identity(make_clip, tmp_path, model):
    clip = make_clip(width=64, height=48, frames=6)
    settings = Settings().replace({**TINY, "upscale.detail_mask": _matte(tmp_path / "m.png", 255)})
    with pytest.raises(Interrupted):  # the plain job writes its manifest, then stops at its first step
        upscale_clip(clip, tmp_path / "out.mp4", settings, model=model, should_stop=lambda: True)
    manifest = next((tmp_path / ".vidscale-jobs").glob("*/manifest.json"))
    plain = json.loads(manifest.read_text())["identity"]
    segmented = SegmentedClip.prepare(clip, settings, model).identity
    assert json.loads(json.dumps(segmented, default=str)) == plain
    assert "detail_mask" in plain


def test_a_rewritten_matte_with_the_same_size_and_date_is_another_job(make_clip, tmp_path, model):
    clip = make_clip(width=64, height=48, frames=6)
    matte = tmp_path / "matte.png"
    settings = Settings().replace({**TINY, "upscale.detail_mask": _matte(matte, 255)})
    plan = plan_for_model(64, 48, (0, 6), settings, model)
    before, stat = job_identity(clip, plan, settings, model), matte.stat()
    _matte(matte, 0)  # same size (a flat PNG), then the old date back, as `cp -p` or rsync -t would
    os.utime(matte, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert matte.stat().st_size == stat.st_size
    assert job_identity(clip, plan, settings, model) != before


def test_the_plan_follows_the_model(model):
    plan = plan_for_model(64, 48, (0, 6), Settings().replace(TINY), model)
    assert plan.geometry.base_latent == (model.base_height // 8, model.base_width // 8)
