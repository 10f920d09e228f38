"""Colour tags by FFmpeg's names, and which matrix and range a conversion must use.

FFmpeg stores colour as integers (``AVColorPrimaries``, ``AVColorTransferCharacteristic``,
``AVColorSpace``, ``AVColorRange``); users, ffprobe and editing apps speak of them by name
("bt709", "smpte170m", "tv"). :class:`ColorTags` keeps the names; ``None`` means unspecified.

Conversions never rely on swscale's defaults (BT.601, limited range, for any frame size):

* reading (YUV -> RGB) uses the source's matrix; an untagged clip conventionally means BT.709
  when it is HD (wider than 1024 or taller than 576) and BT.601 when it is SD;
* writing (RGB or YUV -> the encoder's YUV) uses :func:`output_tags`: the source's tags where it
  has them, BT.709 and limited ("tv") range where it does not, so every output is fully tagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from av.video.reformatter import ColorRange, Colorspace

# FFmpeg's av_color_*_name() tables (libavutil/pixdesc.c); value 2 is "unspecified" in each.
PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
             14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
SPACES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
          8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
          13: "chroma-derived-c", 14: "ictcp"}
RANGES = {1: "tv", 2: "pc"}

# The YUV matrices swscale can convert from and to (everything else is read by convention).
SWS_MATRIX = {"bt709": Colorspace.ITU709, "bt470bg": Colorspace.ITU601,
              "smpte170m": Colorspace.ITU601, "smpte240m": Colorspace.SMPTE240M,
              "fcc": Colorspace.FCC, "bt2020nc": Colorspace.BT2020, "bt2020c": Colorspace.BT2020}
SWS_RANGE = {"tv": ColorRange.MPEG, "pc": ColorRange.JPEG}


def _name(table: dict[int, str], value: int | None) -> str | None:
    return table.get(value) if value is not None else None


def _code(table: dict[int, str], name: str | None) -> int:
    """The FFmpeg integer for ``name``; 2 (unspecified) for None, 0 (unspecified) for ranges."""
    if name is None:
        return 0 if table is RANGES else 2
    return next(code for code, known in table.items() if known == name)


@dataclass(frozen=True)
class ColorTags:
    """A stream's colour description by FFmpeg's names; None = unspecified."""

    primaries: str | None = None
    trc: str | None = None
    space: str | None = None
    range: str | None = None

    @classmethod
    def of(cls, holder: Any) -> "ColorTags":
        """Read the tags of a codec context or a frame (both carry FFmpeg's four integers)."""
        return cls(primaries=_name(PRIMARIES, holder.color_primaries),
                   trc=_name(TRANSFERS, holder.color_trc),
                   space=_name(SPACES, holder.colorspace),
                   range=_name(RANGES, holder.color_range))

    def or_else(self, other: "ColorTags") -> "ColorTags":
        """Each unspecified field taken from ``other``."""
        return ColorTags(primaries=self.primaries or other.primaries, trc=self.trc or other.trc,
                         space=self.space or other.space, range=self.range or other.range)

    def apply(self, holder: Any) -> None:
        """Set the four integers on a codec context or a frame (unspecified stays unspecified)."""
        holder.color_primaries = _code(PRIMARIES, self.primaries)
        holder.color_trc = _code(TRANSFERS, self.trc)
        holder.colorspace = _code(SPACES, self.space)
        holder.color_range = _code(RANGES, self.range)

    def to_dict(self) -> dict[str, str | None]:
        return {"primaries": self.primaries, "trc": self.trc, "space": self.space,
                "range": self.range}

    def describe(self) -> str:
        """``bt709/bt709/bt709 tv`` (primaries/transfer/matrix range), ``-`` for unspecified."""
        names = [self.primaries, self.trc, self.space]
        return "/".join(n or "-" for n in names) + f" {self.range or '-'}"


BT709 = ColorTags(primaries="bt709", trc="bt709", space="bt709", range="tv")


def is_hd(width: int, height: int) -> bool:
    """The size rule players use for untagged video: HD is BT.709, SD is BT.601."""
    return width > 1024 or height > 576


def reading_matrix(tags: ColorTags, width: int, height: int) -> str:
    """The matrix the pixels were made with: the tag, or the size convention when untagged."""
    if tags.space in SWS_MATRIX:
        return tags.space
    return "bt709" if is_hd(width, height) else "smpte170m"


def resolved(tags: ColorTags, width: int, height: int) -> ColorTags:
    """``tags`` with the matrix and range a reader must assume filled in (limited range default)."""
    return ColorTags(primaries=tags.primaries, trc=tags.trc,
                     space=reading_matrix(tags, width, height), range=tags.range or "tv")


def output_tags(source: ColorTags | None) -> ColorTags:
    """Fully specified tags for an output: the source's, with BT.709 / tv for what it lacks.

    An untagged source was read with its conventional matrix (see :func:`reading_matrix`), so
    its RGB is right; the output is converted to, and tagged as, BT.709. A matrix swscale cannot
    produce (YCgCo, ICtCp, ...) is replaced the same way.
    """
    tags = (source or ColorTags()).or_else(BT709)
    if tags.space not in SWS_MATRIX:
        tags = ColorTags(primaries=tags.primaries, trc=tags.trc, space="bt709", range=tags.range)
    return tags
