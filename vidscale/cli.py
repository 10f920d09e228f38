"""The ``vidscale`` command: parse options, build settings, call the library, print the result.

Nothing here is logic a library user would have to copy. Heavy modules (torch, the model) are
imported inside the commands that need them, so ``vidscale --help`` stays fast. Library errors
become exit codes in one place, :class:`VidscaleGroup`.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__
from .errors import Interrupted, VidscaleError
from .progress import Progress
from .settings import Codec, Settings, as_toml, load_settings, preset_names

# What upscale and watch run without --preset: the shipped editing-master preset, so that the
# no-preset default and the documented default are one thing (guidance 1.0: no CFG pass).
DEFAULT_UPSCALE_PRESET = "prores-hq-2x"
CODECS = list(typing.get_args(Codec))  # the settings' type is the one list of codec names


class _ExitError(click.ClickException):
    """A VidscaleError shown as click shows errors ("Error: ..."), with the error's exit code."""

    def __init__(self, error: VidscaleError):
        super().__init__(str(error))
        self.exit_code = error.exit_code  # type: ignore[misc]  # click types it a ClassVar; ours vary per error


class VidscaleGroup(click.Group):
    """Maps every :class:`VidscaleError` raised by a subcommand to its exit code.

    A stop the user asked for (:class:`Interrupted`) is not an error: its line starts with
    ``stopped`` (what was kept, the command that resumes), without click's ``Error:``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Interrupted as stopped:
            click.echo(str(stopped), err=True)
            ctx.exit(stopped.exit_code)
        except VidscaleError as error:
            raise _ExitError(error) from error


class FrameRange(click.ParamType):
    """``START:END`` frame numbers (END exclusive, either side may be empty) -> ``(start, end | None)``,
    or ``TC-TC`` timecodes (``01:00:00:00-01:00:01:00``, END exclusive) kept as strings: each clip
    counts them from its own start timecode (:meth:`vidscale.media.VideoInfo.frame_range`)."""

    name = "START:END|TC-TC"
    TIMECODE = re.compile(r"^\d{1,2}:\d{2}:\d{2}[:;]\d{2}$")

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int | str, int | str | None]:
        if isinstance(value, tuple):
            return value
        if "-" in str(value):
            return self._timecodes(str(value), param, ctx)
        start, sep, end = str(value).partition(":")
        try:
            first = int(start) if start else 0
            last = int(end) if end else None
        except ValueError:
            self.fail(f"{value!r} is not START:END (frame numbers, end exclusive)", param, ctx)
        if not sep or first < 0 or (last is not None and last <= first):
            self.fail(f"{value!r} is not START:END with 0 <= START < END", param, ctx)
        return first, last

    def _timecodes(self, value: str, param: Any, ctx: Any) -> tuple[int | str, str | None]:
        start, _, end = (part.strip() for part in value.partition("-"))
        for part in (start, end):
            if part and not self.TIMECODE.match(part):
                self.fail(f"{value!r} is not TC-TC (timecodes HH:MM:SS:FF, ';' for drop-frame, end exclusive)",
                          param, ctx)
        return start or 0, end or None


class Size(click.ParamType):
    """``WIDTHxHEIGHT`` -> ``(width, height)``."""

    name = "WxH"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        width, sep, height = str(value).lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            self.fail(f"{value!r} is not WIDTHxHEIGHT, e.g. 1024x640", param, ctx)
        return int(width), int(height)


def _settings(preset: str | None, overrides: dict[str, Any]) -> Settings:
    return load_settings(preset, overrides)


def _progress(quiet: bool, as_json: bool) -> Progress:
    return Progress(enabled=not (quiet or as_json))


def _log(quiet: bool) -> Any:
    """Status lines go to stderr (stdout is kept for --json); --quiet keeps only failures."""
    def log(line: str) -> None:
        if not quiet or line.startswith("failed"):
            click.echo(line, err=True)
    return log


def _say(line: str) -> None:
    """What a signal handler says (a stop was asked for): at once, on stderr."""
    click.echo(line, err=True)


def _resume_command() -> str:
    """The command line that was run, as the line to run again to resume a stopped job."""
    return f"{click.get_current_context().find_root().info_name} {shlex.join(sys.argv[1:])}"


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _note_unused(settings: Settings, given: dict[str, Any], quiet: bool) -> None:
    """Options that only the freescale engine reads, given with the lanczos engine: say so."""
    unused = [name for name, value in given.items() if value is not None]
    if settings.upscale.engine == "lanczos" and unused and not quiet:
        click.echo(f"note: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by the "
                   "lanczos engine (it runs no model)", err=True)


def _plan_lines(plan: dict[str, Any]) -> list[str]:
    """``generate --dry-run``'s text."""
    from .work.plan import describe_estimate

    return [f"plan      {plan['output']}", f"engine    {plan['engine']} (model {plan['model']})",
            f"codec     {plan['codec']}",
            f"size      {plan['width']}x{plan['height']}, {plan['frames']} frames at "
            f"{plan['frame_rate']} fps, {plan['steps']} steps, stages {' -> '.join(plan['stages'])}",
            f"estimate  {describe_estimate(plan['tflops_total'], plan['machine'])}"]


