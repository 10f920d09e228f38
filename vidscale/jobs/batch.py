"""Many inputs, one job each: expand folders, name outputs, skip finished ones, never stop early.

A folder input contributes every file under it, subfolders included (a camera card's
``A001/C0001.mp4``), that probes as a video (by content, not extension); hidden folders
(``.vidscale-jobs``, ``.Trashes``) and the ``--out-dir`` inside it are not entered. Outputs mirror
the subfolders under ``--out-dir`` (or lie beside each input), so ``A001/C0001.mp4`` and
``A002/C0001.mp4`` never collide. Nothing is dropped silently: a file with a video's suffix that
does not probe is a failure (damaged), any other non-video file is named as passed over, and a
folder without a single video is a failure saying what was found in it.

The exit status is the worst over the items (README, "Exit status"): 0 when every input has its
complete output (made now, or already there), 1 when a job failed while running, 2 when an input
or option was bad before any work began. One failing clip never stops the batch.

Outputs are written atomically by the engines, so an output under its final name is complete:
that is why an existing one means "skip" (not "half done"). Two inputs that would write the same
output name (``a.mp4`` and ``b/a.mov`` into one ``--out-dir``) are caught here, because the second
would otherwise be skipped as "already done" with the first one's result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from ..atomic import check_writable, make_folder
from ..errors import InputError, Interrupted, InvalidMediaError, MediaNotFoundError, VidscaleError
from ..media import VideoInfo, probe
from ..media.codecs import output_suffix
from ..media.probe import FrameSelection
from ..media.write import check_output
from ..progress import Log, Progress
from ..settings import Settings
from ..work.plan import describe_estimate, describe_plan, estimate_seconds
from .engines import check_job, upscale_one

# Suffixes of video files: one of these that does not probe is a damaged clip (a failure), any
# other file that does not probe is passed over (a sidecar, a thumbnail, notes).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".mxf", ".avi", ".mts", ".m2ts", ".ts",
    ".mpg", ".mpeg", ".3gp", ".wmv", ".flv", ".dv",
})
SHOWN_NAMES = 10  # passed-over files named on the status line; --json lists them all


@dataclass
class BatchRequest:
    """What ``vidscale upscale`` was asked to do."""

    inputs: list[Path]
    settings: Settings
    output: Path | None = None  # only with exactly one input
    out_dir: Path | None = None  # default: next to each input
    frames: FrameSelection | None = None
    overwrite: bool = False
    dry_run: bool = False
    should_stop: Callable[[], bool] | None = None  # asked after every step; yes: checkpoint and stop


@dataclass(frozen=True)
class Source:
    """A clip to upscale and the subfolder (of the folder input it was found in) it lies in."""

    path: Path
    subfolder: Path = Path()


@dataclass
class ItemResult:
    """The outcome for one input: done (with the engine's result), skipped, failed or planned."""

    input: Path
    status: str  # "done" | "skipped" | "failed" | "planned"
    output: Path | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": str(self.input), "status": self.status,
                                "output": str(self.output) if self.output else None}
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        if self.notes:
            data["notes"] = self.notes
        return data


@dataclass
class BatchSummary:
    items: list[ItemResult] = field(default_factory=list)
    passed_over: list[Path] = field(default_factory=list)  # files in folders that are not video
    duplicates: list[Path] = field(default_factory=list)  # inputs named more than once: run once
    elapsed_seconds: float = 0.0

    def count(self, status: str) -> int:
        """Items that ended ``status``: "done", "skipped", "failed" or "planned"."""
        return sum(item.status == status for item in self.items)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def exit_code(self) -> int:
        """The worst over the items: 0 all outputs complete, 1 a job failed, 2 bad input."""
        return max((item.exit_code for item in self.items), default=2)

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.count("done"), "skipped": self.count("skipped"),
                "failed": self.failed, "elapsed_seconds": round(self.elapsed_seconds, 3),
                "exit_code": self.exit_code,
                "passed_over": [str(path) for path in self.passed_over],
                "duplicates": [str(path) for path in self.duplicates],
                "items": [item.to_dict() for item in self.items]}


Summary = TypeVar("Summary", bound=BatchSummary)  # a driver's own summary class (the cluster's)


