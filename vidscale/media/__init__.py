"""The media layer: probe, read and write clips with PyAV. Imports PyAV and numpy, never torch.

* :func:`probe` -> :class:`VideoInfo`: size, exact rate, real frame count, VFR, colour,
  rotation, timecode, audio streams;
* :func:`read_frames` -> :class:`FrameBatch` RGB arrays in display order, or
  :func:`decode_frames` -> PyAV frames (no numpy round trip);
* :class:`VideoWriter`: ProRes / H.264 / H.265 with the source's audio, colour, timecode and
  timing, written atomically; :mod:`.codecs` is the codec table.
"""

from .codecs import CODECS, codec_spec, output_suffix
from .colour import ColorTags
from .probe import AudioStreamInfo, VideoInfo, probe
from .read import FrameBatch, decode_frames, read_frames, to_rgb
from .write import VideoWriter

__all__ = [
    "AudioStreamInfo", "CODECS", "ColorTags", "FrameBatch", "VideoInfo", "VideoWriter",
    "codec_spec", "decode_frames", "output_suffix", "probe", "read_frames", "to_rgb",
]
