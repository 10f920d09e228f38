"""What both pages share: the document frame and its style, escaping, embedded images.

Images are encoded with PyAV's own encoders (the media layer's library), so pages need no
imaging package. JPEG at near-lossless quality with full-resolution colour (4:4:4) keeps an
embedded 4K frame at a few megabytes; PNG would be 5-10 times larger.
"""

from __future__ import annotations

import base64
from fractions import Fraction
from html import escape

import av
import numpy as np

JPEG_QSCALE = 2  # mjpeg quantiser, 1 (best) .. 31: 2 is visually lossless at 1:1

STYLE = """
:root { color-scheme: light dark; --fg: #1d1d1f; --bg: #fafafa; --muted: #6e6e73; --line: #d2d2d7;
        --accent: #0a66c2; --bad: #c62828; --good: #2e7d32; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #f0f0f0; --bg: #1b1b1d; --muted: #a1a1a6; --line: #3a3a3c; --accent: #5aa9ff;
          --bad: #ff6b6b; --good: #7bd88f; } }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; padding: 1.2em 1.5em 3em; max-width: 1400px; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.6em 0 .5em; }
.muted { color: var(--muted); } .bad { color: var(--bad); } .good { color: var(--good); }
table { border-collapse: collapse; } td, th { padding: .2em .8em .2em 0; text-align: left;
  vertical-align: top; border-bottom: 1px solid var(--line); } th { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: rgba(127,127,127,.1); padding: .6em .8em; overflow: auto; font-size: 13px; }
a { color: var(--accent); }
"""


def document(title: str, body: str, *, style: str = "", script: str = "", head: str = "") -> str:
    """A complete HTML5 document; ``title`` is escaped here, ``body`` must already be HTML."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="vidscale">{head}\n'
            f'<title>{escape(title)}</title>\n<style>{STYLE}{style}</style></head>\n'
            f'<body>\n{body}\n<script>{script}</script>\n</body></html>\n')


def table(rows: list[tuple[str, str]], *, numeric: bool = False) -> str:
    """A two-column table of (label, HTML value) rows; labels are escaped."""
    cls = ' class="num"' if numeric else ""
    return "<table>" + "".join(f"<tr><th>{escape(label)}</th><td{cls}>{value}</td></tr>"
                               for label, value in rows) + "</table>"


def jpeg(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes (4:4:4, full range), encoded by FFmpeg's mjpeg."""
    height, width = rgb.shape[:2]
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj444p"
    codec.time_base = Fraction(1, 1)
    codec.options = {"qmin": str(JPEG_QSCALE), "qmax": str(JPEG_QSCALE)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj444p")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
