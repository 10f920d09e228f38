"""``vidscale timeline``: upscale only what an edit uses, and relink a copy of the edit to it.

An editor's 90-second cut of a 40-minute source needs 90 seconds upscaled, not 40 minutes.
OpenTimelineIO is the model of the edit (EDL, FCP XML and FCPXML come in through its adapter
plugins). For every media file the edit uses, the clips' source ranges plus ``handles`` frames on
each side (clamped to the file) are merged where they overlap or touch; each merged range is
upscaled with the ordinary engines (:func:`~vidscale.jobs.engines.upscale_one` with ``frames``),
into ``NAME_FIRST-LAST_2x.mov`` carrying the source timecode of its first frame. The new edit is a
deep copy in which every clip points at its range's output, with the same in and out points: its
reference's available range starts at the output's timecode, so the cut plays the same frames.

Times in an edit are timecode-based (a clip starting at 01:00:00:00 of a file whose first frame
is 01:00:00:00 uses its frame 0): OTIO values at the media's timecode rate are timecode frame
counts (drop-frame already counted out, like :func:`~vidscale.media.timecode.timecode_to_frames`),
so a frame of the file is ``value - timecode_frames(file start)``, exactly, at 23.976, 25,
29.97 DF and 59.94. A file without a timecode starts where its reference's available range says,
else at 0.

Media that is missing or fails is reported per clip; the rest goes on and the new edit keeps the
original reference for those clips. Outputs are written atomically by the engines, so one found
under its final name is done: a second run only rewrites the edit (a freescale range cut short
resumes from its job store).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from ..atomic import atomic_path, make_folder
from ..errors import InputError, InvalidMediaError, MediaNotFoundError, VidscaleError
from ..media import VideoInfo, probe
from ..media.codecs import output_suffix
from ..media.timecode import nominal_rate, timecode_to_frames
from ..progress import Log, Progress
from ..settings import Settings
from .batch import BatchSummary, ItemResult, describe_item, failed_item
from .engines import upscale_one

Span = tuple[int, int]  # source frames [start, end), end exclusive

# Adapter plugins OTIO loads by file suffix (only .otio/.otioz/.otiod ship with OTIO itself).
ADAPTER_PACKAGES = {
    "edl": "otio-cmx3600-adapter", "xml": "otio-fcp-adapter", "fcpxml": "otio-fcpx-xml-adapter",
    "aaf": "otio-aaf-adapter", "ale": "otio-ale-adapter",
}


def with_handles(span: Span, handles: int, frame_count: int) -> Span:
    """``span`` widened by ``handles`` frames each side, clamped to the file's frames."""
    return max(0, span[0] - handles), min(frame_count, span[1] + handles)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Sorted spans, those that overlap or touch (``a.end == b.start``) merged into one."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


@dataclass(frozen=True)
class MediaClock:
    """Converts an edit's times to one file's frame indices and back.

    ``origin`` is the file's first frame as a timecode frame count at ``rate``.
    """

    path: Path
    rate: Fraction
    origin: int

    def frames(self, value: Any) -> int:
        """A RationalTime (a start or a duration) as frames of this file, exactly."""
        if max(1, round(value.rate)) != nominal_rate(self.rate):
            raise InvalidMediaError(f"{self.path}: the edit counts it at {value.rate:g} fps but the "
                                    f"file runs at {self.rate} fps; relink the clip to the right file")
        return round(value.value)

    def span(self, used: Any) -> Span:
        """A TimeRange of the edit as source frames [start, end)."""
        start = self.frames(used.start_time) - self.origin
        return start, start + self.frames(used.duration)

    def time_range(self, span: Span, rate: float) -> Any:
        """Source frames [start, end) as an OTIO TimeRange counted at ``rate`` (the edit's)."""
        otio = import_otio()
        start, end = span
        return otio.opentime.TimeRange(otio.opentime.RationalTime(self.origin + start, rate),
                                       otio.opentime.RationalTime(end - start, rate))


def media_clock(info: VideoInfo, reference: Any) -> MediaClock:
    """The file's clock: its timecode, else its reference's available range start, else 0."""
    if info.timecode:
        origin = timecode_to_frames(info.timecode, info.frame_rate)
    elif reference.available_range is not None:
        origin = round(reference.available_range.start_time.value)
    else:
        origin = 0
    return MediaClock(info.path, info.frame_rate, origin)


