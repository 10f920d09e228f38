"""``VideoWriter``: encode frames into ProRes or H.264/H.265 with the source's audio, colour,
timecode and timing, under a temporary name that becomes the output only when it is complete.

Choices (the lead's README notes repeat them):

* Timing. A constant-rate source is written at its exact rational rate (time base 1/rate, frame
  ``n`` at pts ``n``), so 30000/1001 stays 30000/1001 even when the source stored milliseconds.
  A variable-rate source keeps every frame's own timestamp, in the source's time base, shifted so
  the first written frame is at 0. The output has exactly the frames it was given, and when a
  source is known, exactly the source's frame count (or the range's): anything else is an error.
* Colour. Frames are converted with explicit matrices and ranges: from each input frame's own
  tags (RGB arrays need none) to :func:`~vidscale.media.colour.output_tags` of the source,
  which keeps the source's tags and fills what it lacks with BT.709 / limited range. The tags
  are set on the encoder AND on every frame (FFmpeg's encoders read them from frames).
* Rotation. Frames stay as stored; the output carries the source's display matrix, as an
  editing app expects from a file it relinks to (an upright copy would change its geometry).
* Timecode. The source's start timecode is written on the video stream (the MOV/MP4 muxer then
  writes a tmcd track), shifted by the first frame of a range.
* Audio. Each source audio stream is copied packet for packet (empty packets skipped) or
  transcoded, as the container's rule for its codec says
  (:meth:`~vidscale.media.codecs.ContainerSpec.audio_rule`). Codecs are matched by FFmpeg's
  codec descriptor name (``mp3``), never by the name of the decoder that happens to read them
  (``mp3float``). Audio is interleaved with the video as frames arrive. A whole clip keeps
  every packet; a range keeps the packets that start inside it (packet-accurate, as trimming
  without a re-encode is).
* Safety. The file is written under a temporary name beside the output
  (:func:`vidscale.atomic.atomic_path`) and renamed on a clean exit; an error removes it. A
  failed write (full disk, I/O error) is an :class:`~vidscale.errors.OutputError`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Iterator, Literal, Sequence, cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.reformatter import Interpolation
from av.video.stream import VideoStream

from ..atomic import atomic_path, check_writable
from ..errors import InvalidMediaError, OutputError, VidscaleError
from ..settings import OutputSettings
from .codecs import codec_spec
from .colour import SWS_MATRIX, SWS_RANGE, ColorTags, output_tags, reading_matrix
from .probe import VideoInfo, audio_codec, not_readable, open_input
from .timecode import shift_timecode

_FOREVER = Fraction(10**12)  # seconds: "no bound" for audio windows
_RGB_FORMATS = {np.dtype(np.uint8): "rgb24", np.dtype(np.uint16): "rgb48le"}


def check_output(output: Path, codec: str) -> None:
    """What would fail a :class:`VideoWriter` at its end, checked before a job starts: the output's
    suffix must suit the codec, and its folder must be writable (or creatable)."""
    codec_spec(codec).container_for(output, codec)
    check_writable(output.parent)


class VideoWriter:
    """Encode one output clip; use as a context manager (the file appears on a clean exit).

    ``source`` (the probed input) supplies rate, timing, colour, rotation, timecode and audio;
    without one (generated clips) pass ``frame_rate``. ``frame_range`` is the source frames
    ``[start, end)`` being written: it shifts the timecode, bounds the audio and sets how many
    frames must arrive.
    """

    def __init__(self, output: Path | str, *, width: int, height: int,
                 source: VideoInfo | None = None,
                 settings: OutputSettings = OutputSettings(),  # noqa: B008 (frozen: one shared default is safe)
                 frame_range: tuple[int, int] | None = None, frame_rate: Fraction | None = None,
                 overwrite: bool = False):
        self.output = Path(output)
        self.width, self.height = width, height
        self.source = source
        self.settings = settings
        self.spec = codec_spec(settings.codec)
        self.container_spec = self.spec.container_for(self.output, settings.codec)
        self.frame_range = frame_range or (0, source.frame_count if source else None)
        rate = frame_rate if frame_rate is not None else (source.frame_rate if source else None)
        if not rate:
            raise ValueError("VideoWriter needs a source or a frame_rate")
        self.frame_rate = Fraction(rate)
        self.colour = output_tags(source.color if source else None)
        self.vfr = bool(source and source.vfr)
        # the output's time base: a variable-rate source's own, else one tick per frame
        self.time_base = source.time_base if source is not None and source.vfr else 1 / self.frame_rate
        self.overwrite = overwrite
        self.frames_written = 0
        self._check_size()
        self._session: AbstractContextManager[VideoWriter, bool | None] | None = None
        self._audio: _AudioCopy | None = None
        self._origin_pts: int | None = None  # variable rate: source pts of the first frame
        self._clock = (Fraction(0), Fraction(0))  # source seconds covered so far [start, end)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> "VideoWriter":
        self._session = self._open_session()
        return self._session.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        if self._session is None:
            raise RuntimeError("VideoWriter.__exit__ without __enter__")
        return self._session.__exit__(exc_type, exc, traceback)

    @contextmanager
    def _open_session(self) -> Iterator["VideoWriter"]:
        with atomic_path(self.output, overwrite=self.overwrite) as temp:
            with self._writing():
                self._container = av.open(str(temp), "w", format=self.container_spec.format,
                                          container_options=self.container_spec.options)
            try:
                with self._writing():
                    self._video = self._add_video_stream()
                    if (source := self._audio_source()) is not None:
                        self._audio = _AudioCopy.open(self, source)
                    self._container.start_encoding()
                yield self
                self._finish()
            except BaseException:
                self._abort()
                raise

    # -- writing ---------------------------------------------------------------------------

    def write(self, frames: np.ndarray, pts: Sequence[int] | None = None) -> None:
        """Encode RGB frames (N, H, W, 3) at the output size: uint8, or uint16 (full 16-bit).

        ``pts``: each frame's source timestamp (source time base); needed for a variable-rate
        source, ignored for a constant-rate one (frames are timed by count at the exact rate).
        """
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"write() takes (N, {self.height}, {self.width}, 3) RGB frames, "
                             f"got {frames.shape}; write_frame() resizes")
        if frames.dtype not in _RGB_FORMATS:
            raise TypeError(f"write() takes uint8 or uint16 RGB, got {frames.dtype}")
        if pts is not None and len(pts) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(pts)} pts")
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array),
                                               format=_RGB_FORMATS[frames.dtype])
            self.write_frame(frame, None if pts is None else int(pts[i]))

    def write_frame(self, frame: av.VideoFrame, pts: int | None = None) -> None:
        """Encode one PyAV frame, resized (Lanczos) and converted into the encoder's format.

        A YUV frame is converted by its own colour tags (frames from
        :func:`~vidscale.media.read.decode_frames` carry complete ones). ``pts`` as in
        :meth:`write`. When no conversion is needed the frame itself is encoded (its
        timestamp and tags are set).
        """
        out = self._convert(frame)
        out.pts = stamp = self._output_pts(pts)
        out.time_base = self._video.codec_context.time_base
        self.colour.apply(out)
        with self._writing():
            for packet in self._video.encode(out):
                self._container.mux(packet)
        self.frames_written += 1
        self._advance_clock(stamp)
        if self._audio is not None:
            with self._writing():
                self._audio.pump(until=self._clock[1])

    # -- internals -------------------------------------------------------------------------

    def _check_size(self) -> None:
        """4:2:0 needs an even width and height, 4:2:2 an even width: say so before any work."""
        chroma = av.VideoFormat(self.spec.pix_fmt)
        odd_width = self.width % 2 and chroma.chroma_width(2) < 2
        odd_height = self.height % 2 and chroma.chroma_height(2) < 2
        if odd_width or odd_height:
            raise OutputError(f"{self.output}: {self.settings.codec} ({self.spec.pix_fmt}) cannot "
                              f"store {self.width}x{self.height}: chroma subsampling needs even "
                              "sizes", exit_code=2)

    def _add_video_stream(self) -> VideoStream:
        # PyAV types a stream by the codec name; the table's names are all video encoders
        stream = cast(VideoStream, self._container.add_stream(self.spec.encoder, rate=self.frame_rate,
                                                              options=self.spec.options(self.settings)))
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, self.spec.pix_fmt
        context = stream.codec_context
        context.time_base = stream.time_base = self.time_base
        context.thread_type = "AUTO"
        self.colour.apply(context)
        if self.spec.codec_tag:
            context.codec_tag = self.spec.codec_tag
        if self.source is not None:
            context.sample_aspect_ratio = self.source.sample_aspect_ratio
            if self.source.rotation:
                stream.set_display_rotation(self.source.rotation)
            if self.source.timecode:
                stream.metadata["timecode"] = shift_timecode(
                    self.source.timecode, self.frame_range[0], self.source.frame_rate)
        return stream

    def _audio_source(self) -> VideoInfo | None:
        """The source whose audio goes into the output, if any."""
        if self.source and self.source.audio and self.settings.audio == "copy":
            return self.source
        return None

    def _convert(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Resize and convert with explicit matrices and ranges (never swscale's defaults)."""
        source_colour = {}
        if not frame.format.is_rgb:
            tags = ColorTags.of(frame)
            source_colour = {
                "src_colorspace": SWS_MATRIX[reading_matrix(tags, frame.width, frame.height)],
                "src_color_range": SWS_RANGE[tags.range or "tv"],
            }
        # output_tags() are complete: the same resolution as the source's gives them back
        return frame.reformat(self.width, self.height, self.spec.pix_fmt,
                              dst_colorspace=SWS_MATRIX[reading_matrix(self.colour, self.width, self.height)],
                              dst_color_range=SWS_RANGE[self.colour.range or "tv"],
                              interpolation=Interpolation.LANCZOS, **source_colour)

    def _output_pts(self, pts: int | None) -> int:
        """Frame count at the exact rate, or (variable rate) the source pts from the first."""
        if not self.vfr:
            return self.frames_written
        if pts is None:
            raise ValueError(f"{self.output}: the source is variable frame rate; pass each frame's pts")
        if self._origin_pts is None:
            self._origin_pts = pts
            self._clock = (pts * self.time_base, pts * self.time_base)
        return pts - self._origin_pts

    def _advance_clock(self, stamp: int) -> None:
        """Track the source seconds written so far (they bound the audio); ``stamp`` is the
        output pts of the frame just written."""
        period = 1 / self.frame_rate
        if self.vfr:  # the clock starts at the first frame's source time (set by _output_pts)
            self._clock = (self._clock[0], self._clock[0] + stamp * self.time_base + period)
            return
        start = (self.source.start_time if self.source else 0) + self.frame_range[0] * period
        self._clock = (start, start + self.frames_written * period)

    def _finish(self) -> None:
        """Flush the encoder, check the frame count, end the audio, write the trailer."""
        if not self.frames_written:
            raise OutputError(f"{self.output}: no frames were written")
        self._check_count()
        with self._writing():
            for packet in self._video.encode(None):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.finish()
            self._container.close()

    def _check_count(self) -> None:
        start, end = self.frame_range
        if self.source is None or end is None or self.frames_written == end - start:
            return
        raise InvalidMediaError(
            f"{self.source.path}: expected {end - start} frames ({start}:{end}) but "
            f"{self.frames_written} could be read; the file may be damaged after frame "
            f"{start + self.frames_written - 1}")

    def _abort(self) -> None:
        """Close everything after an error; atomic_path then removes the temporary file."""
        if self._audio is not None:
            self._audio.close()
        try:
            self._container.close()
        except (av.FFmpegError, OSError):
            pass  # the error that brought us here is the one to report

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """FFmpeg and OS write errors become OutputError (exit 1)."""
        try:
            yield
        except VidscaleError:
            raise
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OutputError(f"{self.output}: cannot write the output ({reason})") from exc


