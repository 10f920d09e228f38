"""Source audio into MOV and MP4 outputs: copied packet for packet or transcoded, codec by codec.

Each case synthesises a half-second clip with one audio codec in a container cameras, phones or
encoders put it in, upscales it with the lanczos engine and reads the output back with ffprobe.
The expected results are written out here, apart from the table in vidscale/media/codecs.py.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import ffmpeg
import numpy as np
import pytest

from vidscale.media import probe
from vidscale.pipeline.lanczos import upscale_lanczos
from vidscale.settings import Settings

RATE = 48000
SECONDS = Fraction(1, 2)
FPS = 12

# (source codec, encoder, source container, output in MOV, output in MP4); "copy" keeps packets
SOURCES = [
    ("aac", "aac", "mp4", "copy", "copy"),
    ("mp3", "libmp3lame", "mp4", "copy", "copy"),
    ("mp3", "libmp3lame", "mkv", "copy", "copy"),
    ("pcm_s16le", "pcm_s16le", "mkv", "copy", "aac"),
    ("pcm_s24le", "pcm_s24le", "mov", "copy", "aac"),
    ("pcm_s16be", "pcm_s16be", "mov", "copy", "aac"),
    ("pcm_s24be", "pcm_s24be", "mov", "copy", "aac"),
    ("ac3", "ac3", "mkv", "copy", "aac"),
    ("eac3", "eac3", "mp4", "copy", "aac"),
    ("opus", "libopus", "mkv", "aac", "copy"),
    ("opus", "libopus", "mp4", "aac", "copy"),
    ("flac", "flac", "mkv", "pcm_s16le", "copy"),
    ("alac", "alac", "mov", "copy", "copy"),
    ("vorbis", "vorbis", "mkv", "aac", "aac"),
]


def _write_source(path: Path, encoder: str) -> Path:
    """Six 32x24 H.264 frames and half a second of a 440 Hz stereo tone."""
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}[path.suffix]
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        video.options = {"preset": "ultrafast"}
        audio = container.add_stream(encoder, rate=RATE, layout="stereo")
        if encoder == "vorbis":  # FFmpeg's own Vorbis encoder is marked experimental
            audio.codec_context.options = {"strict": "experimental"}
        for i in range(int(SECONDS * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        container.mux(video.encode())
        total = int(SECONDS * RATE)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / RATE) * 32767).astype(np.int16)
        for start in range(0, total, 1024):
            chunk = np.repeat(tone[start:start + 1024], 2)[None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = RATE, start, Fraction(1, RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("audio")
    return {(codec, box): _write_source(folder / f"{codec}.{box}", encoder)
            for codec, encoder, box, _, _ in SOURCES}


def _audio(path: Path) -> dict:
    return next(s for s in ffmpeg.probe(str(path))["streams"] if s["codec_type"] == "audio")


def _payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.mark.parametrize("suffix", ["mov", "mp4"])
@pytest.mark.parametrize("codec, box, in_mov, in_mp4",
                         [(c, b, m, p) for c, _, b, m, p in SOURCES],
                         ids=[f"{c}-in-{b}" for c, _, b, _, _ in SOURCES])
def test_audio_is_copied_or_transcoded_as_the_table_says(sources, tmp_path, codec, box, in_mov,
                                                         in_mp4, suffix):
    source = sources[codec, box]
    settings = Settings().replace({"upscale.engine": "lanczos", "output.codec": "h264"})
    output = upscale_lanczos(source, tmp_path / f"out.{suffix}", settings).output
    expected = in_mov if suffix == "mov" else in_mp4
    audio = _audio(output)
    assert audio["codec_name"] == (codec if expected == "copy" else expected)
    if expected == "copy":
        assert _payloads(output) == _payloads(source)
    else:
        assert abs(float(audio["duration"]) - float(SECONDS)) < 0.05
        assert (audio["channels"], int(audio["sample_rate"])) == (2, RATE)


def test_probe_names_the_codec_not_the_decoder(sources):
    """FFmpeg decodes MP3 with ``mp3float``; the codec is ``mp3``, as ffprobe says."""
    info = probe(sources["mp3", "mp4"])
    assert info.audio[0].codec == "mp3" == _audio(sources["mp3", "mp4"])["codec_name"]
    assert info.codec == "h264"


def test_24_bit_flac_becomes_24_bit_pcm_in_mov(tmp_path):
    """Lossless stays lossless: the 24-bit samples come back bit for bit."""
    source = tmp_path / "deep.mkv"
    with av.open(str(source), "w", format="matroska") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        audio = container.add_stream("flac", rate=RATE, layout="mono")
        audio.codec_context.format = "s32"
        frame = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
        container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = (np.random.default_rng(0).integers(-2**23, 2**23, 4096) << 8).astype(np.int32)
        tone = av.AudioFrame.from_ndarray(samples[None, :], format="s32", layout="mono")
        tone.sample_rate, tone.pts = RATE, 0
        container.mux(audio.encode(tone))
        container.mux(audio.encode())
    settings = Settings().replace({"upscale.engine": "lanczos", "output.codec": "h264"})
    output = upscale_lanczos(source, tmp_path / "deep.mov", settings).output
    assert _audio(output)["codec_name"] == "pcm_s24le"
    with av.open(str(output)) as container:
        decoded = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert np.array_equal(decoded[:len(samples)], samples)
