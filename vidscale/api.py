"""The Python API for scripts: one call per CLI command, returning what the CLI prints.

```python
import vidscale

info = vidscale.probe("clip.mov")                                   # VideoInfo
result = vidscale.upscale("clip.mov", "clip_2x.mov", preset="prores-hq-2x", steps=30, seed=7)
clip = vidscale.generate("a red kite over the sea", "kite.mp4", frames=24)
```

Settings: a preset (a shipped name or a ``.toml`` path), then keyword arguments named like the
preset keys without their table (``steps`` is ``[sampling] steps``, ``codec`` is ``[output]
codec``); every key name is unique across the tables, and a wrong name or value raises
:class:`~vidscale.errors.SettingsError` naming the allowed ones. ``model=`` picks the weights (a
converted folder, ``model.ckpt`` or ``"tiny"``), as ``--model`` does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .media import VideoInfo
from .media import probe as _probe
from .progress import Progress
from .settings import Settings, load_settings

__all__ = ["upscale", "generate", "probe", "setting_keys"]


def setting_keys() -> dict[str, str]:
    """Keyword name -> preset key (``"steps"`` -> ``"sampling.steps"``) for every setting but the
    model path, which is ``model=``."""
    keys: dict[str, str] = {}
    for section in dataclasses.fields(Settings):
        if not dataclasses.is_dataclass(section.default):
            continue
        for item in dataclasses.fields(section.default):
            dotted = f"{section.name}.{item.name}"
            if item.name in keys:
                raise SettingsError(f"setting name {item.name!r} is in two tables ({keys[item.name]}, {dotted}): "
                                    "the Python API needs unique names")
            keys[item.name] = dotted
    del keys["path"]
    return keys


def _settings(preset: str | Path | None, model: str | Path | None, overrides: dict[str, Any]) -> Settings:
    keys = setting_keys()
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise SettingsError(f"Python API: unknown setting {', '.join(map(repr, unknown))}; "
                            f"allowed: model, {', '.join(sorted(keys))}")
    dotted = {keys[name]: value for name, value in overrides.items()}
    return load_settings(preset, {"model.path": str(model) if model is not None else None, **dotted})


def probe(path: str | Path) -> VideoInfo:
    """What vidscale reads from a clip (``vidscale probe``): size, exact rate, frames, colour, audio."""
    return _probe(Path(path))


def upscale(path: str | Path, output: str | Path | None = None, *, preset: str | Path | None = None,
            model: str | Path | None = None, frames: tuple[int, int | None] | None = None, overwrite: bool = False,
            progress: bool = False, **settings: Any):
    """Upscale one clip with the preset's engine (``vidscale upscale PATH -o OUTPUT``); returns its
    :class:`~vidscale.pipeline.result.UpscaleResult` (with its review page when ``review=True``), after
    the checks the CLI makes (a detail matte that does not fit). ``preset=None`` is the defaults, as without
    ``--preset``; ``output`` defaults to ``NAME_2x.mov`` beside the input; ``frames=(start, end)``
    takes only those frames (end exclusive)."""
    from .jobs.batch import default_output
    from .jobs.engines import upscale_one

    chosen = _settings(preset, model, settings)
    source = Path(path)
    target = Path(output) if output is not None else default_output(source, chosen)
    return upscale_one(source, target, chosen, frames=frames, overwrite=overwrite, progress=Progress(enabled=progress))


def generate(prompt: str, output: str | Path | None = None, *, preset: str | Path | None = None,
             model: str | Path | None = None, overwrite: bool = False, progress: bool = False, **settings: Any):
    """Generate a clip from ``prompt`` (``vidscale generate PROMPT -o OUTPUT``); returns its
    :class:`~vidscale.pipeline.result.GenerateResult`. ``output`` defaults to a name made from the
    prompt in the current folder; ``preset=None`` starts from the model family's own preset, as the
    command does (``t2v-640p`` for VideoCrafter2, ``wan-t2v-960p`` for Wan).

    Resumable as the command is, but without its signal handler (a library call leaves signals
    to its caller): a ``KeyboardInterrupt`` leaves the job folder beside the output with every
    finished stage and the running stage's last step checkpoint (``checkpoint_seconds`` old at
    most), and the same call continues from there and returns the same frames."""
    from .pipeline.generate import family_preset, generate_clip

    chosen = _settings(preset or family_preset(str(model) if model is not None else None), model,
                       {**settings, "prompt": prompt})
    return generate_clip(chosen, output=Path(output) if output is not None else None, overwrite=overwrite,
                         progress=Progress(enabled=progress))
