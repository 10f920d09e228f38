"""Synthesise ``samples/sample.mov``: a short, detailed, fully tagged test clip, with PyAV only.

3 s of 320x192 at 24000/1001 fps (72 frames): a moving zone plate (every spatial frequency, the
thing resizers get wrong), colour bars, a sweeping fine checkerboard and a frame counter in
binary; H.264 High with B-frames (yuv420p, BT.709 tags, limited range), a stereo AAC chirp
(220 -> 1760 Hz left, the reverse right), in MOV with start timecode 01:00:00:00.
Deterministic: no random numbers, single-threaded x264 without macroblock-tree rate control
(with it, this x264 build's output varied from run to run), so the same PyAV/FFmpeg build
rewrites the same bytes.

    python samples/make_sample.py [OUTPUT]   # default: samples/sample.mov
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT = 320, 192
RATE = Fraction(24000, 1001)
FRAMES = 72
SAMPLE_RATE = 48000
BARS = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0],
                 [191, 0, 191], [191, 0, 0], [0, 0, 191]], np.float32) / 255


def picture(index: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of frame ``index``."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    t = index / float(RATE)
    # zone plate drifting right: phase grows with the squared radius
    cx, cy = WIDTH * (0.35 + 0.1 * np.sin(t)), HEIGHT * 0.45
    zone = 0.5 + 0.5 * np.cos(((x - cx) ** 2 + (y - cy) ** 2) * np.pi / 260.0)
    image = np.repeat(zone[..., None], 3, axis=2)
    # colour bars across the top fifth
    top = HEIGHT // 5
    image[:top] = BARS[(x[:top] * len(BARS) // WIDTH).astype(int)]
    # fine checkerboard band sweeping across the bottom, one pixel per frame
    band = y >= HEIGHT - HEIGHT // 6
    checker = ((x + index) // 2 + y // 2) % 2
    image[band] = checker[band][:, None] * np.array([0.9, 0.8, 0.2])
    # frame counter: 7 binary squares at the bottom left of the zone plate area
    for bit in range(7):
        x0, y0 = 8 + bit * 12, HEIGHT - HEIGHT // 6 - 14
        image[y0:y0 + 10, x0:x0 + 10] = 1.0 if index >> bit & 1 else 0.0
    return (image * 255).round().astype(np.uint8)


def chirp(seconds: float) -> np.ndarray:
    """(2, N) int16: left rises 220 -> 1760 Hz, right falls, with short fades."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    up = 220 * (8 ** (t / seconds))
    phase_up = 2 * np.pi * np.cumsum(up) / SAMPLE_RATE
    phase_down = 2 * np.pi * np.cumsum(up[::-1]) / SAMPLE_RATE
    fade = np.minimum(1, np.minimum(t, seconds - t) / 0.05)
    wave = 0.25 * fade * np.stack([np.sin(phase_up), np.sin(phase_down)])
    return (wave * 32767).astype(np.int16)


def make_sample(path: Path) -> None:
    with av.open(str(path), "w", format="mov") as container:
        video = container.add_stream("libx264", rate=RATE, options={
            "crf": "20", "preset": "medium", "bf": "2", "x264-params": "b-adapt=0:mbtree=0", "threads": "1"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        context = video.codec_context
        # BT.709 primaries, transfer and matrix (1), limited range (1)
        context.color_primaries = context.color_trc = context.colorspace = context.color_range = 1
        video.metadata["timecode"] = "01:00:00:00"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(picture(index), format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples = chirp(float(FRAMES / RATE))
        for start in range(0, samples.shape[1], 1024):
            block = np.ascontiguousarray(samples[:, start:start + 1024].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("sample.mov")
    make_sample(target)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")