def default_output(source: Path, settings: Settings, out_dir: Path | None = None) -> Path:
    """``NAME_2x.mov`` (``.mp4`` for H.264/H.265) next to the input or in ``out_dir``."""
    folder = out_dir if out_dir is not None else source.parent
    name = f"{source.stem}_{settings.upscale.scale}x{output_suffix(settings.output.codec)}"
    return folder / name


def output_of(source: Source, settings: Settings, out_dir: Path | None) -> Path:
    """Where ``source``'s output goes: mirrored under ``out_dir``, or beside the clip."""
    folder = out_dir / source.subfolder if out_dir is not None else None
    return default_output(source.path, settings, folder)


@dataclass
class Expansion:
    """What the inputs hold: clips to run, failures found before any work, files passed over."""

    sources: list[Source] = field(default_factory=list)
    failures: list[ItemResult] = field(default_factory=list)
    passed_over: list[Path] = field(default_factory=list)
    duplicates: list[Path] = field(default_factory=list)


def expand_inputs(inputs: list[Path], *, skip: Path | None = None) -> Expansion:
    """Files as given; folders replaced by the videos under them (sorted, recursively).

    ``skip``: a folder not to enter (the ``--out-dir``, when it lies inside an input folder). The
    same file named twice (or given and also inside a given folder) runs once, and is named.
    """
    found = Expansion()
    seen: set[Path] = set()
    for path in inputs:
        if path.is_dir():
            _expand_folder(path, skip, found, seen)
        else:
            _add(Source(path), found, seen)
    return found


def _add(source: Source, found: Expansion, seen: set[Path]) -> None:
    key = source.path.resolve()
    if key in seen:
        found.duplicates.append(source.path)
    else:
        seen.add(key)
        found.sources.append(source)


def _expand_folder(folder: Path, skip: Path | None, found: Expansion, seen: set[Path]) -> None:
    videos: list[Path] = []
    damaged: list[tuple[Path, InputError]] = []
    other: list[Path] = []
    for path in files_under(folder, skip):
        try:
            probe(path)
            videos.append(path)
        except InputError as error:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                damaged.append((path, error))
            else:
                other.append(path)
    if not videos:
        found.failures.append(ItemResult(folder, "failed", exit_code=2,
                                         error=_nothing_found(folder, damaged, other)))
        return
    for path in videos:
        _add(Source(path, path.parent.relative_to(folder)), found, seen)
    found.failures.extend(ItemResult(path, "failed", exit_code=error.exit_code,
                                     error=reason(error, path) + "; damaged? check that it plays, "
                                     "or move it out of the folder") for path, error in damaged)
    found.passed_over.extend(other)


def files_under(folder: Path, skip: Path | None = None) -> Iterator[Path]:
    """Files under ``folder`` in name order, depth first; hidden entries and ``skip`` left out.

    Hidden files include ``.NAME.partial`` outputs being written right now; symlinked folders are
    not followed (no loops).
    """
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not entry.is_symlink() and (skip is None or entry.resolve() != skip):
                yield from files_under(entry, skip)
        elif entry.is_file():
            yield entry


def _nothing_found(folder: Path, damaged: list[tuple[Path, InputError]], other: list[Path]) -> str:
    total = len(damaged) + len(other)
    if not total:
        return (f"no files in {folder} or its subfolders (hidden ones are skipped); "
                "give a folder that holds clips")
    names = [f"{path.relative_to(folder)} (damaged: {reason(error, path)})" for path, error in damaged]
    names += [str(path.relative_to(folder)) for path in other]
    return (f"found {total} file{'s' * (total != 1)} in {folder}, none is a video: "
            f"{_names(names)}; give a folder that holds clips")


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def reason(error: BaseException, path: Path) -> str:
    """The error's message without a leading ``PATH: `` (the status line names the file once)."""
    message = str(error)
    return message.removeprefix(f"{path}: ")


def own_outputs(sources: list[Source], request: BatchRequest) -> dict[Path, Path]:
    """Output path -> input, for every output this batch (or a run without --out-dir) writes.

    Running ``vidscale upscale *.mov`` twice would otherwise upscale the first run's results
    again (``a_2x_2x.mov``): an input found here is skipped, with the reason.
    """
    outputs: dict[Path, Path] = {}
    for source in sources:
        for folder in {request.out_dir, None}:
            outputs.setdefault(output_of(source, request.settings, folder).resolve(), source.path)
    return outputs


