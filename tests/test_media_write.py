"""VideoWriter: codecs as ffprobe sees them, colour tags, atomic output, write errors."""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np
import pytest
from conftest import frame_index, index_picture

from vidscale.errors import InvalidMediaError, OutputError
from vidscale.media import VideoWriter, probe, read_frames
from vidscale.settings import OutputSettings


def _frames(count: int, width: int = 64, height: int = 48) -> np.ndarray:
    return np.stack([index_picture(i, width, height) for i in range(count)])


def _write(path: Path, codec: str, frames: np.ndarray | None = None, **kwargs) -> Path:
    frames = _frames(4) if frames is None else frames
    with VideoWriter(path, width=frames.shape[2], height=frames.shape[1], frame_rate=Fraction(25),
                     settings=OutputSettings(codec=codec), **kwargs) as writer:
        writer.write(frames)
    return path


def _video(path: Path) -> dict:
    return next(s for s in ffmpeg.probe(str(path))["streams"] if s["codec_type"] == "video")


def _top_level_atoms(path: Path) -> list[str]:
    """The order of the MP4/MOV top-level boxes (moov before mdat = fast start)."""
    atoms, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        atoms.append(kind.decode("latin-1"))
        offset += size if size else len(data)
    return atoms


# FFmpeg's ProRes decoder presents 4444 and 4444 XQ as 12-bit 4:4:4 whatever was encoded (the
# format allows 12 bits), so ffprobe reports yuv444p12le for the 10-bit 4:4:4 that was written.
@pytest.mark.parametrize("codec, profiles, tag, pix_fmt", [
    ("prores-proxy", {"Proxy"}, "apco", "yuv422p10le"),
    ("prores-lt", {"LT"}, "apcs", "yuv422p10le"),
    ("prores", {"Standard"}, "apcn", "yuv422p10le"),
    ("prores-hq", {"HQ"}, "apch", "yuv422p10le"),
    ("prores-4444", {"4444"}, "ap4h", "yuv444p12le"),
    ("prores-4444xq", {"XQ", "4444XQ"}, "ap4x", "yuv444p12le"),
])
def test_prores_profiles(tmp_path, codec, profiles, tag, pix_fmt):
    stream = _video(_write(tmp_path / f"{codec}.mov", codec))
    assert stream["codec_name"] == "prores"
    assert stream["profile"].replace(" ", "") in profiles
    assert stream["codec_tag_string"] == tag and stream["pix_fmt"] == pix_fmt


def test_h264_is_yuv420p_with_the_index_before_the_data(tmp_path):
    path = _write(tmp_path / "web.mp4", "h264")
    stream = _video(path)
    assert stream["codec_name"] == "h264" and stream["pix_fmt"] == "yuv420p"
    atoms = _top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")


def test_h264_10bit_and_h265_tag(tmp_path):
    ten = _video(_write(tmp_path / "ten.mp4", "h264-10bit"))
    assert ten["pix_fmt"] == "yuv420p10le" and ten["profile"] == "High 10"
    hevc = _video(_write(tmp_path / "hevc.mp4", "h265"))
    assert hevc["codec_name"] == "hevc" and hevc["codec_tag_string"] == "hvc1"
    assert hevc["pix_fmt"] == "yuv420p"


def test_h264_in_mov_is_allowed_but_prores_in_mp4_is_not(tmp_path):
    assert _video(_write(tmp_path / "edit.mov", "h264"))["codec_name"] == "h264"
    with pytest.raises(OutputError, match=r"\.mov") as caught:
        VideoWriter(tmp_path / "x.mp4", width=64, height=48, frame_rate=Fraction(25),
                    settings=OutputSettings(codec="prores-hq"))
    assert caught.value.exit_code == 2


def test_generated_clip_is_tagged_bt709_on_stream_and_frames(tmp_path):
    path = _write(tmp_path / "gen.mov", "prores-hq")
    stream = _video(path)
    assert (stream["color_space"], stream["color_primaries"], stream["color_transfer"],
            stream["color_range"]) == ("bt709", "bt709", "bt709", "tv")
    frames = ffmpeg.probe(str(path), select_streams="v",
                          show_entries="frame=color_space,color_primaries,color_range")["frames"]
    assert len(frames) == 4
    assert all((f["color_space"], f["color_primaries"], f["color_range"]) == ("bt709", "bt709", "tv")
               for f in frames)
    assert Fraction(stream["r_frame_rate"]) == 25


