"""``--cluster``: 4 clips on local:2 against local:1, then a chaos run with random worker kills.

    PYTHONPATH=. python benchmarks/cluster.py [--kills 20] [--repeat 2]

Work: tiny-model FreeScale (random weights: the compute of the real pipeline at toy size),
4 clips of 16 frames 64x48 -> 128x96, 8 steps, chunks of 4 sharing 2, ``jobs.segment_frames``
8 (3 segments a clip: 12 units). A unit is seconds of denoising, so starting the workers and
loading the model (once per worker) is a small part of a run; the driver's decoding and encoding
run beside the workers. One local Ray with 2 CPUs serves every run; each run starts its workers.

0. ceiling: the same Ray running a plain torch loop in 1 and in 2 actors, i.e. how much of a
   second core this machine gives right now (on a shared machine, less than one).
1. local:1 and local:2 on the same batch, alternated ``--repeat`` times: wall times, ratios.
2. chaos: local:2 again while a thread SIGKILLs a random worker process every 0.5-2.5 s until
   ``--kills`` kills have landed. Checked: every unit stored exactly once (none lost, none run to
   the end twice), and every output decodes to the same frames as the undisturbed runs. "Lost"
   counts the units running or queued (2 per worker) on a killed worker, each handed out again.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vidscale.jobs.cluster import LOOPBACK_ONLY

os.environ.update(LOOPBACK_ONLY)  # before Ray is imported: the benchmark's cluster stays on loopback
import ray  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import ClipSpec, write_clip  # noqa: E402
from watch_helpers import decoded  # noqa: E402

from vidscale.jobs.batch import BatchRequest  # noqa: E402
from vidscale.jobs.cluster import run_cluster  # noqa: E402
from vidscale.settings import Settings  # noqa: E402

SETTINGS = {"model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32", "upscale.engine": "freescale",
            "sampling.steps": 8, "sampling.guidance_scale": 1.0, "freescale.restart_fraction": 0.0,
            "output.codec": "h264", "output.crf": 0, "output.x264_preset": "ultrafast",
            "jobs.chunk_frames": 4, "jobs.overlap_frames": 2, "jobs.segment_frames": 8,
            "cluster.retries": 100}


def run(clips: list[Path], out: Path, address: str, on_event=None) -> float:
    settings = Settings().replace({**SETTINGS, "cluster.address": address})
    started = time.perf_counter()
    summary = run_cluster(BatchRequest(clips, settings, out_dir=out), on_event=on_event)
    assert summary.exit_code == 0, summary.to_dict()
    return time.perf_counter() - started


def spin(n: int) -> float:
    x = torch.randn(256, 256)
    for _ in range(n):
        x = torch.tanh(x @ x)
    return float(x.mean())


def ceiling() -> float:
    """Wall time of 4 equal torch loops on 2 actors over that on 1 (1.0: no second core free)."""
    task = ray.remote(num_cpus=1)(spin)
    ray.get([task.remote(1) for _ in range(2)])  # start both worker processes
    times = []
    for width in (1, 2):
        started = time.perf_counter()
        for first in range(0, 4, width):
            ray.get([task.remote(1500) for _ in range(first, first + width)])
        times.append(time.perf_counter() - started)
    return times[1] / times[0]


def frames(folder: Path) -> dict[str, list[np.ndarray]]:
    return {p.name: decoded(p) for p in sorted(folder.glob("*_2x.mp4"))}


class Chaos:
    """Kills a random worker (pids learnt from the driver's events) until ``kills`` have landed."""

    def __init__(self, kills: int):
        self.wanted, self.landed = kills, 0
        self.pids: dict[int, int] = {}  # worker -> its current process
        self.events: list[dict] = []
        self.done = threading.Event()
        self.rng = random.Random(0)

    def on_event(self, event: dict) -> None:
        self.events.append(event)
        if "pid" in event:
            self.pids[event["worker"]] = event["pid"]

    def loop(self) -> None:
        while self.landed < self.wanted and not self.done.wait(self.rng.uniform(0.5, 2.5)):
            if not self.pids:
                continue
            worker = self.rng.choice(sorted(self.pids))
            try:
                os.kill(self.pids.pop(worker), signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.landed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each of local:1 and local:2")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the driver decodes beside the workers; one thread each, like them
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        clips = [write_clip(root / f"clip{i}.mp4", ClipSpec(frames=16)) for i in range(4)]
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                 object_store_memory=128 * 2**20)
        try:
            print(f"ceiling: 4 torch loops on 2 actors / on 1 actor = {ceiling():.2f}")
            ones, twos, units = [], [], []
            for attempt in range(args.repeat):  # alternated: the machine's load drifts
                ones.append(run(clips, root / f"one{attempt}", "local:1"))
                twos.append(run(clips, root / f"two{attempt}", "local:2", on_event=units.append))
                print(f"4 clips: local:1 {ones[-1]:.1f} s, local:2 {twos[-1]:.1f} s, "
                      f"ratio {twos[-1] / ones[-1]:.2f}")
            count = len({e["unit"] for e in units})
            print(f"4 clips, {count} units, best of {args.repeat}: local:1 {min(ones):.1f} s, "
                  f"local:2 {min(twos):.1f} s, ratio {min(twos) / min(ones):.2f}")
            chaos = Chaos(args.kills)
            killer = threading.Thread(target=chaos.loop, daemon=True)
            killer.start()
            wild = run(clips, root / "chaos", "local:2", on_event=chaos.on_event)
            chaos.done.set()
            killer.join()
        finally:
            ray.shutdown()
        done = Counter(e["unit"] for e in chaos.events if e["event"] == "done")
        lost = sum(e["event"] == "lost" for e in chaos.events)
        reference, others = frames(root / "one0"), [frames(root / "two0"), frames(root / "chaos")]
        same = all(len(o) == len(reference) and all(
            len(o[name]) == len(ref) and all(np.array_equal(a, b) for a, b in zip(o[name], ref))
            for name, ref in reference.items()) for o in others)
        print(f"chaos: {chaos.landed} kills landed in {wild:.1f} s, {lost} units lost mid-run and handed "
              f"out again; units stored: {len(done)} of {count}, stored twice: {sum(n > 1 for n in done.values())}; "
              f"outputs of local:1, local:2 and chaos identical: {same}")


if __name__ == "__main__":
    main()
