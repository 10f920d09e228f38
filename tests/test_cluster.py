"""``--cluster`` on one local Ray (2 CPUs, loopback only) shared by every test of this module.

What is checked: the cluster's outputs equal a single process's bit for bit (a batch of whole
clips, and a long clip in two segments with a worker SIGKILLed in the middle of a unit); the
segment joins are no rougher than the inside of a chunk; a killed driver's rerun takes the
finished segments from the job store; a bad clip fails alone.

Bit for bit on the CPU needs the same torch thread count in every process (CPU kernels sum in an
order that depends on it): Ray gives a ``num_cpus=1`` worker one thread, so this module runs its
own process with one thread too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vidscale.jobs.cluster import LOOPBACK_ONLY  # noqa: E402  (no Ray import)

os.environ.update(LOOPBACK_ONLY)  # before Ray is imported: the test cluster talks over loopback only
ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from job_files import write_preset  # noqa: E402
from watch_helpers import decoded  # noqa: E402

from vidscale.jobs.batch import BatchRequest, run_batch  # noqa: E402
from vidscale.jobs.cluster import run_cluster  # noqa: E402
from vidscale.pipeline.upscale import upscale_clip  # noqa: E402
from vidscale.settings import Settings  # noqa: E402

TINY = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
        "sampling.steps": 2, "sampling.guidance_scale": 1.0, "output.codec": "h264", "output.crf": 0,
        "output.x264_preset": "ultrafast", "jobs.chunk_frames": 4, "jobs.overlap_frames": 2}
# 12 frames in chunks of 4 sharing 2: [0,4) [2,6) [4,8) | [6,10) [8,12); frames 6 and 7 crossfade.
SEGMENTED = {**TINY, "jobs.segment_frames": 8}
JOIN = (6, 8)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module, and one torch thread here (as in each worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             object_store_memory=128 * 2**20)
    try:
        gcs = ray.get_runtime_context().gcs_address
        assert gcs.startswith("127.0.0.1:") and {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield gcs
    finally:
        ray.shutdown()
        torch.set_num_threads(threads)


def same_frames(a: Path, b: Path) -> bool:
    x, y = decoded(a), decoded(b)
    return len(x) == len(y) and all(np.array_equal(p, q) for p, q in zip(x, y))


@pytest.fixture(scope="module")
def segmented_reference(cluster, make_clip, tmp_path_factory):
    """The 12-frame clip in two segments, upscaled in this process: what the cluster must equal."""
    folder = tmp_path_factory.mktemp("reference")
    clip = shutil.copyfile(make_clip(frames=12), folder / "long.mp4")
    result = upscale_clip(clip, folder / "long_2x.mp4", Settings().replace(SEGMENTED))
    return clip, result


@pytest.mark.slow
def test_a_batch_of_three_clips_on_two_workers_equals_the_serial_run(cluster, make_clip, tmp_path):
    clips = [shutil.copyfile(make_clip(frames=n), tmp_path / f"c{n}.mp4") for n in (3, 4, 5)]
    settings = Settings().replace(TINY)
    serial = run_batch(BatchRequest(clips, settings, out_dir=tmp_path / "serial"))
    spread = run_cluster(BatchRequest(clips, settings.replace({"cluster.address": "local:2"}),
                                      out_dir=tmp_path / "cluster"))
    assert serial.exit_code == spread.exit_code == 0
    assert spread.to_dict()["cluster"] == {"workers": 2, "units": {"run": 3, "from_store": 0, "retried": 0}}
    for clip in clips:
        name = f"{clip.stem}_2x.mp4"
        assert same_frames(tmp_path / "serial" / name, tmp_path / "cluster" / name), name


@pytest.mark.slow
def test_segment_joins_are_no_rougher_than_inside_a_chunk(segmented_reference):
    """The seams metric of test_pipeline_upscale, at the crossfade: every change between two
    frames that touches a faded frame, against every other change."""
    _clip, result = segmented_reference
    report = json.loads((result.job_dir / "report.json").read_text())
    assert [(s["chunks"][0]["start"], s["chunks"][-1]["end"], s["fade"]) for s in report["segments"]] == \
        [(0, 8, 0), (6, 12, 2)]
    frames = [f.astype(np.float64) for f in decoded(result.output)]
    change = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]
    at_join = range(JOIN[0] - 1, JOIN[1])  # 5->6, 6->7, 7->8
    seams = [change[i] for i in at_join]
    inside = [c for i, c in enumerate(change) if i not in at_join]
    assert max(seams) <= 1.1 * max(inside), (seams, inside)


@pytest.mark.slow
def test_two_segments_with_a_worker_killed_mid_unit_equal_the_single_process_run(
        cluster, segmented_reference, tmp_path):
    clip, reference = segmented_reference
    shared = tmp_path / "shared"
    shared.mkdir()
    events: list[dict] = []
    killed: list[int] = []

    def kill_when_a_chunk_is_stored(pid: int) -> None:
        deadline = time.monotonic() + 120
        while not list(shared.glob("long.s000-*/chunk-0000.safetensors")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)  # segment 0 has two chunks to go
        killed.append(pid)

    def on_event(event: dict) -> None:
        events.append(event)
        if event["event"] == "submitted" and event["unit"].endswith("segment 0") and not killed:
            threading.Thread(target=kill_when_a_chunk_is_stored, args=(event["pid"],), daemon=True).start()

    settings = Settings().replace({**SEGMENTED, "cluster.address": "local:2", "cluster.shared_path": str(shared)})
    summary = run_cluster(BatchRequest([clip], settings, out_dir=tmp_path / "out"), on_event=on_event)
    assert summary.exit_code == 0, summary.to_dict()
    assert killed and any(e["event"] == "lost" for e in events), events
    done = sorted(e["unit"] for e in events if e["event"] == "done")
    assert done == ["long.mp4 segment 0", "long.mp4 segment 1"]  # each stored once
    assert same_frames(tmp_path / "out" / "long_2x.mp4", reference.output)


@pytest.mark.slow
def test_a_killed_driver_is_resumed_from_the_job_store(cluster, segmented_reference, tmp_path):
    """The driver (a subprocess on the module's Ray, one worker) dies once segment 0 is stored;
    the rerun runs segment 1 only. No shared path: the driver itself stored what the worker sent."""
    clip, reference = segmented_reference
    preset = write_preset(tmp_path / "tiny.toml", {**SEGMENTED, "cluster.workers": 1})  # one unit at a time
    output = tmp_path / "long_2x.mp4"
    args = [sys.executable, "-m", "vidscale", "upscale", str(clip), "-o", str(output), "--preset", str(preset),
            "--cluster", cluster, "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    manifest = tmp_path / ".vidscale-jobs"
    deadline = time.monotonic() + 120
    while not any(len(json.loads(m.read_text())["chunks"]) == 3 for m in manifest.glob("long.s000-*/manifest.json")):
        assert driver.poll() is None, driver.stdout.read().decode()
        assert time.monotonic() < deadline, "segment 0 not stored within 120 s"
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    assert not output.exists()
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=180, env=env)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["cluster"]["units"] == {"run": 1, "from_store": 1, "retried": 0}
    assert same_frames(output, reference.output)


@pytest.mark.slow
def test_a_bad_clip_fails_alone_with_the_batch_exit_code(cluster, make_clip, tmp_path):
    good = shutil.copyfile(make_clip(frames=4), tmp_path / "good.mp4")
    bad = tmp_path / "bad.mov"
    bad.write_bytes(os.urandom(5000))
    settings = Settings().replace({"upscale.engine": "lanczos", "output.codec": "prores-lt"})
    serial = run_batch(BatchRequest([good], settings, out_dir=tmp_path / "serial"))
    spread = run_cluster(BatchRequest([good, bad], settings.replace({"cluster.address": "local:2"}),
                                      out_dir=tmp_path / "cluster"))
    assert serial.exit_code == 0 and spread.exit_code == 2  # the worst item: bad input
    items = {Path(item["input"]).name: item for item in spread.to_dict()["items"]}
    assert items["good.mp4"]["status"] == "done" and items["bad.mov"]["status"] == "failed"
    assert "check that the file plays" in items["bad.mov"]["error"] and spread.items[1].exit_code == 2
    assert same_frames(tmp_path / "serial" / "good_2x.mov", tmp_path / "cluster" / "good_2x.mov")


def test_segments_group_consecutive_chunks_and_fade_where_the_plan_anchored():
    from vidscale.work.plan import plan_chunks, plan_segments

    chunks = plan_chunks(20, 4, 2)
    assert [s.chunks for s in plan_segments(chunks, 0)] == [tuple(chunks)]  # off: the chunk plan
    segments = plan_segments(chunks, 8)
    assert [(s.start, s.end, s.fade) for s in segments] == [(0, 8, 0), (6, 14, 2), (12, 20, 2)]
    assert all(s.chunks[0].anchored == 0 and [c.index for c in s.chunks] == list(range(len(s.chunks)))
               for s in segments)
    # every frame is owned once, the fades excepted: segment k's first frames are k-1's last
    owned = [f for s in segments for c in s.chunks for f in range(*c.owned)]
    assert sorted(set(owned)) == list(range(20)) and len(owned) == 20 + 2 + 2
    # a segment keeps a frame of its own between its two fades, however small segment_frames is
    tight = plan_segments(plan_chunks(20, 3, 2), 1)
    assert all(s.end - s.start > s.fade + 2 or s.index == len(tight) - 1 for s in tight)


def test_a_bad_cluster_address_is_a_usage_error(make_clip, tmp_path):
    from click.testing import CliRunner

    from vidscale.cli import main

    clip = make_clip(frames=3)
    done = CliRunner().invoke(main, ["upscale", str(clip), "--out-dir", str(tmp_path), "--preset",
                                     "preview-lanczos-2x", "--cluster", "local:two"])
    assert done.exit_code == 2 and "expected local or local:N" in done.output, done.output
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_stop_ends_each_unit_after_its_step_and_the_rerun_continues_from_it(cluster, segmented_reference,
                                                                               tmp_path):
    """``watch --cluster``'s SIGTERM: the driver asks every worker to stop after its current step.
    Without a shared folder, the step checkpoints come back to the driver's stores; the rerun sends
    them with the units, continues from them, and equals the single-process run. Connecting by
    HOST:PORT says once that Ray has no authentication."""
    from vidscale.errors import Interrupted

    clip, reference = segmented_reference
    settings = Settings().replace({**SEGMENTED, "cluster.address": cluster, "cluster.workers": 1})
    asked: list[bool] = []
    events: list[dict] = []
    lines: list[str] = []

    def on_event(event: dict) -> None:
        events.append(event)
        asked.append(True)  # stop as soon as the first unit is handed out

    out = tmp_path / "out"
    request = BatchRequest([clip], settings, out_dir=out, should_stop=lambda: bool(asked))
    with pytest.raises(Interrupted, match="every worker stopped after its current step"):
        run_cluster(request, on_event=on_event, log=lines.append)
    assert [e["unit"] for e in events if e["event"] == "stopped"] == ["long.mp4 segment 0", "long.mp4 segment 1"]
    assert not any(e["event"] == "done" for e in events)  # no unit ran to its end
    manifests = [json.loads(m.read_text()) for m in sorted(out.glob(".vidscale-jobs/long.s00*/manifest.json"))]
    assert [m["running"]["step"] for m in manifests] == [1, 1]  # each stopped after its first step, saved
    assert [line for line in lines if "Ray has no authentication" in line] == [
        f"warning: --cluster {cluster}: Ray has no authentication by default; whoever reaches the cluster's "
        "ports can run code on its machines: keep them on a private network "
        "(https://docs.ray.io/en/latest/ray-security/index.html)"]
    summary = run_cluster(BatchRequest([clip], settings, out_dir=out))
    assert summary.exit_code == 0, summary.to_dict()
    assert same_frames(out / "long_2x.mp4", reference.output)


def test_what_a_driver_stored_reaches_a_worker_s_private_store_as_it_was(tmp_path):
    """The hand-over that lets a unit continue after a stop without a shared folder."""
    from vidscale.jobs.cluster import stored
    from vidscale.jobs.workers import _restore
    from vidscale.work.store import JobStore

    driver = JobStore.open(tmp_path / "driver", "s", {"k": 1})
    assert stored(driver) is None
    driver.save_chunk(0, {"latents": torch.arange(6.0)}, {"frames": [0, 4]})
    driver.save_step(1, 3, {"latent": torch.ones(2, 3), "stride": torch.tensor([3, 1])})
    worker = JobStore.open(tmp_path / "worker", "s", {"k": 1})
    _restore(worker, stored(driver))
    assert worker.finished == {0} and worker.manifest["chunks"]["0"]["frames"] == [0, 4]
    assert torch.equal(worker.load_chunk(0)["latents"], torch.arange(6.0))
    step, tensors = worker.load_step(1)
    assert step == 3 and torch.equal(tensors["latent"], torch.ones(2, 3))
