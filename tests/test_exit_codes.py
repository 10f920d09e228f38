"""Every row of the README's exit-status table, run for real: the documented code is the code.

Each case below is keyed by its row's text, so a row without a check, or a check without a row,
fails ``test_every_row_has_a_check``. Cases run the real CLI (click's CliRunner, in-process) on
tiny clips with the lanczos engine; two need a separate process (a signal, a full disk).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner
from timeline_helpers import stand_in
from watch_helpers import LANCZOS, full_disk_after, start_watch, status, wait_for

from vidscale.cli import main
from vidscale.jobs.interrupts import FIRST

README = Path(__file__).resolve().parents[1] / "README.md"
EDITS = Path(__file__).resolve().parent / "timeline_samples"
ONCE = ["--once", "--settle", "0", "-q"]


def exit_table() -> dict[str, int]:
    """``{case: code}`` from the table under the README's "### Exit status" heading."""
    section = README.read_text(encoding="utf-8").split("### Exit status", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| ([0-9]+) \|$", section, flags=re.MULTILINE)
    return {case: int(code) for case, code in rows}


def vidscale(*args: object, expect: str = "") -> int:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert expect in result.output, result.output
    return result.exit_code


def unwritable(tmp_path: Path) -> Path:
    """A folder nobody may write in: chmod 555, or /proc where root ignores modes."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        return Path("/proc")
    return folder


def small_clip(tmp_path: Path, make_clip) -> Path:
    """A 4-frame clip of its own, ``a.mp4`` in the test's folder."""
    path = tmp_path / "a.mp4"
    shutil.copyfile(make_clip(frames=4), path)
    return path


def every_output_made(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--out-dir", tmp_path / "out", *LANCZOS, expect="done")


def output_exists(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    (tmp_path / "a_2x.mov").write_bytes(b"an earlier result")
    return vidscale("upscale", clip, *LANCZOS, expect="(--overwrite replaces it)")


def input_is_an_earlier_output(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    shutil.copyfile(clip, tmp_path / "a_2x.mov")
    return vidscale("upscale", tmp_path, *LANCZOS, expect=f"it is the output of {clip}")


def upscale_dry_run(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--dry-run", "--model", "tiny", expect="estimate")


def generate_output_exists(tmp_path, make_clip):
    (tmp_path / "fox.mp4").write_bytes(b"an earlier result")
    return vidscale("generate", "a fox", "-o", tmp_path / "fox.mp4", expect="--overwrite")


def generate_dry_run(tmp_path, make_clip):
    return vidscale("generate", "a fox", "-o", tmp_path / "fox.mp4", "--dry-run", "--model", "tiny",
                    expect="estimate")


def watch_once_all_done(tmp_path, make_clip):
    return vidscale("watch", tmp_path / "inbox", "--create", *ONCE, *LANCZOS)


def watch_stopped_by_a_signal(tmp_path, make_clip):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = start_watch(inbox, "--poll", *LANCZOS, log=tmp_path / "watch.log")
    try:
        wait_for(lambda: status(inbox).get("state") == "watching", 30, watch, "a watching status")
        code = watch.stop(signal.SIGINT)
    finally:
        if watch.alive():
            watch.process.kill()
    assert "stopping after the current step (it is saved); Ctrl-C again to stop now" in watch.output()
    return code


def job_failed(tmp_path, make_clip):
    big = make_clip(width=320, height=240, frames=4)  # its 640x480 ProRes output passes 64 KB
    done = subprocess.run([sys.executable, "-m", "vidscale", "upscale", str(big), "--out-dir",
                           str(tmp_path / "out"), "-q", *LANCZOS], capture_output=True, text=True,
                          timeout=120, preexec_fn=full_disk_after(64_000))
    assert "cannot write" in done.stderr, done.stderr
    return done.returncode


def watch_job_failed(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    (inbox / "sub").mkdir(parents=True)
    shutil.copyfile(clip, inbox / "sub" / "a.mp4")
    out.mkdir()
    (out / "sub").write_text("a file where the output folder out/sub must go")
    return vidscale("watch", inbox, "--out-dir", out, *ONCE, *LANCZOS)


def usage_error(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--scale", "3")


def missing_input(tmp_path, make_clip):
    return vidscale("upscale", tmp_path / "nope.mp4", *LANCZOS, expect="no such file; check the path")


def not_a_video(tmp_path, make_clip):
    (tmp_path / "notes.mp4").write_text("not a clip")
    return vidscale("upscale", tmp_path / "notes.mp4", *LANCZOS, expect="check that the file plays")


def folder_without_video(tmp_path, make_clip):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("not a clip")
    return vidscale("upscale", tmp_path / "docs", *LANCZOS, expect="none is a video: notes.txt")


def damaged_clip_in_a_folder(tmp_path, make_clip):
    small_clip(tmp_path, make_clip)
    (tmp_path / "cut.mov").write_bytes(os.urandom(3000))
    code = vidscale("upscale", tmp_path, "--out-dir", tmp_path / "out", *LANCZOS, expect="1 done")
    assert (tmp_path / "out" / "a_2x.mov").exists()
    return code


def two_inputs_one_output(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    (tmp_path / "b").mkdir()
    shutil.copyfile(clip, tmp_path / "b" / "a.mov")
    return vidscale("upscale", clip, tmp_path / "b" / "a.mov", "--out-dir", tmp_path / "out", *LANCZOS,
                    expect="is also the output of")


def suffix_does_not_suit_the_codec(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "-o", tmp_path / "x.mp4", *LANCZOS, expect="rename the output")


def output_folder_unwritable(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--out-dir", unwritable(tmp_path) / "out", *LANCZOS,
                    expect="output folder")


def bad_preset(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--preset", "nope", expect="unknown preset")


def weights_not_found(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--model", tmp_path / "nowhere", expect="huggingface.co")


def frames_select_nothing(tmp_path, make_clip):
    clip = small_clip(tmp_path, make_clip)
    return vidscale("upscale", clip, "--frames", "100:200", *LANCZOS, expect="select nothing")


def watch_inbox_missing(tmp_path, make_clip):
    return vidscale("watch", tmp_path / "inbx", *ONCE, expect="--create")


def watch_out_dir_unwritable(tmp_path, make_clip):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    return vidscale("watch", inbox, "--out-dir", unwritable(tmp_path) / "out", *ONCE, *LANCZOS,
                    expect="cannot write")


def watch_weights_not_found(tmp_path, make_clip):
    """Found at the start (one line, the fix for watch too), not clip by clip: the clip stays."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    clip = small_clip(inbox, make_clip)
    code = vidscale("watch", inbox, *ONCE, "--model", tmp_path / "nowhere", expect="Or pass --model")
    assert clip.exists() and not (inbox / "failed").exists()
    return code


def watch_folder_is_a_symlink(tmp_path, make_clip):
    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "out").symlink_to(elsewhere)
    code = vidscale("watch", inbox, *ONCE, *LANCZOS, expect=f"{inbox / 'out'}: is a symbolic link")
    assert list(elsewhere.iterdir()) == []
    return code


def watch_not_a_video(tmp_path, make_clip):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "junk.mp4").write_bytes(os.urandom(3000))
    return vidscale("watch", tmp_path / "inbox", *ONCE, *LANCZOS)


def ctrl_c_once_the_job_opens(folder: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """Run ``python -m vidscale ARGS -q``, send one SIGINT once its job store under ``folder`` is
    open (denoising is next), and return the process (ended) and everything it printed."""
    command = [sys.executable, "-m", "vidscale", *args, "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(folder.glob(".vidscale-jobs/*/manifest.json")):
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "the job did not start within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    return process, process.communicate(timeout=120)[0]


def upscale_interrupted(tmp_path, make_clip):
    """A real Ctrl-C (SIGINT) to a FreeScale upscale: the step is saved, the resume command named."""
    clip = make_clip(width=64, height=48, frames=3)
    preset = tmp_path / "tiny.toml"
    preset.write_text('[model]\npath = "tiny"\ndevice = "cpu"\ndtype = "fp32"\n[sampling]\nsteps = 40\n'
                      '[output]\ncodec = "h264"\n')
    out = tmp_path / "out.mp4"
    process, text = ctrl_c_once_the_job_opens(tmp_path, "upscale", str(clip), "-o", str(out), "--preset", str(preset))
    assert FIRST in text and "Aborted" not in text
    assert f"run the same command again to resume: python -m vidscale upscale {clip}" in text
    assert "stopped at step" in text
    manifest = json.loads(next(tmp_path.glob(".vidscale-jobs/*/manifest.json")).read_text())
    assert manifest["running"]["chunk"] == 0 and manifest["running"]["step"] >= 1
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    return process.returncode


def fcp_media(tmp_path, make_clip) -> Path:
    """Stand-ins for ``premiere_windows.xml``'s two video files, in a --media folder."""
    media = tmp_path / "media"
    stand_in(make_clip, media, "sc01_sh010_anim.mov", rate=Fraction(30), timecode="00:00:00:00", frames=30)
    stand_in(make_clip, media, "sc01_master_layerA_sh030_temp.mov", rate=Fraction(30), timecode="00:00:03:09",
             frames=30)
    return media


def timeline_made(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.xml", "--media",
                    fcp_media(tmp_path, make_clip), *LANCZOS, expect="untouched 2 audio clips")


def timeline_dry_run(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.xml", "--media",
                    fcp_media(tmp_path, make_clip), "--dry-run", *LANCZOS, expect="nothing written")


def timeline_offline(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.xml", *LANCZOS,
                    expect="pass --media DIR")


def timeline_two_matches(tmp_path, make_clip):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ZZ100_501.take_1.0001.exr").write_bytes(b"")
    return vidscale("timeline", EDITS / "premiere_example.edl", "-o", tmp_path / "new.edl", "--media",
                    tmp_path / "a", "--media", tmp_path / "b", *LANCZOS, expect="2 files under --media match")


def timeline_edl_needs_rate(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "25fps.edl", "-o", tmp_path / "new.edl", *LANCZOS, expect="--rate")


def timeline_format_cannot_hold(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.edl", "--media",
                    fcp_media(tmp_path, make_clip), *LANCZOS, expect="write -o NAME.xml")


def timeline_several_timelines(tmp_path, make_clip):
    import opentimelineio as otio

    library = tmp_path / "library.fcpxml"
    otio.adapters.write_to_file(otio.schema.SerializableCollection(children=[
        otio.schema.Timeline(name="cut A"), otio.schema.Timeline(name="cut B")]), str(library))
    return vidscale("timeline", library, "-o", tmp_path / "new.fcpxml", expect="--timeline NAME")


def timeline_no_adapter(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.aaf",
                    expect="pip install otio-aaf-adapter")


def timeline_cluster(tmp_path, make_clip):
    return vidscale("timeline", EDITS / "premiere_windows.xml", "-o", tmp_path / "new.xml", "--cluster",
                    "local", *LANCZOS, expect="--cluster")


def generate_interrupted(tmp_path, make_clip):
    """A real Ctrl-C (SIGINT) to a tiny generation in its base stage: the step is saved, the resume
    command named. (A Ctrl-C in a cascade stage: ``tests/test_generate_resume.py``.)"""
    preset = tmp_path / "tiny.toml"
    preset.write_text('[model]\npath = "tiny"\ndevice = "cpu"\ndtype = "fp32"\n[sampling]\nsteps = 40\n'
                      '[generate]\nframes = 2\nbase_width = 64\nbase_height = 64\nwidth = 128\nheight = 128\n'
                      '[output]\ncodec = "h264"\n')
    out = tmp_path / "fox.mp4"
    process, text = ctrl_c_once_the_job_opens(tmp_path, "generate", "a fox", "-o", str(out), "--preset", str(preset))
    assert FIRST in text and "Aborted" not in text
    assert f"run the same command again to resume: python -m vidscale generate 'a fox' -o {out}" in text
    assert "in stage 1 of 2; kept in" in text
    manifest = json.loads(next(tmp_path.glob(".vidscale-jobs/*/manifest.json")).read_text())
    assert manifest["running"]["chunk"] == 0 and manifest["running"]["step"] >= 1
    assert not out.exists() and not list(tmp_path.glob(".fox.*"))
    return process.returncode


CASES: dict[str, Callable[..., int]] = {
    "`upscale`: every output made": every_output_made,
    "`upscale`: the output exists, no `--overwrite` (skipped, the line names `--overwrite`)": output_exists,
    "`upscale`: an input is an earlier run's output (skipped)": input_is_an_earlier_output,
    "`upscale --dry-run`: every check passes": upscale_dry_run,
    "`generate`: the output exists, no `--overwrite` (skipped)": generate_output_exists,
    "`generate --dry-run`: every check passes": generate_dry_run,
    "`watch --once`: every clip done, or nothing there": watch_once_all_done,
    "`watch` stopped by Ctrl-C or SIGTERM (failed clips are in `failed/`)": watch_stopped_by_a_signal,
    "`upscale`: a job failed while running (full disk, ...)": job_failed,
    "`watch --once`: a clip's job failed (unwritable output subfolder, ...)": watch_job_failed,
    "a usage error: unknown option or bad option value": usage_error,
    "an input file does not exist": missing_input,
    "an input file is not a readable video": not_a_video,
    "a folder without any video (the message names what it found)": folder_without_video,
    "a damaged clip found in a folder (the other clips still run)": damaged_clip_in_a_folder,
    "two inputs would write the same output": two_inputs_one_output,
    "the output's suffix does not suit the codec (`-o x.mp4` with ProRes)": suffix_does_not_suit_the_codec,
    "the output folder cannot be written": output_folder_unwritable,
    "an unknown preset, or a bad key or value in one": bad_preset,
    "VideoCrafter2 weights not found (freescale, generate)": weights_not_found,
    "`--frames` selects nothing": frames_select_nothing,
    "`watch`: INBOX does not exist (without `--create`)": watch_inbox_missing,
    "`watch`: the `--out-dir` cannot be written": watch_out_dir_unwritable,
    "`watch --once`: a dropped file is not a video": watch_not_a_video,
    "`timeline`: every video range made (audio, generators and images pass through untouched)": timeline_made,
    "`timeline --dry-run`: every check passes": timeline_dry_run,
    "`timeline`: a video clip's media is offline (not at its path, not under `--media`)": timeline_offline,
    "`timeline`: two files under `--media` match a clip's media": timeline_two_matches,
    "`timeline`: an EDL whose timecodes do not fit 24 fps, without `--rate`": timeline_edl_needs_rate,
    "`timeline`: the output's format cannot hold the edit (`-o x.edl` of several video tracks)":
        timeline_format_cannot_hold,
    "`timeline`: the file holds several timelines, and no `--timeline` picks one": timeline_several_timelines,
    "`timeline`: no OTIO adapter for the edit's or the new edit's format (the line names the package)":
        timeline_no_adapter,
    "`timeline --cluster` (ranges run in this process)": timeline_cluster,
    "`watch`: VideoCrafter2 weights not found for a freescale preset (at the start, before any clip)":
        watch_weights_not_found,
    "`watch`: `out/`, `done/`, `failed/` or `.vidscale/` is a symlink (or a file)": watch_folder_is_a_symlink,
    "`upscale` interrupted by Ctrl-C (the step is saved; the message names the resume command)": upscale_interrupted,
    "`generate` interrupted by Ctrl-C (the step is saved; the message names the resume command)": generate_interrupted,
}


def test_every_row_has_a_check():
    table = exit_table()
    assert len(table) >= 20, "README.md's exit-status table is missing or was cut short"
    assert set(table) == set(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=lambda case: re.sub(r"\W+", "-", case).strip("-")[:50])
def test_the_documented_exit_code(case, tmp_path, make_clip):
    expected = exit_table().get(case)
    assert expected is not None, f"no README row for {case!r}"
    assert CASES[case](tmp_path, make_clip) == expected