@pytest.mark.parametrize("codec, dtype", [("h264", np.uint8), ("prores-4444", np.uint16)])
def test_written_rgb_reads_back(tmp_path, codec, dtype):
    frames = _frames(6)
    if dtype == np.uint16:
        frames = frames.astype(np.uint16) * 257
    path = _write(tmp_path / f"rt.{'mov' if 'prores' in codec else 'mp4'}", codec, frames)
    back = np.concatenate([c.frames for c in read_frames(path, pixel_format="rgb48le")])
    assert [frame_index(f) for f in back] == list(range(6))
    assert np.abs(back / 257.0 - frames / (257.0 if dtype == np.uint16 else 1)).mean() < 3.0


def test_an_output_gets_the_usual_permissions_not_the_temporary_files(tmp_path):
    umask = os.umask(0o022)
    try:
        path = _write(tmp_path / "out.mov", "prores-hq", _frames(2))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # 0o666 minus the umask, as any file the user writes


def test_an_error_inside_the_block_leaves_nothing(tmp_path):
    target = tmp_path / "out.mov"
    with pytest.raises(RuntimeError):
        with VideoWriter(target, width=64, height=48, frame_rate=Fraction(25),
                         settings=OutputSettings(codec="prores-hq")) as writer:
            writer.write(_frames(3))
            assert any(tmp_path.iterdir()), "the temporary file is being written"
            raise RuntimeError("crash mid-way")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(tmp_path):
    target = tmp_path / "out.mov"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists") as caught:
        _write(target, "prores-hq")
    assert caught.value.exit_code == 2 and target.read_bytes() == b"precious"
    _write(target, "prores-hq", overwrite=True)
    assert _video(target)["codec_name"] == "prores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mov"]


@pytest.mark.parametrize("where", ["missing/out.mov", "file/out.mov"])
def test_unusable_output_folder_is_exit_2(tmp_path, where):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OutputError) as caught:
        _write(tmp_path / where, "prores-hq")
    assert caught.value.exit_code == 2 and str(tmp_path) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_odd_size_for_420_is_refused_before_any_work(tmp_path):
    with pytest.raises(OutputError, match="even") as caught:
        VideoWriter(tmp_path / "odd.mp4", width=319, height=240, frame_rate=Fraction(25),
                    settings=OutputSettings(codec="h264"))
    assert caught.value.exit_code == 2 and list(tmp_path.iterdir()) == []
    _write(tmp_path / "odd.mov", "prores-4444", _frames(2, 65, 49))  # 4:4:4 stores odd sizes
    assert (_video(tmp_path / "odd.mov")["width"], _video(tmp_path / "odd.mov")["height"]) == (65, 49)


def test_wrong_frames_are_programming_errors(tmp_path):
    with VideoWriter(tmp_path / "w.mov", width=64, height=48, frame_rate=Fraction(25),
                     settings=OutputSettings(codec="prores-lt")) as writer:
        with pytest.raises(ValueError, match="write_frame"):
            writer.write(_frames(1, 32, 24))
        with pytest.raises(TypeError):
            writer.write(_frames(1).astype(np.float32))
        writer.write(_frames(1))


def test_fewer_frames_than_the_source_range_is_an_error_and_no_file(make_clip, tmp_path):
    info = probe(make_clip(frames=10))
    with pytest.raises(InvalidMediaError, match="expected 10 frames"):
        with VideoWriter(tmp_path / "short.mov", width=64, height=48, source=info,
                         settings=OutputSettings(codec="prores-lt")) as writer:
            writer.write(_frames(9))
    assert list(tmp_path.iterdir()) == []


def test_audio_none_writes_video_only(make_clip, tmp_path):
    info = probe(make_clip(frames=4, audio="aac"))
    with VideoWriter(tmp_path / "mute.mp4", width=64, height=48, source=info,
                     settings=OutputSettings(codec="h264", audio="none")) as writer:
        for chunk in read_frames(info):
            writer.write(chunk.frames, chunk.pts)
    kinds = [s["codec_type"] for s in ffmpeg.probe(str(tmp_path / "mute.mp4"))["streams"]]
    assert kinds == ["video"]
