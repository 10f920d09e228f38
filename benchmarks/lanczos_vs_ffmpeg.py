"""Throughput of the lanczos engine against the ffmpeg command line doing the same job.

Job: decode a 960x540 H.264 clip (synthesised here with PyAV: a moving zone plate and text-like
edges, 120 frames at 30000/1001), resize 2x with Lanczos to 1920x1080, encode ProRes 422 HQ
(10-bit 4:2:2, vendor apl0) into MOV. Both run on the same input in the same process run,
alternating, and the median wall time of ``--runs`` runs each is reported.

    PYTHONPATH=. python benchmarks/lanczos_vs_ffmpeg.py [--frames 120] [--runs 3]

The ffmpeg side is the system ``ffmpeg`` binary (used here only as the reference; vidscale itself
never calls it):

    ffmpeg -y -i IN -vf scale=1920:1080:flags=lanczos -c:v prores_ks -profile:v 3
           -vendor apl0 -pix_fmt yuv422p10le OUT.mov
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidscale.pipeline.lanczos import upscale_lanczos
from vidscale.settings import Settings

WIDTH, HEIGHT, RATE = 960, 540, Fraction(30000, 1001)


def synthesise(path: Path, frames: int) -> None:
    """A detailed moving test pattern (zone plate + stripes), H.264 with B-frames, BT.709."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r2 = ((x - WIDTH / 2) ** 2 + (y - HEIGHT / 2) ** 2) / (WIDTH * 8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE,
                                      options={"crf": "16", "preset": "veryfast", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            plate = 0.5 + 0.5 * np.cos(r2 * (1 + i / 40) + i / 5)
            stripes = ((x + 3 * i) // 7 % 2) * (y > HEIGHT * 0.75)
            rgb = np.stack([plate, 0.6 * plate + 0.4 * stripes, stripes * 0.8 + 0.1], axis=-1)
            frame = av.VideoFrame.from_ndarray((rgb * 255).astype(np.uint8), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def run_vidscale(source: Path, output: Path) -> float:
    settings = Settings().replace({"upscale.engine": "lanczos", "output.codec": "prores-hq"})
    started = time.perf_counter()
    upscale_lanczos(source, output, settings, overwrite=True)
    return time.perf_counter() - started


def run_ffmpeg(source: Path, output: Path) -> float:
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(source),
               "-vf", f"scale={2 * WIDTH}:{2 * HEIGHT}:flags=lanczos",
               "-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0",
               "-pix_fmt", "yuv422p10le", str(output)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        print("needs the ffmpeg binary as the reference (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source = folder / "input_960x540.mp4"
        synthesise(source, args.frames)
        ours, theirs = [], []
        for _ in range(args.runs):  # alternate, so load from other work hits both alike
            ours.append(run_vidscale(source, folder / "vidscale.mov"))
            theirs.append(run_ffmpeg(source, folder / "ffmpeg.mov"))
        size = (folder / "vidscale.mov").stat().st_size, (folder / "ffmpeg.mov").stat().st_size
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(f"{args.frames} frames 960x540 H.264 -> lanczos 2x -> ProRes HQ 1920x1080, "
          f"{os.cpu_count()} CPUs, PyAV {av.__version__} (libavcodec "
          f"{'.'.join(map(str, av.library_versions['libavcodec']))})")
    print(f"vidscale  median {ours_s:6.2f} s  ({args.frames / ours_s:5.1f} fps)  runs "
          + " ".join(f"{t:.2f}" for t in ours) + f"  output {size[0] / 1e6:.1f} MB")
    print(f"ffmpeg    median {theirs_s:6.2f} s  ({args.frames / theirs_s:5.1f} fps)  runs "
          + " ".join(f"{t:.2f}" for t in theirs) + f"  output {size[1] / 1e6:.1f} MB")
    print(f"ratio vidscale/ffmpeg = {ours_s / theirs_s:.2f} (target <= 1.30)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
