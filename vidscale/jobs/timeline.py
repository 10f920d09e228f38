"""``vidscale timeline``: upscale only what an edit uses, and relink a copy of the edit to it.

An editor's 90-second cut of a 40-minute source needs 90 seconds upscaled, not 40 minutes.
OpenTimelineIO is the model of the edit (:mod:`.edits` reads and writes it). Every clip is sorted
first: clips on audio tracks, generators (black, bars, titles) and stills or image sequences pass
through the new edit untouched, and are listed as such; only video clips are worked on, so only
video uses of a file count for its ranges. Each video clip's media is found here, or under
``--media`` (:mod:`.media_paths`); for every file, the clips' source ranges (:mod:`.clocks`) plus
``handles`` frames on each side are merged where they overlap or touch, and each merged range is
upscaled with the ordinary engines (:func:`~vidscale.jobs.engines.upscale_one` with ``frames``)
into ``NAME_FIRST-LAST_2x.mov``, carrying the source timecode of its first frame. The new edit is
a deep copy in which every such clip points at its range's output, with the same in and out
points: its reference's available range starts at the output's timecode, so the cut plays the
same frames.

Everything that can be known before the work is checked before it: the edit reads, its media is
found and covers the clips, the output format can hold the relinked edit (it is written in
memory), the outputs can be written. ``dry_run`` stops there and prints each range's plan.
Media that is offline or fails is reported per file; the rest goes on and the new edit keeps
the original reference for those clips. Outputs are written atomically by the engines, so one
found under its final name is done: a second run only rewrites the edit (a freescale range cut
short resumes from its job store).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..atomic import check_writable, make_folder
from ..errors import InputError, Interrupted, InvalidMediaError, VidscaleError
from ..media import VideoInfo, probe
from ..media.codecs import output_suffix
from ..media.write import check_output
from ..progress import Log, Progress
from ..settings import Settings
from .batch import BatchSummary, ItemResult, describe_item, failed_item, plan_one
from .clocks import MediaClock, Span, media_clock, merge_spans, same_count, with_handles
from .edits import adapter_name, check_writer, import_otio, read_edit, reference_url, write_edit
from .engines import upscale_one
from .media_paths import Found, MediaFinder, recorded_path
from .models import ModelKeeper

# Media vidscale does not upscale, known by suffix: it passes through the new edit untouched.
AUDIO_SUFFIXES = frozenset({".wav", ".bwf", ".aif", ".aiff", ".mp3", ".m4a", ".aac", ".flac", ".ogg"})
IMAGE_SUFFIXES = frozenset({".exr", ".dpx", ".cin", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".tga",
                            ".bmp", ".psd", ".gif", ".webp"})
UNTOUCHED = ("audio", "generator", "image")  # the kinds of clip that pass through


@dataclass
class TimelineRequest:
    """What ``vidscale timeline`` was asked to do."""

    edit: Path
    output: Path
    settings: Settings
    handles: int = 12
    out_dir: Path | None = None  # default: beside the new edit
    media: list[Path] = field(default_factory=list)  # --media: where to find media named elsewhere
    rate: Fraction | None = None  # --rate: an EDL's frame rate (EDLs do not carry one)
    timeline: str | None = None  # --timeline: which of a file's timelines
    overwrite: bool = False
    dry_run: bool = False
    should_stop: Callable[[], bool] | None = None  # asked after every step; yes: checkpoint and stop

    @property
    def rate_assumed(self) -> bool:
        """An EDL read without ``--rate``: its rate is the adapter's default, not the edit's word."""
        return self.rate is None and self.edit.suffix.lower() == ".edl"


@dataclass
class ClipUse:
    """One clip of the edit: what it is, where its media was found, what it needs from it."""

    index: int  # position in ``timeline.find_clips()``
    name: str
    kind: str = "video"  # "video", or one of UNTOUCHED
    media: str | None = None  # the path or URL the edit names
    found: Found | None = None
    span: Span | None = None
    output: Path | None = None  # the range's output it is relinked to
    problem: str | None = None  # why a video clip keeps its original reference

    @property
    def label(self) -> str:
        return f"clip {self.index + 1} {self.name!r}"

    def to_dict(self) -> dict[str, Any]:
        status = ("untouched" if self.kind in UNTOUCHED else "relinked" if self.output
                  else "kept" if self.problem else "planned")
        return {"clip": self.name, "index": self.index + 1, "kind": self.kind, "status": status,
                "media": self.media, "found": str(self.found.path) if self.found else None,
                "found_by": self.found.how if self.found else None,
                "frames": list(self.span) if self.span else None,
                "output": str(self.output) if self.output else None, "reason": self.problem}


@dataclass
class RangeJob:
    """One merged range of one file, the clips inside it, and where it goes."""

    source: Path
    info: VideoInfo
    clock: MediaClock
    span: Span
    output: Path
    uses: list[ClipUse]


@dataclass
class TimelineSummary:
    """Per range items (as a batch), every clip's fate, and the new edit."""

    batch: BatchSummary
    timeline: Path | None  # None for a dry run: nothing is written
    clips: list[ClipUse] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The batch rule over ranges and video media; untouched clips do not count. An edit
        without any video clip has nothing to fail: 0."""
        return self.batch.exit_code if self.batch.items else 0

    @property
    def relinked(self) -> int:
        return sum(use.output is not None for use in self.clips)

    @property
    def kept(self) -> list[ClipUse]:
        return [use for use in self.clips if use.problem]

    def to_dict(self) -> dict[str, Any]:
        return {**self.batch.to_dict(), "exit_code": self.exit_code,
                "timeline": str(self.timeline) if self.timeline else None,
                "relinked": self.relinked, "clips": [use.to_dict() for use in self.clips],
                "kept": [{"clip": use.name, "reason": use.problem} for use in self.kept]}


def range_output(source: Path, span: Span, settings: Settings, out_dir: Path) -> Path:
    """``NAME_FIRST-LAST_2x.mov``: source frames FIRST to LAST (inclusive) of ``source``."""
    suffix = output_suffix(settings.output.codec)
    return out_dir / f"{source.stem}_{span[0]}-{span[1] - 1}_{settings.upscale.scale}x{suffix}"


def run_timeline(request: TimelineRequest, *, progress: Progress | None = None,
                 log: Log | None = None) -> TimelineSummary:
    """Check everything, upscale the ranges the edit uses, then write the relinked copy of it."""
    say = log or (lambda _line: None)
    started = time.perf_counter()
    edit, out_dir = _start(request)
    clips = edit.find_clips()
    uses = [sort_clip(index, clip) for index, clip in enumerate(clips)]
    batch = BatchSummary()
    jobs = _plan_ranges(request, clips, uses, out_dir, batch)
    check_writer(_relinked(edit, jobs, request.output), request.output)  # before any work
    _report_clips(uses, say)
    for item in batch.items:  # what was found before any work: offline media, clips out of range
        say(describe_item(item))
    if request.dry_run:
        _plan_jobs(jobs, request, batch, say)
    else:
        for folder in (out_dir, request.output.parent):
            make_folder(folder, exit_code=2)
        done = _run_jobs(jobs, request, batch, progress, say)
        write_edit(_relinked(edit, done, request.output), request.output)
    batch.elapsed_seconds = time.perf_counter() - started
    summary = TimelineSummary(batch, None if request.dry_run else request.output, uses)
    say(_closing_line(summary, jobs, request))
    return summary


def _start(request: TimelineRequest) -> tuple[Any, Path]:
    """The edit's timeline and the outputs' folder, after the checks that need no media."""
    edit = read_edit(request.edit, rate=request.rate, timeline=request.timeline)
    adapter_name(request.output)  # an adapter must write it: before any work, not after it
    if request.output.resolve() == request.edit.resolve():
        raise InputError(f"{request.output}: the new edit would replace the edit it comes from; "
                         "choose another -o")
    if request.settings.cluster.address:
        raise InputError("vidscale timeline runs its ranges in this process: --cluster (or a "
                         "preset's [cluster] address) is for vidscale upscale and watch; leave it out")
    for folder in request.media:
        if not folder.is_dir():
            raise InputError(f"{folder}: --media needs a folder that holds the edit's media")
    out_dir = request.out_dir or request.output.parent
    for folder in {out_dir, request.output.parent}:  # the ranges' and the new edit's
        check_writable(folder)
    return edit, out_dir


def sort_clip(index: int, clip: Any) -> ClipUse:
    """What a clip is: video to upscale, or audio, a generator or an image that pass through."""
    otio = import_otio()
    use = ClipUse(index, clip.name)
    reference = clip.media_reference
    if isinstance(reference, otio.schema.ExternalReference) and reference.target_url:
        use.media = reference.target_url
    if _track_kind(clip) == otio.schema.TrackKind.Audio:
        use.kind = "audio"
    elif isinstance(reference, otio.schema.GeneratorReference):
        use.kind = "generator"
    elif isinstance(reference, otio.schema.ImageSequenceReference):
        use.kind = "image"
    elif use.media:
        use.kind = kind_of(recorded_path(use.media).suffix)
    return use


def kind_of(suffix: str) -> str:
    """What a file's suffix says it is: audio, an image (a still, a frame of a sequence) or video."""
    suffix = suffix.lower()
    return "audio" if suffix in AUDIO_SUFFIXES else "image" if suffix in IMAGE_SUFFIXES else "video"


