"""``vidscale upscale --model wan-tiny``: FreeScale upscaling with Wan end to end, on its 1 + 4k grid.

The guarantees VideoCrafter2's upscales keep, kept by Wan's: every input frame comes back at
twice the size; reading and writing beside the denoising change no frame (Wan's VAE keeps its
causal caches on the module, so a chunk's encode must never run inside another's decode); a job
killed with SIGKILL and run again gives the uninterrupted output; chunk seams are no rougher than
the inside of a chunk; the watch folder and a two-worker cluster give the same frames as a plain
run. The model is random: these check the machinery, not the pictures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from job_files import stored_chunks, write_preset
from watch_helpers import decoded

from vidscale.cli import main
from vidscale.media import probe

# chunks of 9 frames (1 + 2 x 4) sharing 5 (1 + 4): 13 frames are [0, 9) and [4, 13)
WAN_TINY = {"model.path": "wan-tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
            "sampling.steps": 4, "sampling.guidance_scale": 1.0, "output.codec": "h264", "output.crf": 0,
            "output.x264_preset": "ultrafast", "jobs.chunk_frames": 9, "jobs.overlap_frames": 5}


def same_frames(a, b) -> bool:
    x, y = decoded(a), decoded(b)
    return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))


def upscale(clip, out, preset, *extra: str):
    return CliRunner().invoke(main, ["upscale", str(clip), "-o", str(out), "--preset", str(preset), "-q", *extra])


@pytest.mark.slow
def test_every_frame_at_twice_the_size_and_overlap_changes_none(make_clip, tmp_path):
    clip = make_clip(width=48, height=32, frames=13)
    preset = write_preset(tmp_path / "on.toml", WAN_TINY)
    result = upscale(clip, tmp_path / "on.mp4", preset, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["items"][0]
    assert report["result"]["test_model"] is True
    info = probe(tmp_path / "on.mp4")
    assert (info.width, info.height, info.frame_count) == (96, 64, 13)
    serial = write_preset(tmp_path / "off.toml", {**WAN_TINY, "jobs.overlap_io": False})
    assert upscale(clip, tmp_path / "off.mp4", serial).exit_code == 0
    assert same_frames(tmp_path / "on.mp4", tmp_path / "off.mp4")


def test_seams_at_chunk_boundaries_are_no_rougher_than_inside_chunks(make_clip, tmp_path):
    """The metric of VideoCrafter2's seam test: the mean absolute change between consecutive
    output frames across a chunk boundary is at most 10 % above the largest inside a chunk."""
    clip = make_clip(width=48, height=32, frames=17)
    preset = write_preset(tmp_path / "p.toml", WAN_TINY)
    assert upscale(clip, tmp_path / "out.mp4", preset).exit_code == 0
    frames = [f.astype(np.float64) for f in decoded(tmp_path / "out.mp4")]
    change = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    report = next((tmp_path / ".vidscale-jobs").glob("*/report.json"))
    chunks = json.loads(report.read_text())["plan"]["chunks"]
    starts = [c["start"] + c["anchored"] for c in chunks[1:]]
    seams = [change[s - 1] for s in starts]
    inside = [c for i, c in enumerate(change) if i + 1 not in starts]
    assert seams and inside
    assert max(seams) <= 1.1 * max(inside), (seams, inside)


def test_watch_folder_gives_the_plain_runs_frames(make_clip, tmp_path):
    clip = make_clip(width=48, height=32, frames=9)
    preset = write_preset(tmp_path / "p.toml", WAN_TINY)
    assert upscale(clip, tmp_path / "plain.mp4", preset).exit_code == 0
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(clip, inbox / "clip.mp4")
    watched = CliRunner().invoke(main, ["watch", str(inbox), "--once", "--settle", "0", "-q", "--preset",
                                        str(preset), "--out-dir", str(tmp_path / "out")])
    assert watched.exit_code == 0, watched.output
    outputs = list((tmp_path / "out").rglob("clip_2x.mp4"))
    assert len(outputs) == 1 and same_frames(outputs[0], tmp_path / "plain.mp4")


@pytest.mark.slow
def test_sigkill_in_a_middle_chunk_then_rerun_gives_the_uninterrupted_output(make_clip, tmp_path):
    clip = make_clip(width=48, height=32, frames=25)  # chunks start at frames 0, 4, 8, 12, 16
    preset = write_preset(tmp_path / "p.toml", {**WAN_TINY, "sampling.steps": 30})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(out):
        return subprocess.Popen([sys.executable, "-m", "vidscale", "upscale", str(clip), "-o", str(out),
                                 "--preset", str(preset), "-q"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env)

    (tmp_path / "straight").mkdir()
    (tmp_path / "killed").mkdir()
    straight = run(tmp_path / "straight" / "out.mp4")
    assert straight.wait(600) == 0, straight.stdout.read().decode()
    target = tmp_path / "killed" / "out.mp4"
    killed = run(target)
    jobs = tmp_path / "killed" / ".vidscale-jobs"
    deadline = time.monotonic() + 300
    while stored_chunks(jobs) < 2:  # chunks 0 and 1 stored, 2 running
        assert killed.poll() is None, killed.stdout.read().decode()
        assert time.monotonic() < deadline, "no second chunk within 300 s"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert not target.exists(), "a partial output appeared under the final name"
    manifest = json.loads(next(jobs.glob("*/manifest.json")).read_text())
    assert 2 <= len(manifest["chunks"]) < 5
    rerun = run(target)
    assert rerun.wait(600) == 0, rerun.stdout.read().decode()
    assert same_frames(tmp_path / "straight" / "out.mp4", target)


@pytest.mark.slow
def test_a_two_worker_cluster_gives_the_plain_runs_frames(make_clip, tmp_path):
    """Two segments of a 21-frame clip on ``--cluster local:2`` against the same segments in one
    process (both with one torch thread per process, as Ray gives its workers)."""
    pytest.importorskip("ray")
    clip = make_clip(width=48, height=32, frames=21)
    segmented = {**WAN_TINY, "jobs.segment_frames": 13}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    results = {}
    for name, extra in (("plain", []), ("cluster", ["--cluster", "local:2"])):
        preset = write_preset(tmp_path / f"{name}.toml", segmented)
        done = subprocess.run([sys.executable, "-m", "vidscale", "upscale", str(clip), "-o",
                               str(tmp_path / name / "out.mp4"), "--preset", str(preset), "-q", "--json", *extra],
                              capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        results[name] = json.loads(done.stdout)
    assert results["cluster"]["cluster"]["units"]["run"] >= 2
    assert same_frames(tmp_path / "plain" / "out.mp4", tmp_path / "cluster" / "out.mp4")
