"""Peak memory of a tiny-model upscale must not grow with clip length.

Runs ``vidscale upscale --engine freescale --model tiny`` in a fresh process on a short clip and on
one 4x longer (same size, same chunking), several times each, and prints the median peak resident
memory (the child's ``ru_maxrss``) and the growth. Frames stream through chunk by chunk, so the
target is < 10 %.

    python benchmarks/upscale_memory.py [--frames 24] [--size 128x96] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clips import gradient_clip

PRESET = """
[upscale]
engine = "freescale"
[model]
path = "tiny"
device = "cpu"
dtype = "fp32"
[sampling]
steps = 4
guidance_scale = 1.0
[jobs]
chunk_frames = 8
overlap_frames = 2
"""


def peak_rss_mib(clip: Path, preset: Path, out: Path) -> tuple[float, float]:
    """Run one upscale in a child process; return (peak RSS MiB, seconds)."""
    started = time.perf_counter()
    code = ("import resource, sys; from vidscale.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n"
            "    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); raise\n")
    run = subprocess.run([sys.executable, "-c", code, "upscale", str(clip), "--preset", str(preset),
                          "-o", str(out), "--quiet", "--overwrite"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"upscale failed:\n{run.stderr}")
    peak_kib = int(run.stderr.split("PEAK")[-1].split()[0])
    return peak_kib / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per length; the median peak is compared (one run's peak varies by ~10%%)")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        preset = folder / "bench.toml"
        preset.write_text(PRESET)
        results = []
        for frames in (args.frames, 4 * args.frames):
            clip = folder / f"clip{frames}.mp4"
            gradient_clip(clip, width=width, height=height, frames=frames)
            runs = [peak_rss_mib(clip, preset, folder / f"out{frames}.mov") for _ in range(args.repeats)]
            peaks = sorted(peak for peak, _ in runs)
            peak = statistics.median(peaks)
            results.append(peak)
            print(f"{frames:5d} frames {width}x{height} -> 2x: median peak RSS {peak:8.1f} MiB "
                  f"(runs: {', '.join(f'{p:.1f}' for p in peaks)}), {runs[0][1]:6.1f} s per run")
        growth = results[1] / results[0] - 1
        print(f"growth for a 4x longer clip: {growth:+.1%} (target < 10%)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
