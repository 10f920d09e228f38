"""The output codec table: FFmpeg encoder, options, pixel format and container per codec name.

Facts (see the project's media reference): ``prores_ks`` takes its profile as an encoder OPTION
(its generic ``profile`` field is ignored) and Apple's own files carry ``vendor=apl0``; ProRes
proxy..HQ are 4:2:2 10-bit and 4444/XQ 4:4:4 10-bit, in MOV. H.264/H.265 are 4:2:0 in MP4 with
``movflags=+faststart`` (the index before the data, so players start at once); Apple players
want H.265 tagged ``hvc1``. MP4 cannot carry PCM audio, which is transcoded to AAC there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError
from ..settings import Codec, OutputSettings


@dataclass(frozen=True)
class ContainerSpec:
    """A muxer, its options and the audio codecs it can take packet-for-packet."""

    format: str  # FFmpeg muxer name
    suffixes: tuple[str, ...]  # file name endings that select it; the first is the default
    options: dict[str, str] = field(default_factory=dict)
    audio_copy: frozenset[str] = frozenset()


_COMPRESSED_AUDIO = frozenset({"aac", "alac", "mp3", "ac3", "eac3"})
_PCM = frozenset({"pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le", "pcm_s32be",
                  "pcm_f32le", "pcm_f32be"})

MOV = ContainerSpec("mov", (".mov",), {}, _COMPRESSED_AUDIO | _PCM)
MP4 = ContainerSpec("mp4", (".mp4", ".m4v"), {"movflags": "+faststart"}, _COMPRESSED_AUDIO)


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