def plan_one(source: Path, output: Path, info: VideoInfo, settings: Settings, *,
             frames=None) -> dict[str, Any]:
    """``--dry-run``: the checks a real run makes before it starts, and what it would do.

    No model is loaded and nothing is written; missing weights fail here as they would there.
    """
    check_output(output, settings.output.codec)
    check_job(source, settings)
    start, end = info.frame_range(frames)
    planned: dict[str, Any] = {"engine": settings.upscale.engine, "output": str(output),
                               "codec": settings.output.codec}
    if settings.upscale.engine == "lanczos":
        return {**planned, "frames": end - start, "width": info.width * settings.upscale.scale,
                "height": info.height * settings.upscale.scale}
    from ..model import resolve_model_path
    from ..pipeline.loading import this_machine
    from ..pipeline.steps import planned_without_model

    planned["model"] = str(resolve_model_path(settings.model.path))
    plan = planned_without_model(info.width, info.height, (start, end), settings).to_dict()
    machine = this_machine(settings.model)
    return {**planned, "plan": plan, "machine": machine,
            "estimate_seconds": estimate_seconds(plan["tflops_total"], machine)}


def run_batch(request: BatchRequest, *, progress: Progress | None = None,
              log: Log | None = None) -> BatchSummary:
    """Run one job per input; report each outcome through ``log`` and return the summary."""
    say = log or (lambda _line: None)
    started = time.perf_counter()
    summary, found, outputs = start_batch(request, say, BatchSummary())
    claimed: dict[Path, Path] = {}  # output -> the input that writes it in this batch
    for source in found.sources:
        item = check_item(source, request, outputs, claimed)
        if isinstance(item, Ready):
            item = run_item(item, request, progress)
        summary.items.append(item)
        say(describe_item(item))
    finish_batch(summary, found, request, started, say)
    return summary


@dataclass(frozen=True)
class Ready:
    """An input that passed every check a run makes before its job starts."""

    path: Path
    output: Path
    notes: list[str]


def start_batch(request: BatchRequest, say: Log, summary: Summary) -> tuple[Summary, Expansion, dict[Path, Path]]:
    """Check the output folder, find the clips, say what was passed over; the drivers' first step.

    ``summary``: the (sub)class instance to fill, e.g. the cluster driver's.
    """
    if request.out_dir is not None:
        if request.dry_run:
            check_writable(request.out_dir)
        else:
            make_folder(request.out_dir, exit_code=2)
    skip = request.out_dir.resolve() if request.out_dir is not None else None
    found = expand_inputs(request.inputs, skip=skip)
    summary.passed_over, summary.duplicates = found.passed_over, found.duplicates
    for path in found.duplicates:
        say(f"note    {path} is named more than once in the inputs; it runs once")
    if found.passed_over:
        say(f"passed over {len(found.passed_over)} file(s) that are not video: "
            f"{_names([str(path) for path in found.passed_over])}")
    return summary, found, own_outputs(found.sources, request)


def check_item(source: Source, request: BatchRequest, outputs: dict[Path, Path],
               claimed: dict[Path, Path]) -> ItemResult | Ready:
    """Everything decided before a job runs: skipped or failed (an ItemResult), else Ready."""
    path = source.path
    maker = outputs.get(path.resolve())
    if maker is not None and maker is not path:
        return ItemResult(path, "skipped", error=f"it is the output of {maker} (from an earlier run)")
    output = request.output or output_of(source, request.settings, request.out_dir)
    first = claimed.setdefault(output.resolve(), path)
    if first is not path:
        return ItemResult(path, "failed", output, exit_code=2, error=(
            f"{output} is also the output of {first} in this run; rename one of them "
            "or give them different --out-dir runs"))
    if output.exists() and not request.overwrite:
        return ItemResult(path, "skipped", output, error=f"{output} exists (--overwrite replaces it)")
    try:
        info = _probe_input(path)
        if path.resolve() == output.resolve():
            raise InvalidMediaError(f"{path}: the output would overwrite the input; "
                                    "choose another -o or --out-dir")
        notes = _clamped(request.frames, info)
        if request.dry_run:
            return ItemResult(path, "planned", output, notes=notes,
                              result=plan_one(path, output, info, request.settings, frames=request.frames))
        check_output(output, request.settings.output.codec)
        check_job(path, request.settings)
        make_folder(output.parent, exit_code=2)
    except VidscaleError as error:
        return failed_item(path, output, error)
    return Ready(path, output, notes)