def import_otio() -> Any:
    """OpenTimelineIO, or an error saying how to install it (exit 2)."""
    try:
        import opentimelineio
    except ImportError:
        raise InputError('vidscale timeline needs OpenTimelineIO: pip install "vidscale[timeline]"') from None
    return opentimelineio


def check_adapter(path: Path) -> None:
    """Fail (exit 2) when no installed OTIO adapter reads or writes ``path``'s suffix, naming the
    plugin package that would."""
    otio = import_otio()
    try:
        otio.adapters.from_filepath(str(path))
    except otio.exceptions.NoKnownAdapterForExtensionError:
        suffix = path.suffix.lstrip(".").lower()
        package = ADAPTER_PACKAGES.get(suffix)
        fix = f"pip install {package}" if package else "use .otio, .edl, .xml (FCP 7) or .fcpxml"
        raise InputError(f"{path}: OpenTimelineIO has no adapter for .{suffix} files ({fix})") from None


def read_edit(path: Path) -> Any:
    """The edit as an OTIO timeline; EDL / FCP XML / FCPXML need OTIO's adapter plugins."""
    otio = import_otio()
    if not path.is_file():
        raise MediaNotFoundError(f"{path}: no such edit file")
    check_adapter(path)
    try:
        edit = otio.adapters.read_from_file(str(path))
    except Exception as exc:  # adapters raise anything from ValueError to their own errors
        raise InvalidMediaError(f"{path}: not a readable edit ({exc})") from None
    if not isinstance(edit, otio.schema.Timeline):
        raise InvalidMediaError(f"{path}: holds a {type(edit).__name__}, not one timeline")
    return edit


def media_path(url: str, folder: Path) -> Path:
    """A reference's target URL (``file://`` URL or a path, relative to the edit) as a path."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(unquote(parsed.path))).resolve()
    return (folder / url).resolve()  # an absolute path stays itself


def used_range(clip: Any) -> Any:
    """What the cut shows of ``clip``, with the frames transitions into and out of it borrow."""
    try:
        return clip.visible_range()
    except Exception:  # a clip outside a track (directly in a stack) has no neighbours
        pass
    try:
        return clip.trimmed_range()
    except Exception:
        raise InvalidMediaError(f"clip {clip.name!r} has no source range and its media reference "
                                "no available range: the edit does not say which frames it uses") from None


@dataclass
class TimelineRequest:
    """What ``vidscale timeline`` was asked to do."""

    edit: Path
    output: Path
    settings: Settings
    handles: int = 12
    out_dir: Path | None = None  # default: beside the new edit


@dataclass
class ClipUse:
    """One clip of the edit and what it needs from its file."""

    index: int  # position in ``timeline.find_clips()``
    name: str
    span: Span | None = None
    problem: str | None = None  # why it keeps its original reference


@dataclass
class TimelineSummary:
    """Per range items (as a batch), the clips kept on their original media, and the new edit."""

    batch: BatchSummary
    timeline: Path
    relinked: int = 0
    kept: list[ClipUse] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The batch rule over ranges and media: 0 if nothing failed, a lone item's code, else 1."""
        return self.batch.exit_code

    def to_dict(self) -> dict[str, Any]:
        return {**self.batch.to_dict(), "timeline": str(self.timeline), "relinked": self.relinked,
                "kept": [{"clip": c.name, "reason": c.problem} for c in self.kept]}


def range_output(source: Path, span: Span, settings: Settings, out_dir: Path) -> Path:
    """``NAME_FIRST-LAST_2x.mov``: source frames FIRST to LAST (inclusive) of ``source``."""
    suffix = output_suffix(settings.output.codec)
    return out_dir / f"{source.stem}_{span[0]}-{span[1] - 1}_{settings.upscale.scale}x{suffix}"


