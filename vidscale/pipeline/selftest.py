"""``vidscale selftest``: the whole generate path on CPU with a random tiny model.

It checks the installation (torch, diffusers, PyAV encoders, the cascade, the writer) in well
under a minute. Its output is noise from a random model, made to check the installation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ..errors import JobError
from ..media import probe
from ..settings import Settings
from .generate import generate_clip

SELFTEST = {
    "sampling.prompt": "a lighthouse on a cliff at dusk", "sampling.steps": 4, "sampling.seed": 1,
    "generate.frames": 18, "generate.base_width": 64, "generate.base_height": 64,
    "generate.width": 128, "generate.height": 128, "output.codec": "h264",
    "model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32",
}


def run_selftest(keep: Path | None = None, log: Callable[[str], object] = print) -> str:
    """Generate an 18-frame 128x128 clip with the tiny model, check it, and say what was checked."""
    settings = Settings().replace(SELFTEST)
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep if keep is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        log("generating 18 frames at 64x64 -> 128x128 with a random tiny model on the CPU ...")
        result = generate_clip(settings, output=folder / "selftest.mp4", overwrite=True)
        info = probe(result.output)
        expected = (128, 128, 18)
        if (info.width, info.height, info.frame_count) != expected:
            raise JobError(f"selftest: wrote {info.width}x{info.height} x {info.frame_count} frames, "
                           f"expected {expected[0]}x{expected[1]} x {expected[2]}")
    return (f"selftest passed in {result.elapsed_seconds:.1f} s: base sampling, x2 FreeScale cascade, "
            "decode and H.264 writing work. The clip is noise from a RANDOM TEST MODEL, made only to "
            "check the installation" + (f" (kept at {result.output})." if keep else "."))
