"""Detail mattes: a black-and-white (or alpha) clip or one still image, read as coverage in [0, 1].

A matte says where FreeScale may invent detail (white) and where it should stay close to the
source (black). A still image (PNG, JPEG, ..., through FFmpeg's image demuxers) covers every
frame of the clip. A matte clip is matched to the clip frame by frame in time: it must have the
clip's frame count and frame rate, so that frame ``i`` of both is shown at the same time from
each file's start. Anything else is refused with both descriptions, never stretched or dropped
silently (a matte drifting by a frame puts detail on the wrong side of a moving edge).

The alpha channel is the coverage when the matte has one (a key pulled in a compositor),
otherwise its brightness. Mattes are shrunk with area averaging straight to the size asked for
(the latent grid, 8 pixels a cell): a cell half covered gets half.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from .probe import VideoInfo, open_input, probe, video_stream
from .read import decode_frames, to_rgb


@dataclass(frozen=True)
class Matte:
    """A matte checked against one clip: a still (``info`` None) or a clip of the same timing."""

    path: Path
    info: VideoInfo | None


def _is_still(path: Path) -> bool:
    with open_input(path) as container:
        name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def open_matte(path: Path | str, clip: VideoInfo) -> Matte:
    """Check ``path`` against ``clip``; an InputError (exit 2) names both when they do not match."""
    path = Path(path)
    if _is_still(path):
        return Matte(path, None)
    info = probe(path)
    if info.frame_count != clip.frame_count or info.frame_rate != clip.frame_rate:
        raise InputError(
            f"detail mask {path.name} has {info.frame_count} frames at {info.frame_rate} fps; "
            f"{clip.path.name} has {clip.frame_count} frames at {clip.frame_rate} fps "
            "(give a matte of the same length and rate, or one still image)")
    return Matte(path, info)


def read_matte(matte: Matte, start: int, end: int, size: tuple[int, int]) -> np.ndarray:
    """Coverage of clip frames ``start .. end`` at ``size`` (width, height): (F, h, w) float32.

    A still gives one frame, (1, h, w), for all of them.
    """
    if matte.info is None:
        with open_input(matte.path) as container:
            frame = next(container.decode(video_stream(container, matte.path)))
            return _coverage(frame, size)[None]
    return np.stack([_coverage(frame, size) for frame in decode_frames(matte.info, start, end)])


def _coverage(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    if any(component.is_alpha for component in frame.format.components):
        plane = frame.reformat(format="rgba").to_ndarray()[..., 3]
    else:
        plane = np.round(to_rgb(frame).mean(axis=2)).astype(np.uint8)
    small = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane, dtype=np.uint8), format="gray")
    width, height = size
    small = small.reformat(width=width, height=height, interpolation="AREA")
    return small.to_ndarray().astype(np.float32) / 255.0
