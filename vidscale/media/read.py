"""Exact frames: decoded in display order, numbered by that order, converted with the right matrix.

Frame ``i`` is the ``i``-th frame the decoder outputs (display order), whatever the container's
timestamps say, so B-frames and negative DTS cannot shift a range. Starting past frame 0 seeks to
a keyframe before the wanted frame and numbers frames from their timestamps; that is exact only
for constant-rate clips (:attr:`VideoInfo.vfr` false), so variable-rate clips are decoded from
their first frame. If a seek lands too late (reordered frames live before their keyframe), it
retries further back, then falls back to decoding from the start.

Memory is bounded by one chunk: frames stream out ``chunk_frames`` at a time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import av
import numpy as np

from ..errors import InvalidMediaError
from .colour import SWS_MATRIX, SWS_RANGE, ColorTags, reading_matrix, resolved
from .probe import VideoInfo, not_readable, open_input, probe, video_stream

PixelFormat = Literal["rgb24", "rgb48le"]
_SEEK_MARGINS = (0, 16, 64, 256)  # frames before the target to seek to, tried in turn


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive frames ``start .. start + len(frames)`` of a clip, as RGB."""

    start: int  # index of frames[0] in display order
    frames: np.ndarray  # (N, H, W, 3) uint8 for rgb24, uint16 for rgb48le
    pts: tuple[int, ...]  # each frame's pts in the source stream's time_base
    time_base: Fraction


def decode_frames(source: Path | str | VideoInfo, start: int = 0,
                  end: int | None = None) -> Iterator[av.VideoFrame]:
    """Decoded frames ``start .. end`` (end exclusive) in display order, as PyAV frames.

    Each frame's colour tags are completed with what the source implies (matrix by the size
    convention when untagged, limited range by default), so converting a frame by its own tags
    is right. Pass a :class:`VideoInfo` to skip probing (only needed when ``start`` > 0).
    """
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"frame range {start}:{end} is empty or negative")
    info = source if isinstance(source, VideoInfo) else (probe(source) if start else None)
    path = source.path if isinstance(source, VideoInfo) else Path(source)
    for index, frame in _numbered_frames(path, info, start):
        if end is not None and index >= end:
            return
        if index >= start:
            resolved(ColorTags.of(frame), frame.width, frame.height).apply(frame)
            yield frame


def read_frames(source: Path | str | VideoInfo, start: int = 0, end: int | None = None, *,
                batch_frames: int = 16, pixel_format: PixelFormat = "rgb24") -> Iterator[FrameBatch]:
    """Frames ``start .. end`` (end exclusive) as RGB arrays, ``batch_frames`` at a time (a read
    batch: how many frames are decoded at once, nothing to do with a denoising chunk).

    YUV is converted with the frame's matrix and range (see :func:`decode_frames`); ``rgb48le``
    keeps 10-bit and 12-bit sources' precision as uint16.
    """
    if batch_frames < 1:
        raise ValueError("batch_frames must be at least 1")
    batch: list[np.ndarray] = []
    pts: list[int] = []
    first = start
    time_base = Fraction(1)
    for frame in decode_frames(source, start, end):
        batch.append(to_rgb(frame, pixel_format))
        pts.append(frame.pts if frame.pts is not None else 0)
        time_base = frame.time_base or time_base
        if len(batch) == batch_frames:
            yield FrameBatch(first, np.stack(batch), tuple(pts), time_base)
            first += len(batch)
            batch, pts = [], []
    if batch:
        yield FrameBatch(first, np.stack(batch), tuple(pts), time_base)


def to_rgb(frame: av.VideoFrame, pixel_format: PixelFormat = "rgb24") -> np.ndarray:
    """(H, W, 3) RGB of a frame, converted with its own matrix and range (or the conventions)."""
    if frame.format.is_rgb:
        return frame.reformat(format=pixel_format).to_ndarray()
    tags = ColorTags.of(frame)
    rgb = frame.reformat(format=pixel_format,
                         src_colorspace=SWS_MATRIX[reading_matrix(tags, frame.width, frame.height)],
                         src_color_range=SWS_RANGE[tags.range or "tv"],
                         dst_color_range=SWS_RANGE["pc"])
    return rgb.to_ndarray()


@contextmanager
def _decoding(path: Path) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The opened clip and its video stream, with threaded decoding and vidscale's errors."""
    with open_input(path) as container:
        stream = video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            yield container, stream
        except (av.FFmpegError, OSError, EOFError) as exc:
            raise not_readable(path, exc) from None


def _numbered_frames(path: Path, info: VideoInfo | None,
                     start: int) -> Iterator[tuple[int, av.VideoFrame]]:
    """(display index, frame) from a keyframe at or before ``start`` when a seek is exact,
    else every frame from the first."""
    if info is not None:
        for target in _seek_targets(info, start):
            with _decoding(path) as (container, stream):
                period = 1 / (info.frame_rate * info.time_base)  # ticks per frame
                container.seek(info.start_pts + round(target * period), backward=True,
                               any_frame=False, stream=stream)
                frames = container.decode(stream)
                first = next(frames, None)
                if first is None or first.pts is None:
                    break
                if _index(first, info, period) <= start:
                    yield _index(first, info, period), first
                    for frame in frames:
                        yield _index(frame, info, period), frame
                    return
    with _decoding(path) as (container, stream):
        yield from enumerate(container.decode(stream))


def _seek_targets(info: VideoInfo, start: int) -> list[int]:
    """Frames to seek to, nearest first; none when only decoding from the start is exact."""
    if info.vfr or start == 0:
        return []
    return [start - margin for margin in _SEEK_MARGINS if start - margin > 0]


def _index(frame: av.VideoFrame, info: VideoInfo, period: Fraction) -> int:
    """A frame's display index on a constant-rate clip, from its timestamp."""
    if frame.pts is None:
        raise InvalidMediaError(f"{info.path}: a frame has no timestamp after a seek")
    return round((frame.pts - info.start_pts) / period)
