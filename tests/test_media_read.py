"""read_frames / decode_frames: display order, exact ranges, chunking, colour matrices."""

from __future__ import annotations

from fractions import Fraction

import av
import ffmpeg
import numpy as np
import pytest
from conftest import frame_index, index_picture

from vidscale.media import decode_frames, probe, read_frames, to_rgb
from vidscale.media.colour import ColorTags


def _all(source, start=0, end=None, **kwargs):
    chunks = list(read_frames(source, start, end, **kwargs))
    return chunks, np.concatenate([c.frames for c in chunks])


def _indices(frames):
    return [frame_index(f) for f in frames]


@pytest.mark.parametrize("container", ["mp4", "mov", "mkv"])
def test_b_frame_clip_comes_back_in_display_order(make_clip, container):
    clip = make_clip(container=container, frames=30, bframes=3)
    with av.open(str(clip)) as reader:
        packets = [p for p in reader.demux(video=0) if p.size]
    assert any(p.pts != p.dts for p in packets), "the clip should have reordered (B) frames"
    if container != "mkv":
        assert min(p.dts for p in packets) < 0, "MP4/MOV B-frames start at a negative DTS"
    chunks, frames = _all(clip)
    assert _indices(frames) == list(range(30))
    shown = ffmpeg.probe(str(clip), select_streams="v", show_entries="frame=pts")["frames"]
    assert [pts for c in chunks for pts in c.pts] == [int(f["pts"]) for f in shown]
    assert chunks[0].time_base == probe(clip).time_base


@pytest.mark.parametrize("container", ["mp4", "mkv"])
@pytest.mark.parametrize("start, end", [(0, 30), (1, 2), (7, 19), (8, 9), (13, 30), (29, None), (21, 27)])
def test_ranges_are_exact_with_or_without_seeking(make_clip, container, start, end):
    clip = make_clip(container=container, frames=30, bframes=3)
    chunks, frames = _all(probe(clip), start, end, batch_frames=4)
    assert _indices(frames) == list(range(start, end or 30))
    assert [c.start for c in chunks] == list(range(start, end or 30, 4))
    _, linear = _all(clip)  # from the first frame, no seek
    np.testing.assert_array_equal(frames, linear[start:end])


def test_variable_rate_ranges_are_exact(make_clip):
    clip = make_clip(container="mkv", frames=30, vfr=True)
    info = probe(clip)
    assert info.vfr
    _, frames = _all(info, 11, 23)
    assert _indices(frames) == list(range(11, 23))


@pytest.mark.parametrize("chunk", [1, 3, 16, 100])
def test_chunking_does_not_change_the_frames(make_clip, chunk):
    clip = make_clip(frames=20)
    chunks, frames = _all(clip, 2, 19, batch_frames=chunk)
    _, reference = _all(clip, 2, 19, batch_frames=17)
    np.testing.assert_array_equal(frames, reference)
    assert all(len(c.frames) <= chunk for c in chunks)
    assert [c.start for c in chunks] == list(range(2, 19, chunk))


def test_rgb48_keeps_the_same_picture_in_16_bits(make_clip):
    clip = make_clip(frames=4)
    _, eight = _all(clip)
    _, sixteen = _all(clip, pixel_format="rgb48le")
    assert sixteen.dtype == np.uint16 and eight.dtype == np.uint8
    difference = np.abs(sixteen / 257.0 - eight)
    assert difference.mean() < 0.6 and difference.max() <= 2.0  # chroma edges round differently


@pytest.mark.parametrize("colour", ["bt709", "bt601", "untagged"])
def test_clips_decode_to_the_rgb_they_were_made_from(make_clip, colour):
    # The synthetic clip was converted with BT.709 (tagged) or BT.601 (tagged / untagged SD).
    clip = make_clip(frames=3, colour=colour, bframes=0)
    _, frames = _all(clip)
    original = np.stack([index_picture(i, 64, 48) for i in range(3)]).astype(float)
    assert np.abs(frames - original).mean() < 2.0


def _flat_yuv(y: int, u: int, v: int, width: int, height: int, tags: ColorTags) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv444p")
    for plane, value in zip(frame.planes, (y, u, v)):
        plane.update(bytes([value]) * plane.buffer_size)
    tags.apply(frame)
    return frame


def _expected_rgb(y, u, v, kr, kb, full=False):
    """The textbook YUV -> RGB for matrix (kr, kb), limited or full range."""
    if full:
        luma, cb, cr = y / 255, (u - 128) / 255, (v - 128) / 255
    else:
        luma, cb, cr = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    r = luma + 2 * (1 - kr) * cr
    b = luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.array([r, g, b]) * 255, 0, 255)


BT709, BT601 = (0.2126, 0.0722), (0.299, 0.114)


@pytest.mark.parametrize("tags, size, matrix, full", [
    (ColorTags(space="bt709", range="tv"), (64, 48), BT709, False),  # tag wins over size
    (ColorTags(space="smpte170m", range="tv"), (1920, 1080), BT601, False),
    (ColorTags(), (720, 576), BT601, False),  # untagged SD: BT.601
    (ColorTags(), (1280, 720), BT709, False),  # untagged HD: BT.709
    (ColorTags(space="bt709", range="pc"), (64, 48), BT709, True),
])
def test_yuv_to_rgb_uses_the_tagged_or_conventional_matrix_and_range(tags, size, matrix, full):
    frame = _flat_yuv(120, 90, 170, *size, tags)
    got = to_rgb(frame)[0, 0].astype(float)
    # one 8-bit level: half for the rounding to 8 bits, half for swscale's fixed-point arithmetic
    # (15-bit intermediates, whichever of its C or SIMD paths runs); the other matrix is 4+ away
    np.testing.assert_allclose(got, _expected_rgb(120, 90, 170, *matrix, full=full), atol=1.0)
    other = BT601 if matrix == BT709 else BT709
    assert np.abs(got - _expected_rgb(120, 90, 170, *other, full=full)).max() > 4


def test_decoded_frames_carry_completed_colour_tags(make_clip):
    frame = next(decode_frames(make_clip(colour="untagged", frames=2)))
    assert ColorTags.of(frame).space == "smpte170m" and ColorTags.of(frame).range == "tv"
    tagged = next(decode_frames(make_clip(frames=2)))
    assert ColorTags.of(tagged) == ColorTags("bt709", "bt709", "bt709", "tv")


def test_bad_ranges_are_rejected(make_clip):
    clip = make_clip(frames=4)
    with pytest.raises(ValueError):
        next(read_frames(clip, 3, 3))
    with pytest.raises(ValueError):
        next(read_frames(clip, batch_frames=0))
    assert probe(clip).frame_range((1, 99)) == (1, 4)
    assert Fraction(probe(clip).frame_rate) == Fraction(30000, 1001)
