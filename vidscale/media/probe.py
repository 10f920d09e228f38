"""``probe(path)``: what a clip really is, read with PyAV, checked by decoding its first frame.

Containers often lie or stay silent about the frame count (Matroska has none, a cut file keeps
its old number), so the count and the frame timing come from the packets themselves: the sample
index of MOV/MP4 (read from the ``moov`` atom, no media data touched, checked against the file
size) or, for every other container, a demux of the video stream (no decoding). From their
timestamps come the exact frame rate, the duration and whether the clip is variable frame rate.
The first frame is decoded too: it proves the clip is readable and carries the display matrix
(rotation) that FFmpeg attaches to frames.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import InvalidMediaError, MediaNotFoundError
from .colour import ColorTags
from .timecode import timecode_to_frames

# ``--frames``: (START, END), END exclusive and None for the clip's end; either may be a timecode.
FrameSelection = tuple[int | str, int | str | None]

# A frame interval may differ from the nominal one by a rounding tick (29.97 fps stored in
# milliseconds alternates 33 and 34) plus this share before the clip counts as variable rate.
_VFR_TOLERANCE = 0.005


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream: what the writer copies (or transcodes) into the output."""

    index: int  # stream index in the container
    codec: str
    sample_rate: int
    channels: int
    layout: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "codec": self.codec, "sample_rate": self.sample_rate,
                "channels": self.channels, "layout": self.layout}


@dataclass(frozen=True)
class VideoInfo:
    """A clip's video stream as vidscale reads it. Sizes are the stored (coded) picture's."""

    path: Path
    format: str  # FFmpeg demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    width: int
    height: int
    sample_aspect_ratio: Fraction
    rotation: int  # display matrix, degrees counter-clockwise (90: shown turned left)
    frame_rate: Fraction  # exact (30000/1001); the mean rate when vfr
    time_base: Fraction  # of the stream: frame pts are counted in it
    frame_count: int
    duration: float  # seconds
    vfr: bool
    pix_fmt: str
    bit_depth: int
    color: ColorTags
    timecode: str | None
    audio: tuple[AudioStreamInfo, ...]
    stream_index: int
    start_pts: int  # pts of the first frame in display order (time_base units)

    @property
    def start_time(self) -> Fraction:
        """Seconds on the container's clock where the first frame is shown."""
        return self.start_pts * self.time_base

    def frame_range(self, frames: FrameSelection | None) -> tuple[int, int]:
        """Resolve ``START:END`` (END exclusive, None = to the end) against this clip; either end
        may be a timecode (``01:00:00:00``, ``;`` for drop-frame), counted from this clip's start
        timecode at its rate."""
        first, last = frames or (0, None)
        start = self.frame_number(first)
        end = self.frame_count if last is None else min(self.frame_number(last), self.frame_count)
        if start < 0 or start >= end:
            raise InvalidMediaError(f"{self.path}: frames {start}:{end} select nothing "
                                    f"(the clip has {self.frame_count} frames)")
        return start, end

    def frame_number(self, value: int | str) -> int:
        """A frame number, or a timecode as the frame of this clip that shows it."""
        if not isinstance(value, str):
            return value
        if not self.timecode:
            raise InvalidMediaError(f"{self.path}: --frames {value} is a timecode, but the clip carries none; "
                                    "give frame numbers (START:END)")
        return timecode_to_frames(value, self.frame_rate) - timecode_to_frames(self.timecode, self.frame_rate)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: fractions as "30000/1001" strings, the path as a string."""
        return {
            "path": str(self.path), "format": self.format, "codec": self.codec,
            "width": self.width, "height": self.height,
            "sample_aspect_ratio": _ratio(self.sample_aspect_ratio), "rotation": self.rotation,
            "frame_rate": _ratio(self.frame_rate), "time_base": _ratio(self.time_base),
            "frame_count": self.frame_count, "duration": round(self.duration, 6), "vfr": self.vfr,
            "pix_fmt": self.pix_fmt, "bit_depth": self.bit_depth, "color": self.color.to_dict(),
            "timecode": self.timecode, "audio": [a.to_dict() for a in self.audio],
            "stream_index": self.stream_index, "start_pts": self.start_pts,
        }

    def describe(self) -> str:
        """A few lines for people: picture, timing, colour, timecode, audio."""
        rate = f"{_ratio(self.frame_rate)} fps ({float(self.frame_rate):.3f}{', VFR' if self.vfr else ''})"
        sar = "" if self.sample_aspect_ratio == 1 else f" SAR {_ratio(self.sample_aspect_ratio)}"
        lines = [
            f"{self.path}",
            f"  video   {self.codec} {self.width}x{self.height}{sar}, {self.pix_fmt} "
            f"({self.bit_depth}-bit), in {self.format.split(',')[0]}",
            f"  timing  {rate}, {self.frame_count} frames, {self.duration:.3f} s",
            f"  colour  {self.color.describe()} (primaries/transfer/matrix range)",
        ]
        if self.rotation:
            lines.append(f"  rotate  {self.rotation} degrees (display matrix)")
        if self.timecode:
            lines.append(f"  tc      {self.timecode}")
        lines += [f"  audio   #{a.index} {a.codec} {a.sample_rate} Hz {a.layout}" for a in self.audio]
        return "\n".join(lines)


def _ratio(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def not_readable(path: Path, exc: BaseException) -> InvalidMediaError:
    """The one-line error for a file FFmpeg cannot read, with FFmpeg's reason."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return InvalidMediaError(f"{path}: not a readable video ({' '.join(reason.split())})")


