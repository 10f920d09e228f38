"""``vidscale upscale`` with many inputs: one job each, by content not extension, never stopping
early, an honest summary, and no work redone (or overwritten) on a second run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import frame_index

from vidscale.jobs.batch import upscale_one
from vidscale.settings import load_settings
from watch_helpers import FREESCALE_TINY, LANCZOS, decoded, files, job_progress, run_vidscale


def frame_numbers(path):
    return [frame_index(frame) for frame in decoded(path)]


@pytest.fixture
def inputs(tmp_path, make_clip):
    """a.mp4 (12 frames), b.mov (8), and some/dir with c.mkv (6), a video named clip.dat, a text
    file and a non-video named fake.mp4."""
    shutil.copyfile(make_clip(frames=12), tmp_path / "a.mp4")
    shutil.copyfile(make_clip(frames=8, container="mov"), tmp_path / "b.mov")
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    shutil.copyfile(make_clip(frames=6, container="mkv"), folder / "c.mkv")
    shutil.copyfile(make_clip(frames=5), folder / "clip.dat")
    (folder / "notes.txt").write_text("not a clip")
    (folder / "fake.mp4").write_bytes(os.urandom(5000))
    return tmp_path


def test_one_job_per_video_a_failure_does_not_stop_the_rest(inputs):
    out = inputs / "OUT"
    (inputs / "bad.mov").write_bytes(os.urandom(5000))
    args = [str(inputs / n) for n in ("a.mp4", "b.mov", "bad.mov", "some/dir", "a.mp4")]
    result = run_vidscale("upscale", *args, "--out-dir", str(out), *LANCZOS)
    assert result.returncode == 1, result.stderr
    assert f"failed  {inputs / 'bad.mov'}" in result.stderr
    assert "4 done, 0 skipped, 1 failed" in result.stderr
    assert files(out) == ["a_2x.mov", "b_2x.mov", "c_2x.mov", "clip_2x.mov"]
    assert frame_numbers(out / "a_2x.mov") == list(range(12))
    assert frame_numbers(out / "c_2x.mov") == list(range(6))
    assert len(decoded(out / "clip_2x.mov")) == 5


def test_a_second_run_skips_finished_outputs_unless_overwrite(inputs):
    out = inputs / "OUT"
    args = [str(inputs / "a.mp4"), str(inputs / "some" / "dir"), "--out-dir", str(out), *LANCZOS]
    assert run_vidscale("upscale", *args, "-q").returncode == 0
    before = {name: (out / name).stat().st_mtime_ns for name in files(out)}
    again = run_vidscale("upscale", *args, "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 3, 0)
    assert {name: (out / name).stat().st_mtime_ns for name in files(out)} == before
    forced = run_vidscale("upscale", *args, "--overwrite", "--json")
    assert json.loads(forced.stdout)["done"] == 3
    assert (out / "a_2x.mov").stat().st_mtime_ns != before["a_2x.mov"]


def test_earlier_outputs_in_the_folder_are_not_upscaled_again(inputs):
    folder = inputs / "some" / "dir"
    first = run_vidscale("upscale", str(folder), *LANCZOS, "-q")
    assert first.returncode == 0, first.stderr
    second = run_vidscale("upscale", str(folder), *LANCZOS)
    assert second.returncode == 0, second.stderr
    assert f"skipped {folder / 'c_2x.mov'}: it is the output of {folder / 'c.mkv'}" in second.stderr
    assert not list(folder.glob("*_2x_2x*"))


def test_two_inputs_that_would_write_one_output_name(inputs):
    out = inputs / "OUT"
    shutil.copyfile(inputs / "b.mov", inputs / "some" / "a.mov")
    result = run_vidscale("upscale", str(inputs / "a.mp4"), str(inputs / "some" / "a.mov"),
                          "--out-dir", str(out), *LANCZOS)
    assert result.returncode == 1
    assert "is also the output of" in result.stderr
    assert frame_numbers(out / "a_2x.mov") == list(range(12))  # the first one's, not replaced


def test_upscale_one_passes_should_stop_to_the_freescale_job(tmp_path, make_clip):
    """Stopped after the first step (Interrupted, its checkpoint saved, no output), then the same call resumes."""
    from vidscale.pipeline.chunks import Interrupted

    preset = tmp_path / "tiny.toml"
    preset.write_text(FREESCALE_TINY)
    settings = load_settings(preset)
    source, output = make_clip(frames=12), tmp_path / "out" / "a_2x.mov"
    output.parent.mkdir()
    with pytest.raises(Interrupted):
        upscale_one(source, output, settings, should_stop=lambda: True)
    assert job_progress(output.parent) == (0, False) and not output.exists()
    assert len(list(output.parent.glob(".vidscale-jobs/*/chunk-0000-step-0001.safetensors"))) == 1
    result = upscale_one(source, output, settings, should_stop=lambda: False)
    assert result["frames"] == 12 and len(decoded(output)) == 12
    assert job_progress(output.parent) == (0, True)


@pytest.mark.parametrize("engine", ["lanczos", "freescale"])
def test_a_full_disk_fails_the_job_and_leaves_no_partial_output(tmp_path, make_clip, engine):
    """The lanczos job fails writing the output; the FreeScale job fails saving a chunk."""
    import subprocess
    import sys

    from watch_helpers import full_disk_after
    preset = tmp_path / "tiny.toml"
    preset.write_text(FREESCALE_TINY)
    args = LANCZOS if engine == "lanczos" else ["--preset", str(preset)]
    clip = make_clip(width=320, height=240, frames=4) if engine == "lanczos" else make_clip(frames=6)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "vidscale", "upscale", str(clip), "--out-dir", str(out), "-q",
                           *args], capture_output=True, text=True, timeout=300,
                          preexec_fn=full_disk_after(16_000 if engine == "freescale" else 64_000))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot write" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert [p.name for p in out.iterdir() if p.name != ".vidscale-jobs"] == []