def _track_kind(clip: Any) -> str:
    """The kind of the innermost track holding ``clip`` (a clip outside any track is video)."""
    otio = import_otio()
    parent = clip.parent()
    while parent is not None and not isinstance(parent, otio.schema.Track):
        parent = parent.parent()
    return parent.kind if parent is not None else otio.schema.TrackKind.Video


def _plan_ranges(request: TimelineRequest, clips: list[Any], uses: list[ClipUse], out_dir: Path,
                 batch: BatchSummary) -> list[RangeJob]:
    """The merged ranges of every video file the edit uses; failures become items."""
    claimed: dict[Path, Path] = {}
    jobs: list[RangeJob] = []
    for source, file_uses in _find_media(request, clips, uses, batch).items():
        jobs += _file_ranges(source, file_uses, clips, request, out_dir, claimed, batch)
    return jobs


def _find_media(request: TimelineRequest, clips: list[Any], uses: list[ClipUse],
                batch: BatchSummary) -> dict[Path, list[ClipUse]]:
    """Each video clip's media file here (clips by file); offline media becomes one failed item
    per file, naming its clips."""
    finder = MediaFinder(request.media)
    by_file: dict[Path, list[ClipUse]] = {}
    offline: dict[str, list[ClipUse]] = {}
    for use in uses:
        if use.kind != "video":
            continue
        titles = [("clip name", use.name), ("reel name", _reel(clips[use.index]))]
        try:
            use.found = finder.find(use.media, titles, request.edit.parent)
            if use.found is None:
                use.problem = finder.missing(use.media, titles)
        except InputError as error:
            use.problem = str(error)
        if use.found is None:
            offline.setdefault(use.media or use.label, []).append(use)
            continue
        use.kind = kind_of(use.found.path.suffix)  # found by its clip name: now it is known
        if use.kind == "video":
            by_file.setdefault(use.found.path, []).append(use)
    for key, lost in offline.items():  # named as the machine that wrote the edit meant it
        named = Path(str(recorded_path(key))) if lost[0].media else Path(key)
        batch.items.append(ItemResult(named, "failed", exit_code=2,
                                      error=_clips_named(lost) + ": " + str(lost[0].problem)))
    return by_file


