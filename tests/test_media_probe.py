"""probe(): facts checked against ffprobe (an independent reader), and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import av
import ffmpeg
import numpy as np
import pytest
import torch
from float_bounds import gamma

from vidscale.errors import InvalidMediaError, MediaNotFoundError
from vidscale.media import probe


def _ffprobe_video(path):
    data = ffmpeg.probe(str(path), count_packets=None)
    return next(s for s in data["streams"] if s["codec_type"] == "video"), data


def test_probe_matches_ffprobe_on_a_tagged_mov_with_audio_timecode_and_rotation(make_clip):
    clip = make_clip(container="mov", audio="pcm", timecode="01:00:00:00", rotation=90)
    info = probe(clip)
    stream, _ = _ffprobe_video(clip)
    assert (info.width, info.height) == (stream["width"], stream["height"]) == (64, 48)
    assert info.frame_rate == Fraction(stream["r_frame_rate"]) == Fraction(30000, 1001)
    assert info.frame_count == int(stream["nb_read_packets"]) == 20
    assert info.duration == 20 * 1001 / 30000  # both 20020/30000 rounded once
    assert not info.vfr
    assert info.color.to_dict() == {"primaries": stream["color_primaries"],
                                    "trc": stream["color_transfer"],
                                    "space": stream["color_space"], "range": stream["color_range"]}
    assert info.color.space == "bt709" and info.color.range == "tv"
    assert info.timecode == "01:00:00:00"
    assert info.rotation == 90
    assert [(a.codec, a.sample_rate, a.channels, a.layout) for a in info.audio] == [
        ("pcm_s16le", 48000, 2, "stereo")]
    assert (info.pix_fmt, info.bit_depth, info.codec) == ("yuv420p", 8, "h264")


def test_matroska_frame_count_comes_from_the_packets(make_clip):
    # Matroska stores no frame count and milliseconds timestamps: 30000/1001 must survive both.
    clip = make_clip(container="mkv", frames=17)
    stream, _ = _ffprobe_video(clip)
    assert "nb_frames" not in stream or stream["nb_frames"] in ("N/A", None)
    info = probe(clip)
    assert info.frame_count == int(stream["nb_read_packets"]) == 17
    assert info.frame_rate == Fraction(30000, 1001) and info.time_base == Fraction(1, 1000)
    assert not info.vfr


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_variable_frame_rate_is_detected(make_clip, container):
    info = probe(make_clip(container=container, vfr=True))
    assert info.vfr
    assert info.frame_count == 20
    # 20 frames, every third lasting 1.5 periods: the mean rate, not the nominal one
    # the exact mean rate rounded once; here the duration is rounded, then divided: 3 roundings apart
    assert float(info.frame_rate) == pytest.approx(20 / info.duration, rel=gamma(3, torch.float64))
    assert float(info.frame_rate) < 30000 / 1001 * 0.9
    assert not probe(make_clip(container=container)).vfr


def test_untagged_clip_reports_unspecified_colour(make_clip):
    info = probe(make_clip(colour="untagged"))
    assert info.color.space is None and info.color.primaries is None


def test_to_dict_is_json_safe_with_exact_fractions(make_clip):
    info = probe(make_clip(audio="aac"))
    data = json.loads(json.dumps(info.to_dict()))
    assert data["frame_rate"] == "30000/1001"
    assert data["frame_count"] == 20 and data["audio"][0]["codec"] == "aac"
    assert Fraction(data["time_base"]) == info.time_base
    text = info.describe()
    assert "30000/1001 fps" in text and "20 frames" in text and "aac" in text


def test_probe_command_prints_json_and_text(make_clip):
    clip = make_clip(container="mov", timecode="10:00:00:00")
    run = subprocess.run([sys.executable, "-m", "vidscale", "probe", "--json", str(clip)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["frame_rate"] == "30000/1001" and data["timecode"] == "10:00:00:00"
    text = subprocess.run([sys.executable, "-m", "vidscale", "probe", str(clip)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0 and "10:00:00:00" in text.stdout


# -- bad input: one line naming the file, exit status 2 ------------------------------------

def _truncated(make_clip, folder):
    data = make_clip(container="mov").read_bytes()  # moov after mdat: cut anywhere = unreadable
    path = folder / "cut.mov"
    path.write_bytes(data[: len(data) // 2])
    return path


def _faststart_truncated(make_clip, folder):
    clip = make_clip(container="mp4", frames=30)
    path = folder / "cut_faststart.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c", "copy",
                    "-movflags", "+faststart", str(path)], check=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # index intact, media data cut short
    return path


def _text(make_clip, folder):
    path = folder / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    return path


def _audio_only(make_clip, folder):
    path = folder / "voice.m4a"
    with av.open(str(path), "w") as container:
        _tone(container)
    return path


def _no_frames(make_clip, folder):
    path = folder / "empty.mkv"  # a video stream without a single packet, beside audio
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height = 64, 48
        _tone(container)
    assert any(s["codec_type"] == "video" for s in ffmpeg.probe(str(path))["streams"])
    return path


def _tone(container):
    stream = container.add_stream("aac", rate=48000, layout="mono")
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.int16), format="s16", layout="mono")
    frame.sample_rate, frame.pts = 48000, 0
    for packet in [*stream.encode(frame), *stream.encode()]:
        container.mux(packet)


def _still_image(make_clip, folder):
    path = folder / "still.png"
    av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24").save(str(path))
    return path


@pytest.mark.parametrize("make_bad, reason", [
    (_text, "not a readable video"),
    (_truncated, "not a readable video"),
    (_faststart_truncated, "truncated"),
    (_audio_only, "no video frames"),
    (_no_frames, "no video frames"),
    (_still_image, "still image"),
])
def test_unusable_files_are_invalid_media(make_clip, tmp_path, make_bad, reason):
    path = make_bad(make_clip, tmp_path)
    with pytest.raises(InvalidMediaError) as caught:
        probe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and reason in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_missing_file_is_media_not_found(tmp_path):
    with pytest.raises(MediaNotFoundError, match="no such file") as caught:
        probe(tmp_path / "nope.mov")
    assert isinstance(caught.value, FileNotFoundError) and caught.value.exit_code == 2


def test_probe_command_exits_2_with_one_line_for_a_bad_file(tmp_path):
    bad = tmp_path / "bad.mov"
    bad.write_text("hello")
    run = subprocess.run([sys.executable, "-m", "vidscale", "probe", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not a readable video" in lines[0]
