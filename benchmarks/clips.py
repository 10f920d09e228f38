"""The benchmarks' input clip: a moving gradient in H.264 at 24000/1001 fps, made with PyAV only.

Benchmarks run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def gradient_clip(path: Path, *, width: int, height: int, frames: int) -> Path:
    """Write ``frames`` frames of a gradient that moves a little every frame (nothing repeats)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24000, 1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        y, x = np.mgrid[0:height, 0:width]
        for index in range(frames):
            rgb = np.stack([(x + 3 * index) % 256, (y + index) % 256, (x + y) % 256], -1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