def _reel(clip: Any) -> str:
    return str(clip.metadata.get("cmx_3600", {}).get("reel") or "")


def _clips_named(uses: list[ClipUse]) -> str:
    return ", ".join(use.label for use in uses)


def _file_ranges(source: Path, uses: list[ClipUse], clips: list[Any], request: TimelineRequest,
                 out_dir: Path, claimed: dict[Path, Path], batch: BatchSummary) -> list[RangeJob]:
    """The merged ranges one file's video clips need (failures as items, per file or clip)."""
    reference = clips[uses[0].index].media_reference
    try:
        info = probe(source)
        clock = media_clock(info, reference)
    except VidscaleError as error:
        for use in uses:
            use.problem = str(error)
        batch.items.append(failed_item(source, None, error))
        return []
    spans = []
    for use in uses:
        try:
            use.span = _clip_span(clock, info, clips[use.index], request)
            spans.append(with_handles(use.span, request.handles, info.frame_count))
        except VidscaleError as error:
            use.problem = str(error)
            batch.items.append(ItemResult(source, "failed", exit_code=error.exit_code,
                                          error=f"{use.label}: {error}"))
    jobs = []
    for span in merge_spans(spans):
        inside = [u for u in uses if u.span and span[0] <= u.span[0] and u.span[1] <= span[1]]
        output = range_output(source, span, request.settings, out_dir)
        first = claimed.setdefault(output.resolve(), source)
        if first != source:
            clash = (f"{output} is also the output of {first}; files with the same name need "
                     "different --out-dir runs")
            batch.items.append(ItemResult(source, "failed", output, exit_code=2, error=clash))
            for use in inside:
                use.problem = clash
            continue
        jobs.append(RangeJob(source, info, clock, span, output, inside))
    return jobs