def open_input(path: Path) -> av.container.InputContainer:
    """``av.open`` with vidscale's errors: missing file, folder, not media."""
    path = Path(path)
    if not path.exists():
        raise MediaNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise InvalidMediaError(f"{path}: is a folder, not a video file")
    try:
        return av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise not_readable(path, exc) from None


def video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first real video stream (cover art in audio files does not count)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise InvalidMediaError(f"{path}: has no video frames (no video stream; audio only?)")


def probe(path: Path | str) -> VideoInfo:
    """Read ``path``'s video stream facts; raise a one-line error when it is not a usable video."""
    path = Path(path)
    with open_input(path) as container:
        try:
            return _probe(container, path)
        except (av.FFmpegError, OSError, EOFError) as exc:
            raise not_readable(path, exc) from None


def _probe(container: av.container.InputContainer, path: Path) -> VideoInfo:
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise InvalidMediaError(f"{path}: is a still image ({container.format.name}), not a video")
    stream = video_stream(container, path)
    count, stamps, first = _timeline(container, stream, path)
    if not count or first is None:
        raise InvalidMediaError(f"{path}: has no video frames (the video stream is empty "
                                "or none of its frames could be decoded)")
    time_base = stream.time_base or Fraction(1, 90000)
    rate, vfr, duration = _timing(stream, count, stamps, time_base)
    context = stream.codec_context
    pix_fmt = first.format.name
    return VideoInfo(
        path=path, format=container.format.name, codec=context.codec.canonical_name,
        width=first.width, height=first.height,
        sample_aspect_ratio=context.sample_aspect_ratio or Fraction(1),
        rotation=int(first.rotation), frame_rate=rate, time_base=time_base, frame_count=count,
        duration=float(duration), vfr=vfr, pix_fmt=pix_fmt,
        bit_depth=av.VideoFormat(pix_fmt).components[0].bits,
        color=ColorTags.of(context).or_else(ColorTags.of(first)),
        timecode=_timecode(container, stream), audio=_audio_streams(container),
        stream_index=stream.index,
        start_pts=first.pts if first.pts is not None else (stamps or [0])[0],
    )


def _timeline(container: av.container.InputContainer, stream: Any,
              path: Path) -> tuple[int, list[int], av.VideoFrame | None]:
    """(frame count, sorted frame timestamps, first decoded frame).

    MOV/MP4 answer from their sample index after decoding one frame; other containers are
    demuxed to the end (packets only: no decoding past the first frame).
    """
    indexed = _indexed_timestamps(container, stream, path)
    count, stamps, first = 0, [], None
    for packet in container.demux(stream):
        if first is None:
            first = next(iter(packet.decode()), None)
        if indexed is not None and first is not None:
            break
        if packet.size and not packet.is_discard:
            count += 1
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:
                stamps.append(stamp)
    if first is None and count:  # a frame still held by the decoder (reordering delay)
        first = next(iter(stream.codec_context.decode(None)), None)
    if indexed is not None:
        return len(indexed), indexed, first
    return count, sorted(stamps), first


def _indexed_timestamps(container: av.container.InputContainer, stream: Any,
                        path: Path) -> list[int] | None:
    """MOV/MP4 sample timestamps (decode order) from the index; None for other containers."""
    if not container.format.name.startswith("mov") or not stream.frames:
        return None
    entries = [e for e in stream.index_entries if not e.is_discard]
    size = os.path.getsize(path)
    end = max((e.pos + e.size for e in entries), default=0)
    if end > size:
        raise InvalidMediaError(f"{path}: not a readable video (truncated: its index points "
                                f"{end - size} bytes past the end of the file)")
    return sorted(e.timestamp for e in entries)


def _timing(stream: Any, count: int, stamps: list[int],
            time_base: Fraction) -> tuple[Fraction, bool, Fraction]:
    """(frame rate, variable rate?, duration in seconds) from the frames' timestamps.

    The container's nominal rate is kept when the timestamps agree with it (so 30000/1001
    stored in milliseconds stays 30000/1001); a variable-rate clip reports its mean rate.
    """
    nominal = Fraction(stream.base_rate or stream.average_rate or 0)
    deltas = [b - a for a, b in zip(stamps, stamps[1:])]
    if not deltas:
        rate = nominal or Fraction(25)
        return rate, False, count / rate
    typical = Fraction(statistics.median(deltas))
    tolerance = 1 + _VFR_TOLERANCE * typical
    if not nominal or abs(1 / (nominal * time_base) - typical) > tolerance:
        nominal = 1 / (typical * time_base)  # the container's rate disagrees with its frames
    period = 1 / (nominal * time_base)
    if all(abs(d - period) <= tolerance for d in deltas):
        return nominal, False, count / nominal
    duration = (stamps[-1] - stamps[0] + typical) * time_base
    return count / duration, True, duration


def _timecode(container: av.container.InputContainer, stream: Any) -> str | None:
    """The start timecode: on the video stream, a tmcd data stream, or the container."""
    for holder in (stream, *container.streams.data, container):
        timecode = holder.metadata.get("timecode")
        if timecode:
            return timecode
    return None


def audio_codec(stream: av.audio.stream.AudioStream) -> str:
    """FFmpeg's codec descriptor name (``mp3``, ``pcm_s24be``): what the stream IS, whichever
    decoder reads it (FFmpeg decodes MP3 with ``mp3float``, the codec context's name)."""
    return stream.codec_context.codec.canonical_name


def _audio_streams(container: av.container.InputContainer) -> tuple[AudioStreamInfo, ...]:
    return tuple(
        AudioStreamInfo(index=a.index, codec=audio_codec(a), sample_rate=a.rate or 0,
                        channels=a.channels, layout=a.layout.name)
        for a in container.streams.audio
    )
