"""Shared by the timeline tests: stand-in media, running the command, what a new edit shows.

Stand-in media are the conftest's clips (every frame shows its index, read back by
``frame_index``: 5 bits, so indices count modulo 32), copied under the names an edit records.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import frame_index

from vidscale.cli import main
from vidscale.jobs.clocks import media_clock
from vidscale.jobs.media_paths import local_path
from vidscale.media import probe, read_frames

LANCZOS = ["--preset", "preview-lanczos-2x"]


def stand_in(make_clip, folder: Path, name: str, *, rate: Fraction, timecode: str, frames: int) -> Path:
    """An intra-coded ProRes clip named ``name`` in ``folder`` (made once per spec)."""
    source = make_clip(container="mov", codec="prores_ks", pix_fmt="yuv422p10le", bframes=0,
                       frames=frames, rate=rate, timecode=timecode)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(source, folder / name))


def vidscale(*args: object) -> tuple[int, str]:
    """Run the CLI in-process; (exit status, everything it printed)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def shown(clip, folder: Path) -> list[int]:
    """The source frame indices a clip of a new edit shows, decoded from its media file."""
    path = local_path(clip.media_reference.target_url, folder)
    start, end = media_clock(probe(path), clip.media_reference).span(clip.source_range)
    frames = np.concatenate([c.frames for c in read_frames(path, start, end, pixel_format="rgb24")])
    return [frame_index(frame) for frame in frames]


def modulo(frames: range) -> list[int]:
    """Source frame numbers as the burnt-in index shows them (5 bits)."""
    return [frame % 32 for frame in frames]
