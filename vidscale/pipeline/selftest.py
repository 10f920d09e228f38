"""``vidscale selftest``: the whole generate path on CPU with a random tiny model.

It checks the installation (torch, diffusers, PyAV encoders, the cascade, the writer) in well
under a minute. Its output is noise from a random model, made to check the installation.

It says each stage as it starts, and the sampling and decoding report their steps through
``progress``: importing torch and diffusers alone takes seconds (tens on a loaded machine), so this
module imports them only once its first line is out.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..errors import JobError
from ..progress import Log, Progress
from ..settings import Settings

SELFTEST = {
    "sampling.prompt": "a lighthouse on a cliff at dusk", "sampling.steps": 4, "sampling.seed": 1,
    "generate.frames": 18, "generate.base_width": 64, "generate.base_height": 64,
    "generate.width": 128, "generate.height": 128, "output.codec": "h264",
    "model.path": "tiny", "model.device": "cpu", "model.dtype": "fp32",
}
STAGES = ("importing torch, diffusers and PyAV",
          "building the random tiny model",
          ("generating 18 frames at 64x64 -> 128x128 on the CPU: base sampling, x2 FreeScale cascade, "
           "decode, H.264"),
          "checking the written clip")


def run_selftest(keep: Path | None = None, log: Log = print, progress: Progress | None = None) -> str:
    """Generate an 18-frame 128x128 clip with the tiny model, check it, and say what was checked."""
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)

    def stage(number: int) -> None:
        log(f"selftest {number}/{len(STAGES)}: {STAGES[number - 1]} ...")

    stage(1)
    from ..media import probe
    from .generate import generate_clip
    from .loading import load_model

    settings = Settings().replace(SELFTEST)
    stage(2)
    model = load_model(settings.model)
    with tempfile.TemporaryDirectory() as scratch:
        folder = keep if keep is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        stage(3)
        result = generate_clip(settings, output=folder / "selftest.mp4", overwrite=True, progress=progress,
                               model=model)
        stage(4)
        info = probe(result.output)
        expected = (128, 128, 18)
        if (info.width, info.height, info.frame_count) != expected:
            raise JobError(f"selftest: wrote {info.width}x{info.height} x {info.frame_count} frames, "
                           f"expected {expected[0]}x{expected[1]} x {expected[2]}")
    return (f"selftest passed in {time.perf_counter() - started:.1f} s: base sampling, x2 FreeScale cascade, "
            "decode and H.264 writing work. The clip is noise from a RANDOM TEST MODEL, made only to "
            "check the installation" + (f" (kept at {result.output})." if keep else "."))
