"""SMPTE timecode arithmetic: shifting a clip's start timecode by the frames a trim removed.

Timecode counts whole frames at the nominal rate (24 for 24000/1001, 30 for 30000/1001).
Drop-frame timecode (``;`` before the frames, 29.97 and 59.94 only) skips frame numbers 0-1
(0-3 at 59.94) at the start of every minute except every tenth minute, so that the displayed
time stays close to the wall clock. A shifted timecode keeps its separator style.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ..errors import InvalidMediaError

_TIMECODE = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})([:;.,])(\d{2,3})$")
_DAY = 24 * 3600


def nominal_rate(frame_rate: Fraction) -> int:
    """Timecode frames per second: the frame rate rounded (23.976 -> 24, 29.97 -> 30)."""
    return max(1, round(frame_rate))


def _drop_count(frame_rate: Fraction) -> int:
    """Frame numbers dropped per minute for drop-frame timecode at this rate."""
    return {Fraction(30000, 1001): 2, Fraction(60000, 1001): 4}.get(Fraction(frame_rate), 0)


def _is_drop_frame(timecode: str) -> bool:
    """SMPTE writes drop-frame with ``;`` (or ``,``) before the frames."""
    return ";" in timecode or "," in timecode


def timecode_to_frames(timecode: str, frame_rate: Fraction) -> int:
    """Frames since 00:00:00:00 for ``HH:MM:SS:FF`` (``;`` = drop-frame)."""
    match = _TIMECODE.match(timecode.strip())
    if not match:
        raise InvalidMediaError(f"timecode {timecode!r} is not HH:MM:SS:FF")
    hours, minutes, seconds, _, frames = match.groups()
    fps = nominal_rate(frame_rate)
    total = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * fps + int(frames)
    drop = _drop_count(frame_rate) if _is_drop_frame(timecode) else 0
    if drop:
        all_minutes = int(hours) * 60 + int(minutes)
        total -= drop * (all_minutes - all_minutes // 10)
    return total


def frames_to_timecode(count: int, frame_rate: Fraction, *, drop_frame: bool = False) -> str:
    """``HH:MM:SS:FF`` (``;`` for drop-frame) for a frame count, wrapping at 24 hours."""
    fps = nominal_rate(frame_rate)
    drop = _drop_count(frame_rate) if drop_frame else 0
    if drop:
        per_minute = fps * 60 - drop
        per_ten = per_minute * 10 + drop
        tens, rest = divmod(count, per_ten)
        count += drop * 9 * tens + (drop * ((rest - drop) // per_minute) if rest > drop else 0)
    count %= _DAY * fps
    seconds, frames = divmod(count, fps)
    separator = ";" if drop else ":"
    return (f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            f"{separator}{frames:02d}")


def shift_timecode(timecode: str, frames: int, frame_rate: Fraction) -> str:
    """The timecode ``frames`` frames later (what the first kept frame of a trim shows)."""
    drop_frame = _drop_count(frame_rate) > 0 and _is_drop_frame(timecode)
    start = timecode_to_frames(timecode, frame_rate)
    return frames_to_timecode(start + frames, frame_rate, drop_frame=drop_frame)