def _model_options(func: Any) -> Any:
    for option in reversed([
        click.option("--model", "model_path", metavar="PATH|wan|tiny|random|wan-tiny|wan-random",
                     help="VideoCrafter2 folder or model.ckpt, or a diffusers Wan 2.1 folder ('wan': the "
                          "default Wan folder; 'tiny', 'wan-tiny': random test models; 'random', "
                          "'wan-random': full-size random models for speed tests)."),
        click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Where the model runs."),
        click.option("--dtype", type=click.Choice(["auto", "bf16", "fp16", "fp32"]),
                     help="Model precision (auto: bf16 on CUDA, fp32 on CPU)."),
        click.option("--seed", type=click.IntRange(0), help="Seed of every random draw."),
        click.option("--compile", "compile_model", is_flag=True, default=None,
                     help="torch.compile the UNet or transformer blocks (faster steps after a slow first one)."),
    ]):
        func = option(func)
    return func


# The options of every command that upscales clips (upscale, watch, timeline), defined once: each
# sets one settings key, and the lanczos engine names the model ones it does not use.
UPSCALE_OPTION_KEYS: dict[str, str] = {
    "scale": "upscale.scale", "codec": "output.codec", "engine": "upscale.engine",
    "prompt": "sampling.prompt", "model_path": "model.path", "device": "model.device",
    "dtype": "model.dtype", "seed": "sampling.seed", "compile_model": "model.compile",
    "steps": "sampling.steps", "memory_budget": "jobs.memory_budget_gb", "review": "output.review",
    "cluster": "cluster.address",
}
MODEL_ONLY = {"prompt": "--prompt", "model_path": "--model", "device": "--device", "dtype": "--dtype",
              "seed": "--seed", "steps": "--steps", "memory_budget": "--memory-budget"}


