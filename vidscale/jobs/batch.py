"""Many inputs, one job each: expand folders, name outputs, skip finished ones, never stop early.

A folder input contributes every file in it that probes as a video (by content, not extension);
an explicit file that is not a video is a failure of that item only. One failing clip never stops
the batch; the summary says what was done, skipped and failed.

Outputs are written atomically by the engines, so an output under its final name is complete:
that is why an existing one means "skip" (not "half done"). Two inputs that would write the same
output name (``a.mp4`` and ``b/a.mov`` into one ``--out-dir``) are caught here, because the second
would otherwise be skipped as "already done" with the first one's result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..atomic import make_folder
from ..errors import InputError, Interrupted, InvalidMediaError, MediaNotFoundError, VidscaleError
from ..media import probe
from ..media.codecs import output_suffix
from ..progress import Progress
from ..settings import Settings
from ..work.plan import describe_plan

Log = Callable[[str], Any]


@dataclass
class BatchRequest:
    """What ``vidscale upscale`` was asked to do."""

    inputs: list[Path]
    settings: Settings
    output: Path | None = None  # only with exactly one input
    out_dir: Path | None = None  # default: next to each input
    frames: tuple[int, int | None] | None = None
    overwrite: bool = False
    dry_run: bool = False
    should_stop: Callable[[], bool] | None = None  # asked after every step; yes: checkpoint and stop


@dataclass
class ItemResult:
    """The outcome for one input: done (with the engine's result), skipped or failed."""

    input: Path
    status: str  # "done" | "skipped" | "failed" | "planned"
    output: Path | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"input": str(self.input), "status": self.status,
                                "output": str(self.output) if self.output else None}
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class BatchSummary:
    items: list[ItemResult] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def count(self, status: str) -> int:
        """Items that ended ``status``: "done", "skipped", "failed" or "planned"."""
        return sum(item.status == status for item in self.items)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def exit_code(self) -> int:
        """0 if nothing failed; a lone input keeps its error's code (2: bad input); else 1."""
        if not self.failed:
            return 0
        return self.items[0].exit_code if len(self.items) == 1 else 1

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.count("done"), "skipped": self.count("skipped"),
                "failed": self.failed, "elapsed_seconds": round(self.elapsed_seconds, 3),
                "items": [item.to_dict() for item in self.items]}


def default_output(source: Path, settings: Settings, out_dir: Path | None = None) -> Path:
    """``NAME_2x.mov`` (``.mp4`` for H.264/H.265) next to the input or in ``out_dir``."""
    folder = out_dir if out_dir is not None else source.parent
    name = f"{source.stem}_{settings.upscale.scale}x{output_suffix(settings.output.codec)}"
    return folder / name


