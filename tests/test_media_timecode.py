"""SMPTE timecode shifting, non-drop and drop-frame."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vidscale.errors import InvalidMediaError
from vidscale.media.timecode import frames_to_timecode, shift_timecode, timecode_to_frames

NTSC, NTSC60, FILM, PAL = Fraction(30000, 1001), Fraction(60000, 1001), Fraction(24000, 1001), Fraction(25)


@pytest.mark.parametrize("timecode, frames, rate, expected", [
    ("01:00:00:00", 5, NTSC, "01:00:00:05"),
    ("01:00:00:00", 30, NTSC, "01:00:01:00"),  # non-drop counts 30 per second at 29.97
    ("00:59:59:23", 1, FILM, "01:00:00:00"),
    ("23:59:59:24", 1, PAL, "00:00:00:00"),  # wraps at 24 hours
    ("00:00:59;29", 1, NTSC, "00:01:00;02"),  # drop-frame skips ;00 and ;01 each minute
    ("00:09:59;29", 1, NTSC, "00:10:00;00"),  # ... except every tenth minute
    ("00:00:00;00", 17982, NTSC, "00:10:00;00"),  # 10 drop-frame minutes = 17982 frames
    ("00:00:59;59", 1, NTSC60, "00:01:00;04"),  # 59.94 drops four
])
def test_shift(timecode, frames, rate, expected):
    assert shift_timecode(timecode, frames, rate) == expected


def test_drop_frame_round_trips_every_frame_of_an_hour_edge():
    for count in range(107892 - 40, 107892 + 40):  # around 01:00:00;00
        assert timecode_to_frames(frames_to_timecode(count, NTSC, drop_frame=True), NTSC) == count
    assert frames_to_timecode(107892, NTSC, drop_frame=True) == "01:00:00;00"


def test_malformed_timecode_is_refused():
    with pytest.raises(InvalidMediaError, match="HH:MM:SS:FF"):
        shift_timecode("1 hour", 1, PAL)