class _AudioCopy:
    """The source's audio streams, demuxed alongside the video and muxed into the output.

    A whole clip keeps every packet, moved so the first video frame is at 0; a range keeps the
    packets that start inside the frames written, moved so the range starts at 0.
    """

    def __init__(self, writer: VideoWriter, source: VideoInfo, reader: av.container.InputContainer):
        self.writer = writer
        self.source = source
        self.reader = reader
        self.tracks: dict[int, tuple[AudioStream, bool]] = {}  # index -> (out, transcode)
        for stream in reader.streams.audio:
            rule = writer.container_spec.audio_rule(audio_codec(stream))
            out: AudioStream
            if rule.action == "copy":
                out = writer._container.add_stream_from_template(stream)
            else:
                out = writer._container.add_stream(_encoder(rule.action, stream),
                                                   rate=stream.rate or 48000,
                                                   layout=_layout(stream))
            self.tracks[stream.index] = (out, rule.action != "copy")
        self.packets = reader.demux(reader.streams.audio)
        self.pending: av.Packet[AudioStream] | None = None

    @classmethod
    def open(cls, writer: VideoWriter, source: VideoInfo) -> "_AudioCopy":
        reader = open_input(source.path)
        try:
            return cls(writer, source, reader)
        except BaseException:
            reader.close()
            raise

    def pump(self, until: Fraction) -> None:
        """Mux the audio packets that start before ``until`` (source seconds)."""
        first, last = self._window()
        while (packet := self._next()) is not None:
            start = _packet_time(packet)
            if start is not None and start >= until:
                self.pending = packet
                return
            if start is None or first <= start < last:
                self._mux(packet)

    def finish(self) -> None:
        """Mux what is left inside the window and flush the encoders."""
        self.pump(until=_FOREVER)
        for out, transcode in self.tracks.values():
            if transcode:
                for packet in out.encode(None):
                    self.writer._container.mux(packet)
        self.close()

    def close(self) -> None:
        self.reader.close()

    def _window(self) -> tuple[Fraction, Fraction]:
        if self._whole_clip():
            return -_FOREVER, _FOREVER
        return self.writer._clock

    def _shift(self) -> Fraction:
        """Source seconds that become 0 in the output."""
        if self._whole_clip():
            return self.source.start_time
        return self.writer._clock[0]

    def _whole_clip(self) -> bool:
        start, end = self.writer.frame_range
        return start == 0 and (end is None or end >= self.source.frame_count)

    def _next(self) -> av.Packet[AudioStream] | None:
        """The next audio packet with data, or None at the end of the source."""
        if self.pending is not None:
            packet, self.pending = self.pending, None
            return packet
        try:
            for packet in self.packets:
                if packet.size:
                    return packet
        except (av.FFmpegError, EOFError) as exc:
            raise not_readable(self.source.path, exc) from None
        return None

    def _mux(self, packet: av.Packet[AudioStream]) -> None:
        """Copy the packet (timestamps moved) or decode it and re-encode it."""
        out, transcode = self.tracks[packet.stream.index]
        ticks = round(self._shift() / packet.time_base)  # decoded frames keep the packet's time base
        if not transcode:
            packet.pts = None if packet.pts is None else packet.pts - ticks
            packet.dts = None if packet.dts is None else packet.dts - ticks
            packet.stream = out
            self.writer._container.mux(packet)
            return
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            raise not_readable(self.source.path, exc) from None
        for frame in frames:
            if frame.pts is not None:
                frame.pts -= ticks
            for encoded in out.encode(frame):
                self.writer._container.mux(encoded)


def _encoder(action: str, stream: AudioStream) -> Literal["aac", "pcm_s16le", "pcm_s24le"]:
    """The encoder for a transcode: AAC, or PCM as deep as the decoded samples."""
    if action == "aac":
        return "aac"
    return "pcm_s16le" if stream.format.bits <= 16 else "pcm_s24le"


def _layout(stream: AudioStream) -> str:
    """The source's channel layout, or FFmpeg's default one for its channel count ("2c" is
    stereo) when the source leaves it unnamed ("2 channels": Matroska or WAV PCM), which
    encoders refuse."""
    if stream.layout.name == f"{stream.channels} channels":
        return av.AudioLayout(f"{stream.channels}c").name
    return stream.layout.name


def _packet_time(packet: av.Packet) -> Fraction | None:
    stamp = packet.pts if packet.pts is not None else packet.dts
    return None if stamp is None else stamp * packet.time_base