def run_timeline(request: TimelineRequest, *, progress: Progress | None = None,
                 log: Log | None = None) -> TimelineSummary:
    """Upscale the ranges the edit uses, then write the relinked copy of the edit."""
    say = log or (lambda _line: None)
    started = time.perf_counter()
    otio = import_otio()
    edit = read_edit(request.edit)
    check_adapter(request.output)  # before any work, not after it
    out_dir = request.out_dir or request.output.parent
    make_folder(out_dir, exit_code=2)
    clips = edit.find_clips()
    by_file: dict[Path, list[ClipUse]] = {}
    kept: list[ClipUse] = []
    for index, clip in enumerate(clips):
        use = ClipUse(index, clip.name)
        reference = clip.media_reference
        if isinstance(reference, otio.schema.ExternalReference) and reference.target_url:
            by_file.setdefault(media_path(reference.target_url, request.edit.parent), []).append(use)
        else:
            use.problem = f"no media file ({type(reference).__name__})"
            kept.append(use)
    batch = BatchSummary()
    new_references: dict[int, Any] = {}
    claimed: dict[Path, Path] = {}
    for source, uses in by_file.items():
        reference = clips[uses[0].index].media_reference
        for item, relinks in _upscale_file(source, uses, clips, reference, request, out_dir,
                                           claimed, progress):
            batch.items.append(item)
            new_references.update(relinks)
            say(describe_item(item))
        kept.extend(use for use in uses if use.index not in new_references)
    new_edit = edit.deepcopy()
    for index, clip in enumerate(new_edit.find_clips()):
        if index in new_references:
            clip.source_range = clips[index].trimmed_range()  # the same in and out points
            clip.media_reference = new_references[index]
    with atomic_path(request.output) as temp:
        otio.adapters.write_to_file(new_edit, str(temp))
    for use in sorted(kept, key=lambda u: u.index):
        say(f"kept    clip {use.index + 1} {use.name!r} on its original media: {use.problem}")
    batch.elapsed_seconds = time.perf_counter() - started
    say(f"{batch.count('done')} ranges upscaled, {batch.count('skipped')} already done, "
        f"{batch.failed} failed; {len(new_references)} of {len(clips)} clips relinked "
        f"in {request.output}")
    return TimelineSummary(batch, request.output, len(new_references), kept)


def _upscale_file(source: Path, uses: list[ClipUse], clips: list[Any], reference: Any,
                  request: TimelineRequest, out_dir: Path, claimed: dict[Path, Path],
                  progress: Progress | None):
    """(item, {clip index: new reference}) for each merged range of one file."""
    try:
        info = probe(source)
    except VidscaleError as error:
        for use in uses:
            use.problem = str(error)
        yield failed_item(source, None, error), {}
        return
    otio = import_otio()
    clock = media_clock(info, reference)
    spans = []
    for use in uses:
        try:
            use.span = _clip_span(clock, info, used_range(clips[use.index]))
            spans.append(with_handles(use.span, request.handles, info.frame_count))
        except VidscaleError as error:
            use.problem = str(error)
            yield ItemResult(source, "failed", error=f"clip {use.name!r}: {error}",
                             exit_code=error.exit_code), {}
    for span in merge_spans(spans):
        inside = [u for u in uses if u.span and span[0] <= u.span[0] and u.span[1] <= span[1]]
        item = _upscale_range(source, span, request.settings, out_dir, claimed, progress)
        if item.status == "failed":
            for use in inside:
                use.problem = item.error
            yield item, {}
            continue
        target = item.output.resolve()
        url = target.as_uri() if str(reference.target_url).startswith("file:") else str(target)
        relinks = {}
        for use in inside:
            rate = clips[use.index].trimmed_range().start_time.rate
            relinks[use.index] = otio.schema.ExternalReference(
                target_url=url, available_range=clock.time_range(span, rate))
        yield item, relinks


def _clip_span(clock: MediaClock, info: VideoInfo, used: Any) -> Span:
    start, end = clock.span(used)
    if start < 0 or end > info.frame_count or end <= start:
        raise InvalidMediaError(
            f"{info.path}: the edit uses frames {start}:{end} but the file has frames "
            f"0:{info.frame_count} (timecode {info.timecode or 'none'}); relink the clip")
    return start, end


def _upscale_range(source: Path, span: Span, settings: Settings, out_dir: Path,
                   claimed: dict[Path, Path], progress: Progress | None) -> ItemResult:
    output = range_output(source, span, settings, out_dir)
    first = claimed.setdefault(output.resolve(), source)
    if first != source:
        return ItemResult(source, "failed", output, exit_code=2, error=(
            f"{output} is also the output of {first}; files with the same name need "
            "different --out-dir runs"))
    if output.exists():
        return ItemResult(source, "skipped", output, error=f"{output} exists (done by an earlier run)")
    try:
        result = upscale_one(source, output, settings, frames=span, progress=progress).to_dict()
    except VidscaleError as error:
        return failed_item(source, output, error)
    return ItemResult(source, "done", output, result=result)