def _clip_span(clock: MediaClock, info: VideoInfo, clip: Any, request: TimelineRequest) -> Span:
    used = used_range(clip)
    if request.rate_assumed and not same_count(used.start_time.rate, info.frame_rate):
        raise InvalidMediaError(
            f"{info.path}: runs at {float(info.frame_rate):g} fps but the EDL was read at "
            f"{used.start_time.rate:g} fps (an EDL does not say its rate); pass --rate with the "
            "rate of its timecodes")
    start, end = clock.span(used)
    if start < 0 or end > info.frame_count or end <= start:
        raise InvalidMediaError(
            f"{info.path}: the edit uses frames {start}:{end} but the file has frames "
            f"0:{info.frame_count} (timecode {info.timecode or 'none'}); relink the clip")
    return start, end


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


def _reference_rate(clip: Any, info: VideoInfo) -> float:
    """The rate a clip's new reference counts at: the clip's own where it counts as the file
    does (so in, out and the reference subtract exactly: 24 over 23.976 media stays 24), else the
    edit's way of writing the file's rate, else the file's rate."""
    candidates = [clip.trimmed_range().start_time.rate]
    available = getattr(clip.media_reference, "available_range", None)
    if available is not None:
        candidates.append(available.start_time.rate)
    return next((float(rate) for rate in candidates if same_count(rate, info.frame_rate)),
                float(info.frame_rate))


def _relinked(edit: Any, jobs: list[RangeJob], output: Path) -> Any:
    """A copy of ``edit`` with each job's clips pointing at its output, same in and out points."""
    otio = import_otio()
    clips = edit.find_clips()
    new_edit = edit.deepcopy()
    new_clips = new_edit.find_clips()
    for job in jobs:
        for use in job.uses:
            clip = new_clips[use.index]
            clip.source_range = clips[use.index].trimmed_range()
            clip.media_reference = otio.schema.ExternalReference(
                target_url=reference_url(job.output, output, use.media),
                available_range=job.clock.time_range(job.span, _reference_rate(clips[use.index], job.info)))
            clip.media_reference.name = job.output.name
    return new_edit


