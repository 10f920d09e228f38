"""Interrupting an upscale: step checkpoints of the running chunk, exact resumes, Ctrl-C and exit 130."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from spies import stop_at_question, unet_calls
from watch_helpers import decoded

from vidscale.errors import Interrupted
from vidscale.jobs.interrupts import FIRST, interruptible
from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.pipeline.upscale import upscale_clip
from vidscale.settings import Settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
        "sampling.steps": 6, "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast"}
RUN_STEPS = 5  # 6 steps, restart 0.3: the stage runs steps 1..5


@pytest.fixture(scope="module")
def model():
    return tiny_videocrafter2()


@pytest.mark.parametrize("overrides, frames, question, done_before, left", [
    # three chunks (0-2, 2-4, 4-6): stopped at step 2 of the middle one, whose last frame anchors the next
    ({"jobs.chunk_frames": 3, "jobs.overlap_frames": 1}, 7, RUN_STEPS + 2, RUN_STEPS + 2, RUN_STEPS - 2 + RUN_STEPS),
    # one chunk, DDIM eta > 0: per-step noise from the chunk's generator, whose state is saved
    ({"sampling.eta": 0.7}, 3, 3, 3, RUN_STEPS - 3),
    # one chunk, DPM-Solver++(2M): its second-order term needs the previous step's x0, also saved
    ({"sampling.scheduler": "dpm++2m"}, 3, 3, 3, RUN_STEPS - 3),
], ids=["middle-chunk", "one-chunk-eta", "one-chunk-dpm"])
@pytest.mark.slow
def test_a_run_stopped_mid_chunk_resumes_from_the_step_and_equals_the_straight_run(
        model, make_clip, tmp_path, overrides, frames, question, done_before, left):
    clip = make_clip(width=64, height=48, frames=frames)
    settings = Settings().replace({**TINY, **overrides})
    (tmp_path / "straight").mkdir()
    (tmp_path / "stopped").mkdir()
    upscale_clip(clip, tmp_path / "straight" / "out.mp4", settings, model=model)
    target = tmp_path / "stopped" / "out.mp4"
    every_step = settings.replace({"jobs.checkpoint_seconds": 0.0})  # a run-only setting: same job
    with unet_calls(model) as calls, pytest.raises(Interrupted, match="stopped at step"):
        upscale_clip(clip, target, every_step, model=model, should_stop=stop_at_question(question))
    assert calls["n"] == done_before
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == [".vidscale-jobs"]
    job = next((tmp_path / "stopped" / ".vidscale-jobs").iterdir())
    running = json.loads((job / "manifest.json").read_text())["running"]
    assert sorted(p.name for p in job.glob("*step*")) == [running["file"]]  # older checkpoints removed
    with unet_calls(model) as calls:
        upscale_clip(clip, target, settings, model=model)
    assert calls["n"] == left  # only the steps that were left
    a, b = decoded(tmp_path / "straight" / "out.mp4"), decoded(target)
    assert len(a) == len(b) == frames
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"frame {i} differs after the resume"
    assert sorted(p.name for p in job.iterdir()) == ["manifest.json", "report.json"]


def test_a_second_ctrl_c_stops_at_once_and_still_names_the_resume_command():
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted, match="stopped at once.*resume: vidscale upscale 'a b.mp4'") as info:
        with interruptible("vidscale upscale 'a b.mp4'", said.append) as should_stop:
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not should_stop() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert said == [FIRST]
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)  # the second Ctrl-C interrupts this at once
    assert info.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before
