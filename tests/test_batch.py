"""``vidscale upscale`` with many inputs: one job each, by content not extension, never stopping
early, an honest summary, and no work redone (or overwritten) on a second run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import frame_index
from watch_helpers import FREESCALE_TINY, LANCZOS, decoded, files, job_progress, run_vidscale

from vidscale.jobs.engines import upscale_one
from vidscale.settings import load_settings


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


@pytest.mark.slow
def test_one_job_per_video_a_failure_does_not_stop_the_rest(inputs):
    out = inputs / "OUT"
    (inputs / "bad.mov").write_bytes(os.urandom(5000))
    args = [str(inputs / n) for n in ("a.mp4", "b.mov", "bad.mov", "some/dir", "a.mp4")]
    result = run_vidscale("upscale", *args, "--out-dir", str(out), *LANCZOS)
    assert result.returncode == 2, result.stderr  # bad input: the worst item decides
    assert f"failed  {inputs / 'bad.mov'}: not a readable video" in result.stderr
    assert f"failed  {inputs / 'some/dir/fake.mp4'}: not a readable video" in result.stderr
    assert f"passed over 1 file(s) that are not video: {inputs / 'some/dir/notes.txt'}" in result.stderr
    assert f"note    {inputs / 'a.mp4'} is named more than once" in result.stderr
    assert "4 done, 0 skipped, 2 failed" in result.stderr
    assert files(out) == ["a_2x.mov", "b_2x.mov", "c_2x.mov", "clip_2x.mov"]
    assert frame_numbers(out / "a_2x.mov") == list(range(12))
    assert frame_numbers(out / "c_2x.mov") == list(range(6))
    assert len(decoded(out / "clip_2x.mov")) == 5


@pytest.mark.slow
def test_a_second_run_skips_finished_outputs_unless_overwrite(inputs):
    (inputs / "some" / "dir" / "fake.mp4").unlink()  # a damaged clip fails every run (exit 2)
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


@pytest.mark.slow
def test_earlier_outputs_in_the_folder_are_not_upscaled_again(inputs):
    folder = inputs / "some" / "dir"
    (folder / "fake.mp4").unlink()  # a damaged clip fails every run (exit 2)
    first = run_vidscale("upscale", str(folder), *LANCZOS, "-q")
    assert first.returncode == 0, first.stderr
    second = run_vidscale("upscale", str(folder), *LANCZOS)
    assert second.returncode == 0, second.stderr
    assert f"skipped {folder / 'c_2x.mov'}: it is the output of {folder / 'c.mkv'}" in second.stderr
    assert not list(folder.glob("*_2x_2x*"))


@pytest.mark.slow
def test_two_inputs_that_would_write_one_output_name(inputs):
    out = inputs / "OUT"
    shutil.copyfile(inputs / "b.mov", inputs / "some" / "a.mov")
    result = run_vidscale("upscale", str(inputs / "a.mp4"), str(inputs / "some" / "a.mov"),
                          "--out-dir", str(out), *LANCZOS)
    assert result.returncode == 2  # found before that job ran: bad input
    assert "is also the output of" in result.stderr
    assert frame_numbers(out / "a_2x.mov") == list(range(12))  # the first one's, not replaced


@pytest.mark.slow
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
    assert result.frames == 12 and len(decoded(output)) == 12
    assert job_progress(output.parent) == (0, True)


@pytest.mark.slow
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


def test_a_camera_card_is_searched_recursively_and_outputs_mirror_its_folders(tmp_path, make_clip):
    """Two C0001.mp4 in A001/ and A002/ of a folder named like a clip: both run, into mirrored
    folders; a sidecar is named as passed over; hidden folders and the --out-dir are not entered."""
    from click.testing import CliRunner

    from vidscale.cli import main

    card = tmp_path / "CARD.mp4"
    for roll, frames in (("A001", 4), ("A002", 6)):
        (card / roll).mkdir(parents=True)
        shutil.copyfile(make_clip(frames=frames), card / roll / "C0001.mp4")
    (card / "A001" / "C0001.XML").write_text("<sidecar/>")
    (card / ".Trashes").mkdir()
    shutil.copyfile(make_clip(frames=4), card / ".Trashes" / "old.mp4")
    out = card / "OUT"
    args = ["upscale", str(card), "--out-dir", str(out), *LANCZOS, "--json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert files(out) == ["A001/C0001_2x.mov", "A002/C0001_2x.mov"]
    assert len(decoded(out / "A002" / "C0001_2x.mov")) == 6
    summary = json.loads(first.stdout)
    assert summary["passed_over"] == [str(card / "A001" / "C0001.XML")] and summary["done"] == 2
    again = json.loads(CliRunner().invoke(main, args).stdout)  # OUT/ is not searched for inputs
    assert (again["done"], again["skipped"], again["failed"]) == (0, 2, 0)


@pytest.mark.slow
def test_without_out_dir_each_output_lies_beside_its_clip(tmp_path, make_clip):
    for roll in ("A001", "A002"):
        (tmp_path / "card" / roll).mkdir(parents=True)
        shutil.copyfile(make_clip(frames=4), tmp_path / "card" / roll / "C0001.mp4")
    done = run_vidscale("upscale", str(tmp_path / "card"), *LANCZOS, "-q")
    assert done.returncode == 0, done.stderr
    assert files(tmp_path / "card") == ["A001/C0001.mp4", "A001/C0001_2x.mov",
                                        "A002/C0001.mp4", "A002/C0001_2x.mov"]


def test_a_folder_without_video_is_an_error_naming_what_it_found(tmp_path):
    from click.testing import CliRunner

    from vidscale.cli import main

    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("notes")
    (tmp_path / "docs" / "sub" / "b.mp4").write_bytes(os.urandom(3000))
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["upscale", str(tmp_path / "docs"), str(tmp_path / "empty"), *LANCZOS])
    assert result.exit_code == 2, result.output
    assert (f"failed  {tmp_path / 'docs'}: found 2 files in {tmp_path / 'docs'}, none is a video: "
            "sub/b.mp4 (damaged: not a readable video") in result.output
    assert ", a.txt; give a folder that holds clips" in result.output
    assert f"failed  {tmp_path / 'empty'}: no files in {tmp_path / 'empty'} or its subfolders" in result.output
    assert "0 done, 0 skipped, 2 failed" in result.output


@pytest.mark.slow
def test_a_failure_line_names_the_file_once_with_the_problem_and_the_fix(tmp_path):
    bad = tmp_path / "notvideo.mp4"
    bad.write_text("not a clip")
    result = run_vidscale("upscale", str(bad), *LANCZOS)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if line.startswith("failed")]
    assert line.count(str(bad)) == 1 and line.count("notvideo.mp4") == 1
    assert "not a readable video" in line and line.endswith("check that the file plays, or remove it from the inputs")


@pytest.mark.slow
def test_o_into_a_missing_folder_creates_it_and_frames_past_the_end_are_clamped_and_said(tmp_path, make_clip):
    target = tmp_path / "new" / "deeper" / "x.mov"
    result = run_vidscale("upscale", str(make_clip(frames=5)), "-o", str(target), "--frames", "2:999", *LANCZOS)
    assert result.returncode == 0, result.stderr
    assert len(decoded(target)) == 3
    assert "--frames 2:999 clamped to 2:5 (the clip has 5 frames)" in result.stderr


def test_results_of_the_test_model_say_so_on_the_status_line(tmp_path):
    from vidscale.jobs.batch import ItemResult, describe_item
    from vidscale.pipeline.result import TEST_MODEL_NOTE, UpscaleResult

    result = UpscaleResult(input=tmp_path / "a.mp4", output=tmp_path / "a_2x.mov", engine="freescale",
                           width=128, height=96, frames=4, frame_rate=30, codec="prores-hq",
                           elapsed_seconds=1.0, test_model=True)
    line = describe_item(ItemResult(tmp_path / "a.mp4", "done", tmp_path / "a_2x.mov", result=result.to_dict()))
    assert line.startswith("done") and TEST_MODEL_NOTE in line
