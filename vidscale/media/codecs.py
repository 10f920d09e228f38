"""The output codec table: FFmpeg encoder, options, pixel format and container per codec name.

Facts (docs/DESIGN.md, "Media"): ``prores_ks`` takes its profile as an encoder OPTION
(its generic ``profile`` field is ignored) and Apple's own files carry ``vendor=apl0``; ProRes
proxy..HQ are 4:2:2 10-bit and 4444/XQ 4:4:4 10-bit, in MOV. H.264/H.265 are 4:2:0 in MP4 with
``movflags=+faststart`` (the index before the data, so players start at once); Apple players
want H.265 tagged ``hvc1``. What each container does with each source audio codec is its
``audio`` table below (:class:`AudioRule`), one reason per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import OutputError
from ..settings import Codec, OutputSettings


@dataclass(frozen=True)
class AudioRule:
    """What one source audio codec becomes in one output container, and why.

    ``copy`` muxes the packets untouched; ``aac`` transcodes (lossy stays lossy, at AAC's
    default rate); ``pcm`` decodes a lossless codec to PCM of its sample depth (16-bit formats to
    ``pcm_s16le``, wider ones to ``pcm_s24le``: FLAC above 24 bits, which is rare, would lose its
    lowest bits), so it stays lossless.
    """

    action: Literal["copy", "aac", "pcm"]
    reason: str


@dataclass(frozen=True)
class ContainerSpec:
    """A muxer, its options and its :class:`AudioRule` per source audio codec."""

    format: str  # FFmpeg muxer name
    suffixes: tuple[str, ...]  # file name endings that select it; the first is the default
    options: dict[str, str] = field(default_factory=dict)
    audio: dict[str, AudioRule] = field(default_factory=dict)  # codec descriptor name -> rule

    def audio_rule(self, codec: str) -> AudioRule:
        """The rule for ``codec`` (FFmpeg's codec descriptor name, e.g. ``mp3``, never a
        decoder's name such as ``mp3float``); codecs the table does not know become AAC."""
        return self.audio.get(codec, _UNLISTED)


_UNLISTED = AudioRule("aac", "not in the table (DTS, TrueHD, AMR, ...): AAC plays everywhere")

# Facts checked with FFmpeg 8's muxers through PyAV (tests/test_media_audio.py writes each codec
# and reads it back): MOV and MP4 both take AAC, MP3, AC-3, E-AC-3 and ALAC; the mov muxer
# refuses Opus and FLAC ("only supported in MP4") and has no Vorbis tag; the mp4 muxer takes
# Opus, FLAC and (as a private object type) Vorbis, and PCM only as ISO/IEC 23003-5 'ipcm'.
# MOV is the editing master, so it copies what Apple's own frameworks decode (QuickTime, Final
# Cut and the editors built on them); MP4 is the delivery file, so it copies what browsers play.
_PCM_NAMES = ("pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
              "pcm_f32le", "pcm_f32be")
_MOV_AUDIO = {
    "aac": AudioRule("copy", "MOV's native compressed audio ('mp4a')"),
    "mp3": AudioRule("copy", "QuickTime has played MPEG Layer III in MOV ('.mp3') for decades"),
    **{pcm: AudioRule("copy", "uncompressed, what cameras record and every editor reads "
                              "('sowt', 'twos', 'in24', 'in32', 'fl32')") for pcm in _PCM_NAMES},
    "ac3": AudioRule("copy", "Apple decodes AC-3 (macOS 10.2 on); a 5.1 mix stays untouched"),
    "eac3": AudioRule("copy", "Apple decodes E-AC-3 (macOS 10.11 on); a 5.1 mix stays untouched"),
    "alac": AudioRule("copy", "Apple's lossless codec, native to QuickTime"),
    "opus": AudioRule("aac", "FFmpeg's mov muxer refuses Opus and QuickTime does not play it"),
    "flac": AudioRule("pcm", "FFmpeg's mov muxer refuses FLAC; PCM keeps it lossless"),
    "vorbis": AudioRule("aac", "MOV has no Vorbis sample entry"),
}
_MP4_AUDIO = {
    "aac": AudioRule("copy", "MP4's own audio codec ('mp4a')"),
    "mp3": AudioRule("copy", "registered in MP4 ('mp4a', object type 0x6B); every browser plays it"),
    **{pcm: AudioRule("aac", "MP4 PCM ('ipcm', ISO/IEC 23003-5) is read by almost no player")
       for pcm in _PCM_NAMES},
    "ac3": AudioRule("aac", "Chrome and Firefox do not decode Dolby audio: the web file would "
                            "play silent (write .mov to keep AC-3)"),
    "eac3": AudioRule("aac", "Chrome and Firefox do not decode Dolby audio: the web file would "
                             "play silent (write .mov to keep E-AC-3)"),
    "alac": AudioRule("copy", "registered in MP4 ('alac'), Apple's own .m4a layout"),
    "opus": AudioRule("copy", "Opus in ISOBMFF ('Opus'); Chrome, Firefox and Safari 17 on play it"),
    "flac": AudioRule("copy", "FLAC in ISOBMFF ('fLaC'); Chrome and Firefox play it"),
    "vorbis": AudioRule("aac", "no registered MP4 mapping (FFmpeg writes a private object type "
                               "that players ignore)"),
}

MOV = ContainerSpec("mov", (".mov",), {}, _MOV_AUDIO)
MP4 = ContainerSpec("mp4", (".mp4", ".m4v"), {"movflags": "+faststart"}, _MP4_AUDIO)


@dataclass(frozen=True)
class CodecSpec:
    """How one ``output.codec`` name is encoded."""

    encoder: str  # FFmpeg encoder name
    pix_fmt: str
    containers: tuple[ContainerSpec, ...]  # the first is the default
    profile: str | None = None  # prores_ks profile option, 0 (proxy) .. 5 (4444 XQ)
    codec_tag: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def options(self, settings: OutputSettings) -> dict[str, str]:
        """Encoder options for these settings (crf and preset only matter to x264/x265)."""
        if self.encoder == "prores_ks":
            return {"profile": str(self.profile), "vendor": "apl0"}
        return {"crf": str(settings.crf), "preset": settings.x264_preset, **self.extra}

    def container_for(self, output: Path, codec: str) -> ContainerSpec:
        """The container the output's file name asks for; it must be able to carry the codec."""
        suffix = Path(output).suffix.lower()
        for container in self.containers:
            if suffix in container.suffixes:
                return container
        allowed = " or ".join(s for c in self.containers for s in c.suffixes)
        raise OutputError(f"{output}: {codec} is written as {allowed}; rename the output",
                          exit_code=2)


def _prores(profile: int, pix_fmt: str) -> CodecSpec:
    return CodecSpec("prores_ks", pix_fmt, (MOV,), profile=str(profile))


CODECS: dict[str, CodecSpec] = {
    "prores-proxy": _prores(0, "yuv422p10le"),
    "prores-lt": _prores(1, "yuv422p10le"),
    "prores": _prores(2, "yuv422p10le"),
    "prores-hq": _prores(3, "yuv422p10le"),
    "prores-4444": _prores(4, "yuv444p10le"),
    "prores-4444xq": _prores(5, "yuv444p10le"),
    "h264": CodecSpec("libx264", "yuv420p", (MP4, MOV)),
    "h264-10bit": CodecSpec("libx264", "yuv420p10le", (MP4, MOV), extra={"profile": "high10"}),
    "h265": CodecSpec("libx265", "yuv420p", (MP4, MOV), codec_tag="hvc1",
                      extra={"x265-params": "log-level=error"}),
}


def codec_spec(codec: Codec | str) -> CodecSpec:
    """The table entry for ``codec``; an unknown name is a programming error (settings check it)."""
    return CODECS[codec]


def output_suffix(codec: Codec | str) -> str:
    """``.mov`` for ProRes, ``.mp4`` for H.264/H.265: the default output file ending."""
    return CODECS[codec].containers[0].suffixes[0]
