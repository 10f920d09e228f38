"""Shared fixtures: tiny clips synthesised with PyAV, cached per test session.

``make_clip(name, **spec)`` writes a clip whose every frame shows its own index as five
black/white bars (:func:`frame_index` reads it back after any codec), so tests can check that
frames come back complete, in display order and at the right place.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest

BITS = 5  # frames up to 31 carry their index


@dataclass(frozen=True)
class ClipSpec:
    """What a synthetic clip looks like; defaults: 64x48 H.264 with B-frames, BT.709, in MP4."""

    width: int = 64
    height: int = 48
    frames: int = 20
    rate: Fraction = Fraction(30000, 1001)
    container: str = "mp4"  # mp4 | mov | mkv
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"  # yuv444p stores odd sizes
    bframes: int = 2
    audio: str | None = None  # None | "aac" | "pcm"
    colour: str = "bt709"  # bt709 | bt601 | untagged
    timecode: str | None = None
    rotation: int = 0
    vfr: bool = False  # alternate frame durations of 1 and 1.5 frames


def index_picture(index: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: bit k of ``index`` as a white or black vertical bar, over a gradient."""
    picture = np.zeros((height, width, 3), np.uint8)
    picture[..., 2] = np.linspace(40, 200, width, dtype=np.uint8)[None, :]  # some chroma detail
    bar = width // BITS
    for bit in range(BITS):
        picture[:, bit * bar:(bit + 1) * bar, :2] = 255 if index >> bit & 1 else 0
    return picture


def frame_index(rgb: np.ndarray) -> int:
    """Read back the index drawn by :func:`index_picture` (any size, any dtype)."""
    width = rgb.shape[1]
    bar = width // BITS
    peak = np.iinfo(rgb.dtype).max
    levels = [rgb[:, k * bar + bar // 4:(k + 1) * bar - bar // 4, 0].mean() / peak for k in range(BITS)]
    return sum(1 << k for k, level in enumerate(levels) if level > 0.5)


_TAGS = {"bt709": ("ITU709", (1, 1, 1, 1)), "bt601": ("ITU601", (6, 6, 6, 1)),
         "untagged": (None, None)}


def write_clip(path: Path, spec: ClipSpec) -> Path:
    """Encode ``spec`` into ``path`` with PyAV (frames, audio, tags, timecode, rotation)."""
    fmt = {"mp4": "mp4", "mov": "mov", "mkv": "matroska"}[spec.container]
    matrix, tags = _TAGS[spec.colour]
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream(spec.codec, rate=spec.rate)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pix_fmt
        if spec.codec == "libx264":
            video.options = {"crf": "12", "preset": "ultrafast" if not spec.bframes else "fast",
                             "bf": str(spec.bframes), "x264-params": "b-adapt=0:scenecut=0",
                             "g": "8"}
        if tags:
            ctx = video.codec_context
            ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = tags
        time_base = Fraction(1, 90000) if spec.vfr else 1 / spec.rate
        video.codec_context.time_base = time_base
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        if spec.timecode:
            video.metadata["timecode"] = spec.timecode
        audio = _add_audio(container, spec.audio)
        pts = 0
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(index_picture(i, spec.width, spec.height), format="rgb24")
            frame = frame.reformat(format=spec.pix_fmt, dst_colorspace=matrix or "ITU601",
                                   dst_color_range="MPEG")
            frame.pts, frame.time_base = pts, time_base
            pts += _duration(i, spec, time_base)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            _write_tone(container, audio, seconds=pts * time_base)
    return path


def _duration(i: int, spec: ClipSpec, time_base: Fraction) -> int:
    period = 1 / (spec.rate * time_base)
    return int(period * (Fraction(3, 2) if spec.vfr and i % 3 == 2 else 1))


def _add_audio(container: av.container.OutputContainer, kind: str | None) -> av.audio.stream.AudioStream | None:
    if kind is None:
        return None
    codec = {"aac": "aac", "pcm": "pcm_s16le"}[kind]
    return container.add_stream(codec, rate=48000, layout="stereo")


def _write_tone(container: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                seconds: Fraction) -> None:
    """A 440 Hz tone rising to 880 Hz, as long as the video."""
    total = int(seconds * 48000)
    t = np.arange(total) / 48000
    wave = (0.3 * np.sin(2 * np.pi * (440 + 220 * t / max(float(seconds), 1e-3)) * t) * 32767).astype(np.int16)
    for start in range(0, total, 1024):
        chunk = wave[start:start + 1024]
        frame = av.AudioFrame.from_ndarray(np.repeat(chunk, 2)[None, :], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_clip(**spec) -> Path``: a cached synthetic clip (same spec, same file)."""
    folder = tmp_path_factory.mktemp("clips")
    made: dict[ClipSpec, Path] = {}

    def make(**fields: object) -> Path:
        spec = ClipSpec(**fields)
        if spec not in made:
            made[spec] = write_clip(folder / f"clip{len(made)}.{spec.container}", spec)
        return made[spec]

    return make
