"""Stopping and resuming ``vidscale generate``: stage results and step checkpoints in a job folder.

A generation is a base stage and cascade stages, all drawing from one generator. A resumed run
must continue from exactly where the stopped one was, so these tests compare a resumed run with
an uninterrupted one bit for bit: the final latents and the 16-bit frames handed to the writer
(in process), or the decoded files (across processes, for Ctrl-C and SIGKILL). They also count the
UNet calls of the resumed run: a rerun that started over would match as well, but do every step.

The tiny model at a 64x64 base and 2 frames, 4 steps: the base stage runs 4, the x2 stage 3.
(The Ctrl-C in the base stage is the README's exit-status row, in ``tests/test_exit_codes.py``.)
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from job_files import write_preset
from spies import KeepFrames, stop_at_question, unet_calls
from watch_helpers import decoded

import vidscale
from vidscale.errors import Interrupted
from vidscale.jobs.interrupts import FIRST
from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.pipeline import generate as generate_module
from vidscale.pipeline.generate import generate_clip, generate_latents
from vidscale.settings import Settings

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "sampling.steps": 4,
        "sampling.prompt": "a red kite over the sea", "generate.base_width": 64, "generate.base_height": 64,
        "generate.width": 128, "generate.height": 128, "generate.frames": 2,
        "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast"}
BASE_STEPS, HIGH_STEPS = 4, 3  # restart 0.3 of 4 steps: the x2 stage starts at step 1
SAMPLERS = {"ddim-eta0": {"sampling.eta": 0.0}, "ddim-eta1": {"sampling.eta": 1.0},
            "dpm++2m": {"sampling.scheduler": "dpm++2m", "sampling.eta": 0.0}}


@pytest.fixture(scope="module")
def model():
    return tiny_videocrafter2()






def generate(model, settings, output: Path, **kwargs) -> tuple[torch.Tensor, np.ndarray, int]:
    """``generate_clip`` in process: (the latents it decodes, the frames it writes, its UNet calls)."""
    seen = []
    original = generate_module.decoded_rgb16

    def spy(backend, latents, progress):
        seen.append(latents.clone())
        return original(backend, latents, progress)

    with pytest.MonkeyPatch.context() as patch, unet_calls(model) as calls:
        patch.setattr(generate_module, "VideoWriter", KeepFrames)
        patch.setattr(generate_module, "decoded_rgb16", spy)
        generate_clip(settings, output=output, model=model, **kwargs)
    return seen[0], np.concatenate(KeepFrames.frames), calls["n"]


def job_folder(parent: Path) -> Path:
    (job,) = (parent / ".vidscale-jobs").iterdir()
    return job


@pytest.fixture(scope="module")
def straight(model, tmp_path_factory):
    """The uninterrupted run of each sampler, made once."""
    runs = {}

    def get(sampler):
        if sampler not in runs:
            folder = tmp_path_factory.mktemp(f"straight-{sampler}")
            runs[sampler] = generate(model, Settings().replace({**TINY, **SAMPLERS[sampler]}), folder / "kite.mp4")
        return runs[sampler]
    return get


# should_stop is asked after every step but a stage's last (the stage is saved right after, then
# asked once more): question k comes after k UNet calls.
# In the base stage only eta 1 (the generator draws at every step) and DPM++ (the solver's history)
# keep state besides the latent; a stop in the cascade stage also resumes from the saved base.
IN_BASE = ["ddim-eta1", "dpm++2m"]


@pytest.mark.parametrize("sampler, question, message, finished, running", [
    *[(sampler, 2, "stopped at step 2 of 4 in stage 1 of 2", 0, (0, 2)) for sampler in IN_BASE],
    *[(sampler, BASE_STEPS + 1, "stopped at step 1 of 3 in stage 2 of 2", 1, (1, 1)) for sampler in SAMPLERS],
    ("ddim-eta1", BASE_STEPS, "stopped after stage 1 of 2", 1, None),  # between the stages
], ids=[*(f"{s}-base" for s in IN_BASE), *(f"{s}-cascade" for s in SAMPLERS), "ddim-eta1-between"])
def test_a_stopped_generation_resumes_from_the_step_and_equals_the_straight_run(
        model, straight, tmp_path, sampler, question, message, finished, running):
    settings = Settings().replace({**TINY, **SAMPLERS[sampler]})
    every_step = settings.replace({"jobs.checkpoint_seconds": 0.0})  # a run-only setting: the same job
    output = tmp_path / "kite.mp4"
    with unet_calls(model) as calls, pytest.raises(Interrupted, match=message):
        generate_clip(every_step, output=output, model=model, should_stop=stop_at_question(question))
    assert calls["n"] == question
    assert [p.name for p in tmp_path.iterdir()] == [".vidscale-jobs"]  # no output, not even a partial one
    job = job_folder(tmp_path)
    manifest = json.loads((job / "manifest.json").read_text())
    assert len(manifest["chunks"]) == finished
    if running is None:
        assert "running" not in manifest
    else:
        assert (manifest["running"]["chunk"], manifest["running"]["step"]) == running
        assert sorted(p.name for p in job.glob("*step*")) == [manifest["running"]["file"]]  # older ones removed
    latents, frames, left = generate(model, settings, output)
    assert left == BASE_STEPS + HIGH_STEPS - question  # only the steps that were left
    expected_latents, expected_frames, _ = straight(sampler)
    assert torch.equal(latents, expected_latents)
    assert np.array_equal(frames, expected_frames)
    assert sorted(p.name for p in job.iterdir()) == ["manifest.json", "report.json"]
    report = json.loads((job / "report.json").read_text())
    assert report["test_model"] is True and report["settings"]["sampling"]["eta"] == settings.sampling.eta


def test_other_settings_open_another_job_and_a_finished_job_run_again_starts_afresh(model, tmp_path):
    settings = Settings().replace({**TINY, "jobs.checkpoint_seconds": 0.0})
    output = tmp_path / "kite.mp4"
    with pytest.raises(Interrupted):
        generate_clip(settings, output=output, model=model, should_stop=stop_at_question(2))
    everything = BASE_STEPS + HIGH_STEPS
    assert generate(model, settings.replace({"sampling.seed": 7}), output)[2] == everything  # not resumed
    assert len(list((tmp_path / ".vidscale-jobs").iterdir())) == 2
    assert generate(model, settings, output)[2] == everything - 2  # its own job, resumed
    assert generate(model, settings, output, overwrite=True)[2] == everything  # done: afresh


def test_a_keyboard_interrupt_in_the_python_api_leaves_a_job_the_same_call_resumes(model, tmp_path, monkeypatch):
    """No signal handler in a library call: Ctrl-C is Python's KeyboardInterrupt, here raised in the
    UNet's third call. The job keeps the last step checkpoint (every step, with checkpoint_seconds=0)."""
    monkeypatch.setattr(generate_module, "load_model", lambda _settings: model)
    options = {key.split(".")[1]: value for key, value in TINY.items() if key not in ("model.path", "sampling.prompt")}
    options["checkpoint_seconds"] = 0.0
    straight = vidscale.generate(TINY["sampling.prompt"], tmp_path / "straight.mp4", model="tiny", **options)

    def interrupt_third_call(*_):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
    calls = {"n": 0}
    handle = model.unet.register_forward_hook(interrupt_third_call)
    try:
        with pytest.raises(KeyboardInterrupt):
            vidscale.generate(TINY["sampling.prompt"], tmp_path / "kite.mp4", model="tiny", **options)
    finally:
        handle.remove()
    assert not (tmp_path / "kite.mp4").exists()
    with unet_calls(model) as left:
        result = vidscale.generate(TINY["sampling.prompt"], tmp_path / "kite.mp4", model="tiny", **options)
    assert left["n"] == BASE_STEPS + HIGH_STEPS - 2  # resumed after the second step
    a, b = decoded(straight.output), decoded(result.output)
    assert len(a) == len(b) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_keyboard_interrupt_leaves_the_pipelines_model_as_it_was(model, straight):
    """The diffusers classes keep nothing on disk (not resumable); a KeyboardInterrupt mid-cascade
    leaves the model unpatched, so the next call makes what a fresh one makes."""
    settings = Settings().replace({**TINY, **SAMPLERS["ddim-eta1"]})

    def interrupt_in_the_cascade(i, t, x):
        if x.shape[-1] == 16:  # the x2 stage's latent width
            raise KeyboardInterrupt
        return x
    with pytest.raises(KeyboardInterrupt):
        generate_latents(model, settings, generator=torch.Generator().manual_seed(settings.sampling.seed),
                         after_step=interrupt_in_the_cascade)
    latents = generate_latents(model, settings, generator=torch.Generator().manual_seed(settings.sampling.seed))
    assert torch.equal(latents, straight("ddim-eta1")[0])


