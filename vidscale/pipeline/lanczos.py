"""``vidscale upscale --engine lanczos``: the classic resize, a fast preview of the framing.

Frames go from the decoder to the encoder as PyAV frames: one swscale pass per frame resizes
with Lanczos and converts straight into the encoder's pixel format and matrix (no RGB or numpy
round trip), which keeps it close to the ffmpeg command line's speed
(``benchmarks/lanczos_vs_ffmpeg.py``). Everything else (timing, audio, colour, timecode,
atomic output) is the shared :class:`~vidscale.media.VideoWriter`'s. No torch.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..media import VideoWriter, decode_frames, probe
from ..progress import Progress
from ..settings import Settings
from .result import UpscaleResult


def upscale_lanczos(source: Path, output: Path, settings: Settings, *,
                    frames: tuple[int, int | None] | None = None, overwrite: bool = False,
                    progress: Progress | None = None) -> UpscaleResult:
    """Resize ``source`` by ``settings.upscale.scale`` per side into ``output``."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    info = probe(source)
    start, end = info.frame_range(frames)
    scale = settings.upscale.scale
    width, height = info.width * scale, info.height * scale
    with VideoWriter(output, width=width, height=height, source=info, settings=settings.output,
                     frame_range=(start, end), overwrite=overwrite) as writer:
        with progress.bar("lanczos", total=end - start, unit="frame") as bar:
            for frame in decode_frames(info, start, end):
                writer.write_frame(frame, frame.pts)
                bar.update(1)
    count = end - start
    return UpscaleResult(
        input=Path(source), output=Path(output), engine="lanczos", width=width, height=height,
        frames=count, frame_rate=info.frame_rate,
        codec=settings.output.codec, elapsed_seconds=time.perf_counter() - started)
