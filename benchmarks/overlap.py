"""Wall time of a 4-chunk upscale with reading/writing beside the denoising (``jobs.overlap_io``) vs in turn.

Why the tiny model, sized up: overlap can only hide the shorter of (denoising) and (reading +
VAE encode + VAE decode + encoding), so the benchmark needs the two comparable. The full model
cannot run here, and the tiny model's UNet at the default size is far faster than its IO. So the
tiny model runs on larger frames with enough steps that denoising and IO take similar time; the
script measures both in the overlap-off run (by timing the reader and writer functions) and
prints them, so the balance can be seen. Torch uses one thread, so the denoising and the IO thread
can each have a core (on a GPU the UNet runs on the device and the CPU is free for IO anyway).

    python benchmarks/overlap.py [--size 192x144] [--frames 13] [--steps 2] [--repeats 3]

Prints the median of ``--repeats`` runs each way (alternating), their ratio (target <= 0.85), and
how many cores the process kept busy (CPU seconds per wall second): overlap can only pay where the
IO thread finds a free core, so on a machine whose cores are taken by other work the ratio stays
near 1 while "cores busy" shows whether the threads ran side by side. Quote timings with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from clips import gradient_clip

from vidscale.model.videocrafter2 import tiny_videocrafter2
from vidscale.pipeline import upscale
from vidscale.settings import Settings


class Timed:
    """Wraps the pipeline's reader and writer functions to add up the seconds spent in them."""

    def __init__(self) -> None:
        self.seconds = {"read": 0.0, "write": 0.0}
        self.read, self.write = upscale.chunk_inputs, upscale.decoded_chunk

    def install(self) -> None:
        def read(*args, **kwargs):
            started = time.perf_counter()
            try:
                return self.read(*args, **kwargs)
            finally:
                self.seconds["read"] += time.perf_counter() - started

        def write(*args, **kwargs):
            items = self.write(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(items)
                except StopIteration:
                    return
                finally:
                    self.seconds["write"] += time.perf_counter() - started
                yield item

        upscale.chunk_inputs, upscale.decoded_chunk = read, write

    def remove(self) -> None:
        upscale.chunk_inputs, upscale.decoded_chunk = self.read, self.write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="192x144")
    parser.add_argument("--frames", type=int, default=13)  # chunks of 4 overlapping by 1: 4 chunks
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(1)
    model = tiny_videocrafter2()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        gradient_clip(clip, width=width, height=height, frames=args.frames)
        base = Settings().replace({
            "upscale.engine": "freescale", "model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32",
            "sampling.steps": args.steps, "sampling.guidance_scale": 1.0, "output.codec": "prores-hq",
            "jobs.chunk_frames": 4, "jobs.overlap_frames": 1})
        chunks = len(upscale.plan_upscale(clip, base).chunks)
        times: dict[bool, list[float]] = {True: [], False: []}
        busy: dict[bool, list[float]] = {True: [], False: []}  # process CPU seconds per wall second
        timed = Timed()
        for repeat in range(args.repeats):
            for overlap in (False, True):
                settings = base.replace({"jobs.overlap_io": overlap})
                out = Path(folder) / f"out-{overlap}-{repeat}.mov"
                if not overlap and repeat == 0:
                    timed.install()
                started, cpu = time.perf_counter(), time.process_time()
                upscale.upscale_clip(clip, out, settings, model=model)
                times[overlap].append(time.perf_counter() - started)
                busy[overlap].append((time.process_time() - cpu) / times[overlap][-1])
                timed.remove()
                out.unlink()
        off, on = statistics.median(times[False]), statistics.median(times[True])
        io = sum(timed.seconds.values())
        first_off = times[False][0]
    print(f"upscale {width}x{height} -> {2 * width}x{2 * height}, {args.frames} frames in {chunks} chunks, "
          f"tiny model, {args.steps} steps, torch threads 1, load average {os.getloadavg()[0]:.1f}")
    print(f"overlap off, first run: read+encode {timed.seconds['read']:.2f} s, decode+write "
          f"{timed.seconds['write']:.2f} s, the rest (denoising) {first_off - io:.2f} s of {first_off:.2f} s")
    for overlap, median in ((False, off), (True, on)):
        print(f"overlap {'on: ' if overlap else 'off:'} median {median:.2f} s  {[round(t, 2) for t in times[overlap]]}"
              f"  cores busy {statistics.median(busy[overlap]):.2f}")
    print(f"ratio on/off: {on / off:.2f} (target <= 0.85)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