def _report_clips(uses: list[ClipUse], say: Log) -> None:
    """Which clips were found where (not at their recorded path), and which pass through."""
    found: dict[Found, list[ClipUse]] = {}
    for use in uses:
        if use.found is not None and use.found.how != "recorded path":
            found.setdefault(use.found, []).append(use)
    for where, lot in found.items():
        named = (f"{lot[0].media} at {where.path} (by its {where.how})" if lot[0].media
                 else f"{where.path} by its {where.how} {where.wanted!r}")
        say(f"found   {named}: {_clips_named(lot)}")
    for kind in UNTOUCHED:
        lot = [use for use in uses if use.kind == kind]
        if lot:
            say(f"untouched {len(lot)} {kind} clip{'s' * (len(lot) != 1)} (passed through as they are): "
                f"{_clips_named(lot[:10])}{f' and {len(lot) - 10} more' if len(lot) > 10 else ''}")


def _plan_jobs(jobs: list[RangeJob], request: TimelineRequest, batch: BatchSummary, say: Log) -> None:
    """``--dry-run``: each range's plan, as ``upscale --dry-run`` prints it; nothing is written."""
    for job in jobs:
        item = _existing(job, request)
        if item is None:
            try:
                plan = plan_one(job.source, job.output, job.info, request.settings, frames=job.span)
                item = ItemResult(job.source, "planned", job.output, result=plan, notes=[_covers(job)])
            except VidscaleError as error:
                item = failed_item(job.source, job.output, error)
        batch.items.append(item)
        say(describe_item(item))


def _run_jobs(jobs: list[RangeJob], request: TimelineRequest, batch: BatchSummary,
              progress: Progress | None, say: Log) -> list[RangeJob]:
    """Upscale each range (one model kept for all of them); the jobs whose output is there."""
    settings = request.settings
    models = ModelKeeper()
    done = []
    for job in jobs:
        item = _existing(job, request)
        if item is None:
            # Outside the per-range failures: missing weights are the same for every range, and
            # are found before the first range runs (exit 2, said once).
            model = models.get(settings)[0] if settings.upscale.engine == "freescale" else None
            try:
                check_output(job.output, settings.output.codec)
                result = upscale_one(job.source, job.output, settings, frames=job.span,
                                     overwrite=request.overwrite, progress=progress,
                                     should_stop=request.should_stop, model=model).to_dict()
                item = ItemResult(job.source, "done", job.output, result=result, notes=[_covers(job)])
            except Interrupted:  # the whole run stops: the user asked to
                raise
            except VidscaleError as error:
                item = failed_item(job.source, job.output, error)
        batch.items.append(item)
        say(describe_item(item))
        if item.status != "failed":
            done.append(job)
            for use in job.uses:
                use.output = job.output
        else:
            for use in job.uses:
                use.problem = item.error
    return done


def _existing(job: RangeJob, request: TimelineRequest) -> ItemResult | None:
    if job.output.exists() and not request.overwrite:
        return ItemResult(job.source, "skipped", job.output,
                          error=f"{job.output} exists (done by an earlier run; --overwrite redoes it)")
    return None


def _covers(job: RangeJob) -> str:
    return f"frames {job.span[0]}-{job.span[1] - 1} for {_clips_named(job.uses)}"


def _closing_line(summary: TimelineSummary, jobs: list[RangeJob], request: TimelineRequest) -> str:
    batch = summary.batch
    frames = sum(job.span[1] - job.span[0] for job in jobs)
    total = sum({job.source: job.info.frame_count for job in jobs}.values())
    video = [use for use in summary.clips if use.kind == "video"]
    work = f"{len(jobs)} ranges, {frames} of the {total} frames of {len({j.source for j in jobs})} files"
    if request.dry_run:
        return (f"dry run: {work}; {batch.count('planned')} planned, {batch.count('skipped')} already "
                f"done, {batch.failed} failed; nothing written")
    return (f"{work}: {batch.count('done')} upscaled, {batch.count('skipped')} already done, "
            f"{batch.failed} failed; {summary.relinked} of {len(video)} video clips relinked "
            f"in {request.output}")