def _upscale_options(func: Any) -> Any:
    """``--preset`` and the options of :data:`UPSCALE_OPTION_KEYS`, for every upscaling command."""
    options: list[Callable[[Any], Any]] = [
        click.option("--preset", default=DEFAULT_UPSCALE_PRESET, show_default=True,
                     help="Shipped preset name or path of a .toml file."),
        click.option("--scale", type=click.Choice(["2", "4"]), help="Size factor per side."),
        click.option("--codec", type=click.Choice(CODECS), help="Output codec."),
        click.option("--engine", type=click.Choice(["freescale", "lanczos"]),
                     help="freescale: generated detail (GPU); lanczos: fast classic resize preview."),
        click.option("--prompt", help="Optional text describing the clip (freescale engine)."),
        _model_options,
        click.option("--steps", type=click.IntRange(1, 1000), help="Denoising steps (sampling.steps)."),
        click.option("--memory-budget", type=click.FloatRange(0.1, 10_000), metavar="GB",
                     help="GPU memory a chunk may use (jobs.memory_budget_gb)."),
        click.option("--review", is_flag=True, default=None,
                     help="Also write NAME_review.html beside each output: source vs result, plan, seams."),
        click.option("--cluster", metavar="ADDRESS|local[:N]",
                     help="Spread clips and segments over Ray workers (pip install 'vidscale[ray]')."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# The same two switches, with the same meaning, on upscale and timeline.
OVERWRITE_OPTION = click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
DRY_RUN_OPTION = click.option(
    "--dry-run", is_flag=True,
    help="Check everything the run checks, print the plan and a time estimate, and stop.")


def _upscale_settings(options: dict[str, Any], *, quiet: bool, **more: Any) -> Settings:
    """The preset with the options of :func:`_upscale_options` (popped from ``options``) and
    ``more`` (``{"section.key": value}``) on top; names the model options lanczos leaves unused."""
    given = {name: options.pop(name) for name in UPSCALE_OPTION_KEYS}
    if given["scale"] is not None:
        given["scale"] = int(given["scale"])
    settings = _settings(options.pop("preset"), {
        **{UPSCALE_OPTION_KEYS[name]: value for name, value in given.items()}, **more})
    _note_unused(settings, {flag: given[name] for name, flag in MODEL_ONLY.items()}, quiet)
    return settings


@click.group(cls=VidscaleGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidscale")
def main() -> None:
    """Upscale video clips and generate video from text with VideoCrafter2 + FreeScale."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Output file (one input only). Default: NAME_2x.mov next to the input.")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the outputs (created if missing).")
@_upscale_options
@click.option("--detail-mask", type=click.Path(path_type=Path, dir_okay=False),
              help="Matte clip or still image: more generated detail where white (freescale).")
@click.option("--frames", "frame_range", type=FrameRange(),
              help="Only frames START:END (end exclusive), or timecodes TC-TC of the clip's own timecode.")
@OVERWRITE_OPTION
@DRY_RUN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def upscale(inputs: tuple[Path, ...], output: Path | None, out_dir: Path | None, detail_mask: Path | None,
            frame_range: tuple[int, int | None] | None, overwrite: bool, dry_run: bool, as_json: bool,
            quiet: bool, **options: Any) -> None:
    """Make clips 2x (or 4x) larger. INPUTS are video files or folders of them (searched with
    their subfolders; outputs mirror them)."""
    from .jobs.batch import BatchRequest, run_batch

    if output is not None and (len(inputs) > 1 or out_dir is not None):
        raise click.UsageError("-o/--output takes exactly one input and no --out-dir")
    settings = _upscale_settings(options, quiet=quiet or as_json, **{
        "upscale.detail_mask": str(detail_mask.resolve()) if detail_mask else None})
    run = run_batch
    if settings.cluster.address:
        from .jobs.cluster import run_cluster as run
    from .jobs.interrupts import interruptible

    with interruptible(_resume_command(), say=_say) as should_stop:
        request = BatchRequest(inputs=list(inputs), settings=settings, output=output, out_dir=out_dir,
                               frames=frame_range, overwrite=overwrite, dry_run=dry_run, should_stop=should_stop)
        summary = run(request, progress=_progress(quiet, as_json), log=_log(quiet or as_json))
    if as_json:
        _print_json(summary.to_dict())
    sys.exit(summary.exit_code)


@main.command()
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Output file (default: a name made from the prompt, in the current folder).")
@click.option("--preset", help="Preset name or .toml path (default: the model family's own, t2v-640p for "
                                "VideoCrafter2, wan-t2v-960p for Wan).")
@click.option("--frames", type=click.IntRange(1), help="Number of frames (more than 16 is fine).")
@click.option("--size", type=Size(), help="Final size WIDTHxHEIGHT (a x2/x4 cascade of the base).")
@click.option("--codec", type=click.Choice(CODECS), help="Output codec.")
@click.option("--fps", type=click.IntRange(1, 120),
              help="Frame rate of the clip and of VC2's fps conditioning (sampling.fps).")
@click.option("--steps", type=click.IntRange(1, 1000), help="Denoising steps (sampling.steps).")
@_model_options
@OVERWRITE_OPTION
@DRY_RUN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def generate(prompt: str, output: Path | None, preset: str | None, frames: int | None,
             size: tuple[int, int] | None, codec: str | None, fps: int | None, steps: int | None,
             model_path: str | None, device: str | None, dtype: str | None, seed: int | None,
             compile_model: bool | None,
             overwrite: bool, dry_run: bool, as_json: bool, quiet: bool) -> None:
    """Generate a clip from PROMPT: the model at its base size (VideoCrafter2 320x512, Wan 480x832),
    then the FreeScale cascade.

    Ctrl-C (or SIGTERM) stops it after the current step, which is saved beside the output in
    .vidscale-jobs/; running the same command again resumes from there."""
    from .pipeline.generate import default_output, family_preset, generate_clip, plan_generate
    from .pipeline.result import TEST_MODEL_NOTE

    settings = _settings(preset or family_preset(model_path), {
        "generate.frames": frames, "generate.width": size[0] if size else None,
        "generate.height": size[1] if size else None, "output.codec": codec,
        "model.path": model_path, "model.device": device, "model.dtype": dtype,
        "sampling.seed": seed, "sampling.prompt": prompt, "sampling.fps": fps,
        "sampling.steps": steps, "model.compile": compile_model,
    })
    target = output if output is not None else default_output(settings)
    if target.exists() and not overwrite:  # as upscale does: the output is there, complete
        if as_json:
            _print_json({"status": "skipped", "output": str(target)})
        else:
            click.echo(f"skipped {target}: it exists (--overwrite replaces it)")
        return
    if dry_run:
        plan = plan_generate(settings, output=target)
        if as_json:
            _print_json(plan)
        else:
            click.echo("\n".join(_plan_lines(plan)))
        return
    from .jobs.interrupts import interruptible

    with interruptible(_resume_command(), say=_say, unit="stage") as should_stop:
        result = generate_clip(settings, output=target, overwrite=overwrite, progress=_progress(quiet, as_json),
                               should_stop=should_stop)
    if as_json:
        _print_json(result.to_dict())
    else:
        note = f" ({TEST_MODEL_NOTE})" if result.test_model else ""
        click.echo(f"wrote {result.output}{note}")


@main.command()
@click.argument("inbox", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where outputs go (default: INBOX/out).")
@_upscale_options
@click.option("--once", is_flag=True, help="Process what is there now, then exit.")
@click.option("--create", is_flag=True, help="Make INBOX if it does not exist.")
@click.option("--settle", type=click.FloatRange(0), default=5.0, show_default=True,
              help="Seconds a file's size and mtime must stay unchanged before it is taken.")
@click.option("--poll", is_flag=True, help="Poll instead of file events (network shares).")
@click.option("--status-port", type=click.IntRange(0, 65535),
              help="Serve a read-only status page on this port (0: any free port).")
@click.option("--status-host", default="127.0.0.1", show_default=True,
              help="Address the status page listens on (0.0.0.0: every network; then a token is required).")
@click.option("--status-token", metavar="TOKEN",
              help="Token the status page requires (default: none on loopback, a random one elsewhere).")
@click.option("--follow-symlinks", is_flag=True,
              help="Take a dropped symlink's target (default: symlinks go to failed/, nothing outside is read).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def watch(inbox: Path, out_dir: Path | None, once: bool, create: bool, settle: float, poll: bool,
          status_port: int | None, status_host: str, status_token: str | None, follow_symlinks: bool,
          quiet: bool, **options: Any) -> None:
    """Upscale every clip dropped into INBOX; a restart resumes where it stopped.

    With --once, the exit status follows upscale's rule: 1 if a clip's job failed, 2 if a file
    was not a video. Stopped by Ctrl-C or SIGTERM, it exits 0 (failed clips are in INBOX/failed)."""
    import logging

    from .jobs.watch import WatchRequest, watch_folder

    # watchdog logs a harmless error when its inotify thread is stopped; without a handler Python
    # would print it. An application that configures logging still sees it.
    logging.getLogger("watchdog").addHandler(logging.NullHandler())
    preset = options["preset"]
    settings = _upscale_settings(options, quiet=quiet)
    request = WatchRequest(inbox=inbox, out_dir=out_dir, settings=settings, preset=preset,
                           once=once, settle_seconds=settle, poll=poll, create=create,
                           status_port=status_port, status_host=status_host, status_token=status_token,
                           follow_symlinks=follow_symlinks)
    summary = watch_folder(request, progress=Progress(enabled=not quiet), log=click.echo)
    if once:
        sys.exit(summary.exit_code)


class FrameRate(click.ParamType):
    """``25``, ``29.97``, ``23.976`` or ``30000/1001`` -> an exact ``Fraction``."""

    name = "FPS"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from .jobs.clocks import parse_rate

        try:
            return parse_rate(str(value))
        except VidscaleError as error:
            self.fail(str(error), param, ctx)


@main.command()
@click.argument("edit", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The new edit: .otio, .edl, .xml (FCP 7) or .fcpxml, written by OTIO's adapter.")
@click.option("--handles", type=click.IntRange(0), default=12, show_default=True,
              help="Extra frames upscaled before and after each clip (for trims in the edit).")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the upscaled ranges (default: beside the new edit).")
@click.option("--media", "media", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder to find media in whose recorded path is not on this machine, by file "
                   "name (or clip/reel name); repeatable.")
@click.option("--rate", type=FrameRate(),
              help="An EDL's frame rate (EDLs do not carry one; default 24): 25, 29.97, 23.976, ...")
@click.option("--timeline", "timeline_name", metavar="NAME",
              help="Which timeline of a file that holds several (an FCPXML library or event).")
@_upscale_options
@OVERWRITE_OPTION
@DRY_RUN_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def timeline(edit: Path, output: Path, handles: int, out_dir: Path | None, media: tuple[Path, ...],
             rate: Any, timeline_name: str | None, overwrite: bool, dry_run: bool, as_json: bool,
             quiet: bool, **options: Any) -> None:
    """Upscale only the ranges EDIT uses (.otio, .edl, .xml, .fcpxml) and relink a copy to them."""
    from .jobs.interrupts import interruptible
    from .jobs.timeline import TimelineRequest, run_timeline

    settings = _upscale_settings(options, quiet=quiet or as_json)
    command = f"{click.get_current_context().find_root().info_name} {shlex.join(sys.argv[1:])}"
    with interruptible(command, say=lambda line: click.echo(line, err=True)) as should_stop:
        request = TimelineRequest(edit=edit, output=output, settings=settings, handles=handles,
                                  out_dir=out_dir, media=list(media), rate=rate, timeline=timeline_name,
                                  overwrite=overwrite, dry_run=dry_run, should_stop=should_stop)
        summary = run_timeline(request, progress=_progress(quiet, as_json), log=_log(quiet or as_json))
    if as_json:
        _print_json(summary.to_dict())
    sys.exit(summary.exit_code)


@main.command()
@click.argument("input", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def probe(input: Path, as_json: bool) -> None:
    """Show what vidscale reads from a clip: size, exact frame rate, frames, colour, audio."""
    from .media import probe as probe_clip

    info = probe_clip(input)
    if as_json:
        _print_json(info.to_dict())
    else:
        click.echo(info.describe())


@main.command()
@click.argument("name", required=False)
def presets(name: str | None) -> None:
    """List the shipped presets, or print one in full (NAME or a .toml path)."""
    if name is None:
        for preset in preset_names():
            click.echo(f"{preset:22} {load_settings(preset).description}")
        return
    click.echo(as_toml(load_settings(name)), nl=False)


@main.group()
def model() -> None:
    """Convert and inspect VideoCrafter2 weights."""


@model.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path, file_okay=False))
@click.option("--trust-pickle", is_flag=True,
              help="Allow unpickling model.ckpt if the safe loader refuses it (only for files you trust).")
@click.option("--vocab", type=click.Path(path_type=Path, dir_okay=False),
              help="CLIP BPE vocabulary (merges.txt or bpe_simple_vocab_16e6.txt.gz) to store with the model.")
def model_convert(checkpoint: Path, dest: Path, trust_pickle: bool, vocab: Path | None) -> None:
    """Convert VideoCrafter2's model.ckpt once into a fast safetensors folder DEST."""
    from .model.convert import convert_checkpoint

    convert_checkpoint(checkpoint, dest, trust_pickle=trust_pickle, vocab=vocab, log=click.echo)
    click.echo(f"converted {checkpoint} -> {dest}")


@model.command("info")
@click.argument("path", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result.")
def model_info(path: str | None, as_json: bool) -> None:
    """Components, parameter counts and dtype of a model folder (default: the resolved model)."""
    from .model.info import describe_model

    info = describe_model(path)
    if as_json:
        _print_json(info)
    else:
        for component, details in info["components"].items():
            click.echo(f"{component:14} {details['parameters']:>14,d} params  {details['dtype']}")
        click.echo(f"location       {info['path']}")


@main.command()
@click.option("--keep", type=click.Path(path_type=Path, file_okay=False),
              help="Keep the test clip in this folder.")
def selftest(keep: Path | None) -> None:
    """Check the installation: run the whole generate path on CPU with a random tiny model."""
    from .pipeline.selftest import run_selftest

    report = run_selftest(keep=keep, log=_log(quiet=False), progress=_progress(quiet=False, as_json=False))
    click.echo(report)
