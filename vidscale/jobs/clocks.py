"""Ranges and rates of ``vidscale timeline``: an edit's times as a file's frames, and back.

Times in an edit are timecode-based (a clip starting at 01:00:00:00 of a file whose first frame
is 01:00:00:00 uses its frame 0): OTIO values at the media's timecode rate are timecode frame
counts (drop-frame already counted out, like :func:`~vidscale.media.timecode.timecode_to_frames`),
so a frame of the file is ``value - timecode_frames(file start)``, exactly, at 23.976, 25,
29.97 DF and 59.94. Rates are compared by their timecode (nominal) rate: 23.976 media in an edit
counted at 24 is the same count, as every NLE treats it.

A clip may count its in and out at another rate than its file's (an FCP 7 clipitem with timebase
15 over a 30 fps file): its times are converted through time, at the ratio of the nominal rates
(15 -> 30: twice the value). The conversion must land on whole frames of the file (a 15 fps in
point always does on a 30 fps file; a 30 fps in point of 7 on a 15 fps file is frame 3.5 and is
refused), because the output must start exactly where the edit's first frame is.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import InputError, InvalidMediaError
from ..media import VideoInfo
from ..media.timecode import nominal_rate, timecode_to_frames

Span = tuple[int, int]  # source frames [start, end), end exclusive

# Rates written as decimals that mean NTSC's n * 1000/1001 (what editors type and EDLs imply).
NTSC_NAMES = {"23.976": 24, "23.98": 24, "29.97": 30, "47.952": 48, "47.95": 48, "59.94": 60,
              "119.88": 120}
_EXACT = 1e-6  # how far from a whole frame a converted float time may be (OTIO stores floats)


def parse_rate(text: str) -> Fraction:
    """``25``, ``29.97`` (30000/1001), ``23.976`` or ``30000/1001`` as an exact frame rate."""
    text = text.strip().lower().removesuffix("fps").strip()
    if text in NTSC_NAMES:
        return Fraction(NTSC_NAMES[text] * 1000, 1001)
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"{text!r} is not a frame rate; give one like 24, 25, 29.97 or 30000/1001") from None
    if not 1 <= rate <= 240:
        raise InputError(f"{text!r} is not a frame rate between 1 and 240 fps")
    return rate


def with_handles(span: Span, handles: int, frame_count: int) -> Span:
    """``span`` widened by ``handles`` frames each side, clamped to the file's frames."""
    return max(0, span[0] - handles), min(frame_count, span[1] + handles)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Sorted spans, those that overlap or touch (``a.end == b.start``) merged into one."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


@dataclass(frozen=True)
class MediaClock:
    """Converts an edit's times to one file's frame indices and back.

    ``origin`` is the file's first frame as a timecode frame count at ``rate``.
    """

    path: Path
    rate: Fraction
    origin: int

    def frames(self, value: Any, what: str = "time") -> int:
        """A RationalTime (a start or a duration) as frames of this file, exactly."""
        counted = nominal_rate(Fraction(value.rate).limit_denominator(1001))
        frames = value.value * Fraction(nominal_rate(self.rate), counted)
        whole = round(frames)
        if abs(frames - whole) > _EXACT:
            raise InvalidMediaError(
                f"{self.path}: the edit counts this clip at {value.rate:g} fps over a file at "
                f"{float(self.rate):g} fps, and its {what} ({value.value:g}) falls between two of "
                f"the file's frames ({float(frames):.2f}); trim the clip to whole frames of the "
                f"file, or relink it to media at {value.rate:g} fps")
        return whole

    def span(self, used: Any) -> Span:
        """A TimeRange of the edit as source frames [start, end)."""
        start = self.frames(used.start_time, "in point") - self.origin
        end = self.frames(used.end_time_exclusive(), "out point") - self.origin
        return start, end

    def time_range(self, span: Span, rate: float) -> Any:
        """Source frames [start, end) as an OTIO TimeRange at ``rate`` (the file's own rate,
        or the edit's way of writing it)."""
        from .edits import import_otio

        otio = import_otio()
        start, end = span
        return otio.opentime.TimeRange(otio.opentime.RationalTime(self.origin + start, rate),
                                       otio.opentime.RationalTime(end - start, rate))


def media_clock(info: VideoInfo, reference: Any) -> MediaClock:
    """The file's clock: its timecode, else its reference's available range start, else 0."""
    if info.timecode:
        origin = timecode_to_frames(info.timecode, info.frame_rate)
    elif reference is not None and reference.available_range is not None:
        origin = MediaClock(info.path, info.frame_rate, 0).frames(
            reference.available_range.start_time, "media start")
    else:
        origin = 0
    return MediaClock(info.path, info.frame_rate, origin)


def same_count(edit_rate: float, file_rate: Fraction) -> bool:
    """Whether the edit counts frames as the file does (same timecode rate)."""
    return nominal_rate(Fraction(edit_rate).limit_denominator(1001)) == nominal_rate(file_rate)