def run_generate(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidscale", "generate", TINY["sampling.prompt"], *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_file(pattern: str, folder: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not list(folder.glob(pattern)):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"no {pattern} within {seconds} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_ctrl_c_in_a_cascade_stage_exits_130_and_the_same_command_finishes_the_job(tmp_path):
    preset = write_preset(tmp_path / "tiny.toml", {**TINY, "sampling.steps": 8,  # the x2 stage: 6 steps
                                                   "jobs.checkpoint_seconds": 0.0})
    output = tmp_path / "kite.mp4"
    args = ["-o", str(output), "--preset", str(preset), "-q"]
    process = run_generate(*args)
    wait_for_file(".vidscale-jobs/*/chunk-0001-step-*.safetensors", tmp_path, process)  # the x2 stage runs
    process.send_signal(signal.SIGINT)
    text = process.communicate(timeout=120)[0]
    assert process.returncode == 130, text
    assert FIRST in text and "Aborted" not in text and "Error" not in text
    assert "in stage 2 of 2; kept in" in text and "1 finished stage(s)" in text
    command = f"python -m vidscale generate '{TINY['sampling.prompt']}' {' '.join(args)}"
    assert text.rstrip().endswith(f"run the same command again to resume: {command}"), text
    manifest = json.loads(next(tmp_path.glob(".vidscale-jobs/*/manifest.json")).read_text())
    assert manifest["running"]["chunk"] == 1 and 2 <= manifest["running"]["step"] < 6
    assert not output.exists()
    rerun = run_generate(*args)
    assert rerun.wait(300) == 0, rerun.stdout.read()
    assert len(decoded(output)) == 2
    assert json.loads(next(tmp_path.glob(".vidscale-jobs/*/manifest.json")).read_text())["complete"] is True


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_rerun_gives_the_uninterrupted_clip(tmp_path):
    steps = 6  # base 6 steps, x2 stage 5
    preset = write_preset(tmp_path / "tiny.toml", {**TINY, **SAMPLERS["ddim-eta1"], "sampling.steps": steps,
                                                   "jobs.checkpoint_seconds": 0.0})
    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = run_generate("-o", str(tmp_path / "straight" / "kite.mp4"), "--preset", str(preset), "-q")
    assert straight.wait(300) == 0, straight.stdout.read()
    stage, step = random.choice([(0, k) for k in range(1, steps)] + [(1, k) for k in range(1, steps - 1)])
    target = tmp_path / "killed" / "kite.mp4"
    killed = run_generate("-o", str(target), "--preset", str(preset), "-q")
    jobs = tmp_path / "killed" / ".vidscale-jobs"
    deadline = time.monotonic() + 120

    def reached() -> bool:  # the running checkpoint is at or past the target (or its stage is saved)
        manifest = next(jobs.glob("*/manifest.json"), None)
        if manifest is None:
            return False
        saved = json.loads(manifest.read_text())
        running = saved.get("running") or {"chunk": -1, "step": 0}
        return max((running["chunk"], running["step"]), (len(saved["chunks"]), 0)) >= (stage, step)
    while not reached():
        assert killed.poll() is None, f"finished before step {step} of stage {stage}: {killed.stdout.read()}"
        assert time.monotonic() < deadline, f"no step {step} of stage {stage} within 120 s"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert not target.exists(), "a partial output appeared under the final name"
    rerun = run_generate("-o", str(target), "--preset", str(preset), "-q")
    assert rerun.wait(300) == 0, rerun.stdout.read()
    a, b = decoded(tmp_path / "straight" / "kite.mp4"), decoded(target)
    assert len(a) == len(b) == 2
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert np.array_equal(x, y), f"frame {i} differs after a SIGKILL at step {step} of stage {stage}"
    assert [p.name for p in (tmp_path / "killed").iterdir() if p.name != ".vidscale-jobs"] == ["kite.mp4"]
