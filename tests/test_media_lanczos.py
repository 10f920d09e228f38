"""The lanczos engine end to end, checked with ffprobe and PyAV; the ``upscale`` command."""

from __future__ import annotations

import io
import json
import resource
import signal
import subprocess
import sys
from fractions import Fraction

import av
import ffmpeg
import numpy as np
import pytest
from conftest import frame_index

from vidscale.errors import InvalidMediaError, MediaNotFoundError, OutputError
from vidscale.media import read_frames
from vidscale.pipeline.lanczos import upscale_lanczos
from vidscale.progress import Progress
from vidscale.settings import Settings


def _settings(codec: str = "prores-hq") -> Settings:
    return Settings().replace({"upscale.engine": "lanczos", "output.codec": codec})


def _streams(path) -> dict[str, dict]:
    data = ffmpeg.probe(str(path), count_packets=None)
    return {s["codec_type"]: s for s in reversed(data["streams"])}


def _audio_payloads(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _indices(path) -> list[int]:
    return [frame_index(f) for c in read_frames(path) for f in c.frames]


def _frame_times(path) -> list[Fraction]:
    frames = ffmpeg.probe(str(path), select_streams="v", show_entries="frame=pts,pts_time")["frames"]
    with av.open(str(path)) as container:
        time_base = container.streams.video[0].time_base
    return [int(f["pts"]) * time_base for f in frames]


@pytest.mark.parametrize("codec, suffix, pix_fmt", [("h264", "mp4", "yuv420p"),
                                                     ("prores-hq", "mov", "yuv422p10le")])
def test_h264_clip_with_audio_doubles_exactly(make_clip, tmp_path, codec, suffix, pix_fmt):
    source = make_clip(frames=24, audio="aac")
    output = tmp_path / f"out.{suffix}"
    result = upscale_lanczos(source, output, _settings(codec))
    video, audio = _streams(output)["video"], _streams(output)["audio"]
    assert (video["width"], video["height"]) == (128, 96) == (result.width, result.height)
    assert int(video["nb_read_packets"]) == 24 == result.frames
    assert Fraction(video["r_frame_rate"]) == Fraction(video["avg_frame_rate"]) == Fraction(30000, 1001)
    assert video["pix_fmt"] == pix_fmt
    assert (video["color_primaries"], video["color_transfer"], video["color_space"],
            video["color_range"]) == ("bt709", "bt709", "bt709", "tv")
    assert abs(float(video["duration"]) - 24 * 1001 / 30000) < 1001 / 30000
    assert audio["codec_name"] == "aac"
    assert _audio_payloads(output) == _audio_payloads(source)
    assert _indices(output) == list(range(24))
    assert result.to_dict()["frame_rate"] == "30000/1001"
    assert json.loads(json.dumps(result.to_dict()))["engine"] == "lanczos"


def test_lanczos_is_sharper_than_a_box_and_keeps_the_picture(make_clip, tmp_path):
    source = make_clip(frames=2, bframes=0)
    output = upscale_lanczos(source, tmp_path / "big.mov", _settings("prores-4444")).output
    small = next(read_frames(source)).frames.astype(float)
    big = next(read_frames(output)).frames.astype(float)
    shrunk = big.reshape(2, 48, 2, 64, 2, 3).mean(axis=(2, 4))
    assert np.abs(shrunk - small).mean() < 2.0


@pytest.mark.parametrize("codec, suffix, audio_codec", [("h264", "mp4", "aac"),
                                                        ("prores-lt", "mov", "pcm_s16le")])
def test_pcm_audio_is_copied_into_mov_and_transcoded_for_mp4(make_clip, tmp_path, codec, suffix,
                                                            audio_codec):
    source = make_clip(container="mov", frames=12, audio="pcm")
    output = upscale_lanczos(source, tmp_path / f"pcm.{suffix}", _settings(codec)).output
    audio = _streams(output)["audio"]
    assert audio["codec_name"] == audio_codec
    assert abs(float(audio["duration"]) - 12 * 1001 / 30000) < 0.03
    if audio_codec == "pcm_s16le":
        assert _audio_payloads(output) == _audio_payloads(source)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_variable_frame_rate_keeps_its_timestamps(make_clip, tmp_path, container):
    source = make_clip(container=container, frames=15, vfr=True, audio="aac")
    output = upscale_lanczos(source, tmp_path / "vfr.mp4", _settings("h264")).output
    assert _frame_times(output) == _frame_times(source)
    assert _indices(output) == list(range(15))


def test_timecode_is_kept_and_shifted_by_a_range(make_clip, tmp_path):
    source = make_clip(container="mov", frames=20, timecode="01:00:00:00", audio="pcm")
    whole = upscale_lanczos(source, tmp_path / "whole.mov", _settings()).output
    assert _streams(whole)["video"]["tags"]["timecode"] == "01:00:00:00"
    part = upscale_lanczos(source, tmp_path / "part.mov", _settings(), frames=(5, 15))
    video, audio = _streams(part.output)["video"], _streams(part.output)["audio"]
    assert video["tags"]["timecode"] == "01:00:00:05"
    assert int(video["nb_read_packets"]) == 10 == part.frames
    assert _indices(part.output) == list(range(5, 15))
    # audio packets that start inside the range: within one packet of the range's length
    assert abs(float(audio["duration"]) - 10 * 1001 / 30000) < 0.03
    assert float(audio.get("start_time", 0)) < 0.03


def test_rotation_tag_is_kept_and_pixels_stay_as_stored(make_clip, tmp_path):
    source = make_clip(container="mov", frames=6, rotation=90)
    output = upscale_lanczos(source, tmp_path / "rot.mov", _settings()).output
    video = _streams(output)["video"]
    assert (video["width"], video["height"]) == (128, 96)
    rotations = [d.get("rotation") for d in video.get("side_data_list", [])]
    assert rotations == [90]
    assert _indices(output) == list(range(6))


@pytest.mark.parametrize("codec, suffix", [("prores-hq", "mov"), ("h264", "mp4")])
def test_odd_sized_input_doubles_to_even(make_clip, tmp_path, codec, suffix):
    source = make_clip(width=319, height=241, frames=4, pix_fmt="yuv444p", audio="aac")
    result = upscale_lanczos(source, tmp_path / f"odd.{suffix}", _settings(codec))
    video = _streams(result.output)["video"]
    assert (video["width"], video["height"]) == (638, 482) == (result.width, result.height)
    assert _indices(result.output) == list(range(4))


def test_untagged_sd_source_is_converted_and_tagged_bt709(make_clip, tmp_path):
    source = make_clip(colour="untagged", frames=3, bframes=0)
    output = upscale_lanczos(source, tmp_path / "tagged.mov", _settings()).output
    assert _streams(output)["video"]["color_space"] == "bt709"
    small = next(read_frames(source)).frames.astype(float)
    big = next(read_frames(output)).frames.astype(float)
    shrunk = big.reshape(3, 48, 2, 64, 2, 3).mean(axis=(2, 4))
    assert np.abs(shrunk - small).mean() < 2.0  # BT.601 in, BT.709 out: same colours


def test_matroska_without_audio_and_a_progress_bar(make_clip, tmp_path):
    source = make_clip(container="mkv", frames=9)
    stream = io.StringIO()
    result = upscale_lanczos(source, tmp_path / "mk.mov", _settings(),
                             progress=Progress(enabled=True, stream=stream))
    assert set(_streams(result.output)) == {"video"}
    assert int(_streams(result.output)["video"]["nb_read_packets"]) == 9
    assert "lanczos" in stream.getvalue() and "9/9" in stream.getvalue()


@pytest.mark.parametrize("name, error", [("missing.mp4", MediaNotFoundError),
                                         ("text.mp4", InvalidMediaError)])
def test_bad_input_leaves_no_output(tmp_path, name, error):
    (tmp_path / "text.mp4").write_text("not a video")
    output = tmp_path / "out.mov"
    with pytest.raises(error) as caught:
        upscale_lanczos(tmp_path / name, output, _settings())
    assert caught.value.exit_code == 2 and str(tmp_path / name) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.mp4"]


def test_existing_output_is_not_replaced_without_overwrite(make_clip, tmp_path):
    output = tmp_path / "out.mov"
    output.write_bytes(b"keep")
    with pytest.raises(OutputError) as caught:
        upscale_lanczos(make_clip(frames=3), output, _settings())
    assert caught.value.exit_code == 2 and output.read_bytes() == b"keep"


def test_media_layer_and_lanczos_engine_never_import_torch():
    code = ("import sys, vidscale.media, vidscale.pipeline.lanczos; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- the command -----------------------------------------------------------------------------

def _vidscale(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidscale", *map(str, args)], capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.mark.slow
def test_upscale_command_json_and_quiet(make_clip, tmp_path):
    source = make_clip(frames=10, audio="aac")
    run = _vidscale("upscale", "--engine", "lanczos", "--codec", "h264", source, "-o",
                    tmp_path / "a.mp4", "--json")
    assert run.returncode == 0, run.stderr
    item = json.loads(run.stdout)["items"][0]
    assert item["status"] == "done" and item["result"]["frames"] == 10
    assert item["result"]["width"] == 128 and item["result"]["frame_rate"] == "30000/1001"
    quiet = _vidscale("upscale", "--engine", "lanczos", source, "-o", tmp_path / "b.mov", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    assert _streams(tmp_path / "b.mov")["video"]["codec_tag_string"] == "apch"


@pytest.mark.slow
def test_upscale_command_default_name_and_frames(make_clip, tmp_path):
    source = tmp_path / "shot.mov"
    source.write_bytes(make_clip(container="mov", frames=12, timecode="00:00:10:00").read_bytes())
    run = _vidscale("upscale", "--engine", "lanczos", source, "--frames", "2:8", "--quiet")
    assert run.returncode == 0, run.stderr
    video = _streams(tmp_path / "shot_2x.mov")["video"]
    assert int(video["nb_read_packets"]) == 6 and video["tags"]["timecode"] == "00:00:10:02"


@pytest.mark.slow
@pytest.mark.parametrize("content", [None, b"garbage"])
def test_upscale_command_bad_input_exits_2_with_one_line(tmp_path, content):
    source = tmp_path / "in.mp4"
    if content is not None:
        source.write_bytes(content)
    run = _vidscale("upscale", "--engine", "lanczos", source, "-o", tmp_path / "o.mov")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and str(source) in lines[0]
    assert not (tmp_path / "o.mov").exists() and not list(tmp_path.glob(".o.*"))


def _limit_file_size() -> None:
    """In the child: files may not grow past 64 kB, and the kernel's signal is ignored."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.slow
def test_a_full_disk_is_exit_1_and_leaves_no_file(make_clip, tmp_path):
    source = make_clip(frames=20, audio="aac")
    out = tmp_path / "out"
    out.mkdir()
    run = _vidscale("upscale", "--engine", "lanczos", "--codec", "prores-4444", source, "-o",
                    out / "big.mov", preexec_fn=_limit_file_size)
    assert run.returncode == 1, run.stderr
    assert "cannot write the output" in run.stderr and str(out / "big.mov") in run.stderr
    assert list(out.iterdir()) == []