def is_video(path: Path) -> bool:
    """True when ``path`` probes as a clip with video frames."""
    try:
        probe(path)
    except InputError:
        return False
    return True


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; folders replaced by the videos directly inside them, sorted by name.

    The same file named twice (or given and also inside a given folder) runs once. Hidden files
    in a folder (``.NAME.partial``: an output being written right now) are left out.
    """
    expanded: list[Path] = []
    for path in inputs:
        if path.is_dir():
            expanded.extend(p for p in sorted(path.iterdir())
                            if p.is_file() and not p.name.startswith(".") and is_video(p))
        else:
            expanded.append(path)
    return list(_unique(expanded))


def _unique(paths: Iterable[Path]) -> Iterable[Path]:
    seen: set[Path] = set()
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            yield path


def own_outputs(sources: list[Path], request: BatchRequest) -> dict[Path, Path]:
    """Output path -> input, for every output this batch (or a run without --out-dir) writes.

    Running ``vidscale upscale *.mov`` twice would otherwise upscale the first run's results
    again (``a_2x_2x.mov``): an input found here is skipped, with the reason.
    """
    outputs: dict[Path, Path] = {}
    for source in sources:
        for folder in {request.out_dir, None}:
            outputs.setdefault(default_output(source, request.settings, folder).resolve(), source)
    return outputs


def upscale_one(source: Path, output: Path, settings: Settings, *, frames=None, overwrite=False,
                dry_run=False, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, model: Any = None) -> dict[str, Any]:
    """Run the preset's engine on one clip and return its JSON-ready result.

    ``should_stop`` lets a caller (the watch folder's SIGTERM handler) end a freescale job after
    its current chunk is saved: it raises ``Interrupted`` and the same call later resumes. The
    lanczos engine has no chunks to save; it is fast and always runs to the end. ``model``: a
    loaded VideoCrafter2 for ``settings.model`` to reuse (a watcher keeps one between clips);
    None loads it.
    """
    if settings.upscale.engine == "lanczos":
        from ..pipeline.lanczos import upscale_lanczos

        if dry_run:
            info = probe(source)
            return {"engine": "lanczos", "input": str(source), "output": str(output),
                    "frames": info.frame_count, "width": info.width * settings.upscale.scale,
                    "height": info.height * settings.upscale.scale}
        return upscale_lanczos(source, output, settings, frames=frames, overwrite=overwrite,
                               progress=progress).to_dict()
    from ..pipeline.upscale import plan_upscale, upscale_clip

    if dry_run:
        return plan_upscale(source, settings, frames=frames).to_dict()
    return upscale_clip(source, output, settings, frames=frames, overwrite=overwrite,
                        progress=progress, should_stop=should_stop, model=model).to_dict()


def run_batch(request: BatchRequest, *, progress: Progress | None = None,
              log: Log | None = None) -> BatchSummary:
    """Run one job per input; report each outcome through ``log`` and return the summary."""
    say = log or (lambda _line: None)
    started = time.perf_counter()
    summary = BatchSummary()
    if request.out_dir is not None:
        make_folder(request.out_dir, exit_code=2)
    sources = expand_inputs(request.inputs)
    outputs = own_outputs(sources, request)
    claimed: dict[Path, Path] = {}  # output -> the input that writes it in this batch
    for source in sources:
        item = _output_of_another(source, outputs) or _run_item(source, request, progress, claimed)
        summary.items.append(item)
        say(_describe(item))
    summary.elapsed_seconds = time.perf_counter() - started
    if len(summary.items) != 1:
        say(f"{summary.count('done')} done, {summary.count('skipped')} skipped, "
            f"{summary.failed} failed")
    return summary


def _output_of_another(source: Path, outputs: dict[Path, Path]) -> ItemResult | None:
    maker = outputs.get(source.resolve())
    if maker is None or maker is source:
        return None
    return ItemResult(source, "skipped", error=f"it is the output of {maker} (from an earlier run)")


def _run_item(source: Path, request: BatchRequest, progress: Progress | None,
              claimed: dict[Path, Path]) -> ItemResult:
    output = request.output or default_output(source, request.settings, request.out_dir)
    first = claimed.setdefault(output.resolve(), source)
    if first is not source:
        return ItemResult(source, "failed", output, exit_code=2, error=(
            f"{output} is also the output of {first} in this run; rename one of them "
            "or give them different --out-dir runs"))
    if output.exists() and not request.overwrite and not request.dry_run:
        return ItemResult(source, "skipped", output,
                          error=f"{output} exists (--overwrite replaces it)")
    try:
        if not source.exists():
            raise MediaNotFoundError(f"{source}: no such file")
        if source.resolve() == output.resolve():
            raise InvalidMediaError(f"{source}: output would overwrite the input")
        result = upscale_one(source, output, request.settings, frames=request.frames,
                             overwrite=request.overwrite, dry_run=request.dry_run,
                             progress=progress, should_stop=request.should_stop)
    except Interrupted:  # the whole batch stops: the user asked to
        raise
    except VidscaleError as error:
        return ItemResult(source, "failed", output, error=str(error), exit_code=error.exit_code)
    return ItemResult(source, "planned" if request.dry_run else "done", output, result=result)


def _describe(item: ItemResult) -> str:
    if item.status == "failed":
        return f"failed  {item.input}: {item.error}"
    if item.status == "skipped":
        return f"skipped {item.input}: {item.error}"
    if item.status == "planned":
        result = item.result or {}
        details = (describe_plan(result) if "chunks" in result
                   else "\n".join(f"{key:9} {value}" for key, value in result.items()))
        return f"plan    {item.input}\n{details}"
    result = item.result or {}
    return (f"done    {item.input} -> {item.output} ({result.get('frames')} frames, "
            f"{result.get('elapsed_seconds', 0):.1f} s)")