def run_item(ready: Ready, request: BatchRequest, progress: Progress | None) -> ItemResult:
    """Run a checked input's job in this process."""
    try:
        result = upscale_one(ready.path, ready.output, request.settings, frames=request.frames,
                             overwrite=request.overwrite, progress=progress,
                             should_stop=request.should_stop).to_dict()
    except Interrupted:  # the whole batch stops: the user asked to
        raise
    except VidscaleError as error:
        return failed_item(ready.path, ready.output, error)
    return ItemResult(ready.path, "done", ready.output, result=result, notes=ready.notes)


def failed_item(path: Path, output: Path | None, error: VidscaleError) -> ItemResult:
    """A failure line's item: the error without the file's name (the line names it once)."""
    return ItemResult(path, "failed", output, error=reason(error, path), exit_code=error.exit_code)


def finish_batch(summary: BatchSummary, found: Expansion, request: BatchRequest, started: float,
                 say: Log) -> None:
    """Add the failures found before any work, stamp the time and, for many inputs, the totals."""
    for item in found.failures:
        summary.items.append(item)
        say(describe_item(item))
    summary.elapsed_seconds = time.perf_counter() - started
    if len(summary.items) != 1:
        planned = f"{summary.count('planned')} planned, " if request.dry_run else ""
        say(f"{planned}{summary.count('done')} done, {summary.count('skipped')} skipped, "
            f"{summary.failed} failed")


def _probe_input(path: Path) -> VideoInfo:
    """Probe an input, with the fix for a file that is missing or not a clip."""
    try:
        return probe(path)
    except MediaNotFoundError as error:
        raise MediaNotFoundError(f"{reason(error, path)}; check the path") from None
    except InvalidMediaError as error:
        raise InvalidMediaError(f"{reason(error, path)}; check that the file plays, "
                                "or remove it from the inputs") from None


def _clamped(frames: FrameSelection | None, info: VideoInfo) -> list[str]:
    """A note when ``--frames START:END`` reaches past the clip's end (the range is clamped)."""
    if frames is None or frames[1] is None or info.frame_number(frames[1]) <= info.frame_count:
        return []
    start, end = info.frame_range(frames)
    asked = "-".join(map(str, frames)) if isinstance(frames[1], str) else f"{frames[0]}:{frames[1]}"
    return [f"--frames {asked} clamped to {start}:{end} "
            f"(the clip has {info.frame_count} frames)"]


def describe_item(item: ItemResult) -> str:
    """The item's status line: the file named once, then what happened (and the fix)."""
    notes = "".join(f"; {note}" for note in item.notes)
    if item.status == "failed":
        return f"failed  {item.input}: {item.error}"
    if item.status == "skipped":
        return f"skipped {item.input}: {item.error}"
    result = item.result or {}
    if item.status == "planned":
        return f"plan    {item.input} -> {item.output}{notes}\n{_describe_plan(result)}"
    test_model = f"; {result['note']}" if result.get("note") else ""
    return (f"done    {item.input} -> {item.output} ({result.get('frames')} frames, "
            f"{result.get('elapsed_seconds', 0):.1f} s{notes}{test_model})")


def _describe_plan(result: dict[str, Any]) -> str:
    lines = [f"engine    {result['engine']}" + (f" (model {result['model']})" if "model" in result else ""),
             f"codec     {result['codec']}"]
    if "plan" in result:
        plan = result["plan"]
        lines += [describe_plan(plan), f"estimate  {describe_estimate(plan['tflops_total'], result['machine'])}"]
    else:
        lines += [f"size      {result['width']}x{result['height']}, {result['frames']} frames",
                  "estimate  none: the lanczos engine runs on the CPU without a model "
                  "(benchmarks/lanczos_vs_ffmpeg.py measures it)"]
    return "\n".join(lines)
