"""``vidscale watch`` SIGKILLed at random instants: nothing lost, nothing twice, the same outputs.

    PYTHONPATH=. python benchmarks/chaos_watch.py [--clips 8] [--kills 50] [--seed 1]

Work: ``--clips`` tiny clips (64x48, 8 to 14 frames) dropped into one inbox, upscaled by the
random tiny model with FreeScale (8 steps: 6 a chunk after the restart at 0.3, chunks of 4 frames
sharing 2, a step checkpoint after every step), so a kill can land while a clip is claimed,
mid-step, between a chunk's file and its manifest, between the output's rename and the move to
done/, or while the watcher is idle.

1. reference: the same clips in another inbox, one undisturbed ``watch --once``.
2. chaos: start ``vidscale watch`` on the inbox and SIGKILL it at a random instant (seeded): one
   time in five while it starts (0.2-2 s after the launch), one in five 0-``--window`` s after it
   says it is watching (starting takes seconds: importing torch, checking the weights), else
   0-``--window`` s after a job is running (or 30 s passed without one: all done); start it
   again, ``--kills`` times; then one ``watch --once`` finishes what is left.

Reported, and checked (the exit status is 1 when any is not 0): clips lost (a dropped clip found
neither in done/ nor failed/, byte for byte), outputs duplicated (any file in out/ beyond one
per clip, or a clip done twice), outputs different from the reference (decoded frames, exactly).
Every process runs one torch thread, as bit-exact CPU results need.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from clips import gradient_clip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from watch_helpers import decoded  # noqa: E402

PRESET = """\
description = "chaos benchmark: FreeScale on the random tiny model, a checkpoint every step"

[upscale]
engine = "freescale"

[output]
codec = "prores-lt"

[sampling]
steps = 8
guidance_scale = 1.0

[jobs]
chunk_frames = 4
overlap_frames = 2
checkpoint_seconds = 0.0

[model]
path = "tiny"
device = "cpu"
dtype = "fp32"
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def watch(inbox: Path, preset: Path, log: Path, *more: str) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen([sys.executable, "-m", "vidscale", "watch", str(inbox), "-q", "--settle", "0.2",
                                 "--preset", str(preset), *more], stdout=handle, stderr=subprocess.STDOUT, env=ENV)


def watching(inbox: Path) -> int:
    """How many times a watcher said it is watching (its first event), from log.jsonl."""
    try:
        return (inbox / ".vidscale" / "log.jsonl").read_text().count('"event": "watching"')
    except OSError:
        return 0


def wait_watching(inbox: Path, before: int, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while watching(inbox) <= before and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def running(inbox: Path) -> bool:
    """Whether status.json says a job runs (it is written atomically: never torn)."""
    try:
        return bool(json.loads((inbox / ".vidscale" / "status.json").read_text()).get("running"))
    except (OSError, ValueError):
        return False


def wait_running(inbox: Path, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not running(inbox) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(inbox: Path) -> list[Path]:
    return sorted(p for p in (inbox / "out").rglob("*") if p.is_file() and ".vidscale-jobs" not in p.parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=float, default=6.0, help="seconds after 'watching' a kill lands in")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-watch-"))
    preset = work / "tiny.toml"
    preset.write_text(PRESET)
    sources = [gradient_clip(work / f"clip{k}.mp4", width=64, height=48, frames=8 + 2 * (k % 4))
               for k in range(args.clips)]
    hashes = {source.name: digest(source) for source in sources}

    reference, inbox = work / "reference", work / "inbox"
    for folder in (reference, inbox):
        folder.mkdir()
        for source in sources:
            shutil.copyfile(source, folder / source.name)
    began = time.perf_counter()
    assert watch(reference, preset, work / "reference.log", "--once").wait() == 0, (work / "reference.log").read_text()
    reference_seconds = time.perf_counter() - began

    landed, phases = 0, {"starting": 0, "idle": 0, "job": 0}
    began = time.perf_counter()
    for _ in range(args.kills):
        before = watching(inbox)
        process = watch(inbox, preset, work / "chaos.log")
        aim = rng.random()
        if aim < 0.2:
            time.sleep(rng.uniform(0.2, 2.0))
        else:
            wait_watching(inbox, before, process)
            if aim >= 0.4:
                wait_running(inbox, process)
            time.sleep(rng.uniform(0.0, args.window))
        if process.poll() is None:
            phase = "starting" if watching(inbox) <= before else ("job" if running(inbox) else "idle")
            process.send_signal(signal.SIGKILL)
            landed += 1
            phases[phase] += 1
        process.wait()
    final = watch(inbox, preset, work / "chaos.log", "--once").wait()
    chaos_seconds = time.perf_counter() - began

    done = {p.name: digest(p) for p in (inbox / "done").rglob("*") if p.is_file()}
    failed = {p.name: digest(p) for p in (inbox / "failed").rglob("*") if p.is_file()}
    lost = [name for name, value in hashes.items() if done.get(name) != value and failed.get(name) != value]
    made = outputs(inbox)
    done_events = [json.loads(line)["file"] for line in (inbox / ".vidscale" / "log.jsonl").read_text().splitlines()
                   if json.loads(line)["event"] == "done"]
    duplicated = max(0, len(made) - len(sources)) + sum(done_events.count(name) - 1 for name in set(done_events))
    different = []
    for output in outputs(reference):
        mine = inbox / "out" / output.name
        got, want = (decoded(mine) if mine.exists() else []), decoded(output)
        if len(got) != len(want) or not all(np.array_equal(a, b) for a, b in zip(got, want)):
            different.append(output.name)

    print(f"chaos_watch: {args.clips} clips of 8-14 frames, tiny FreeScale (6 steps a chunk, a checkpoint "
          f"every step), seed {args.seed}, kills within {args.window:g} s of starting, 'watching' or a job")
    print(f"reference (undisturbed --once): {reference_seconds:.1f} s")
    print(f"chaos: {landed} of {args.kills} kills landed ({phases['job']} while a job ran, {phases['idle']} idle, "
          f"{phases['starting']} while starting), then --once exited {final}; {chaos_seconds:.1f} s in all")
    print(f"clips lost: {len(lost)} {lost or ''}".rstrip())
    print(f"outputs duplicated: {duplicated}")
    print(f"outputs different from the undisturbed run: {len(different)} {different or ''}".rstrip())
    print(f"left in processing/: {sum(1 for p in (inbox / '.vidscale' / 'processing').rglob('*') if p.is_file())}, "
          f"failed: {len(failed)}, done: {len(done)}, outputs: {len(made)}")
    ok = final == 0 and not lost and not duplicated and not different and not failed
    if ok:
        shutil.rmtree(work)
    else:
        print(f"kept for a look: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
