"""One way to run a clip's upscale, whichever driver asks (the API, batch, watch, cluster, timeline).

The engine (``upscale.engine``: lanczos or freescale) is chosen here and nowhere else, and every
path makes the same checks before work and the same additions after it:

- :func:`check_job`: what would make the job fail and can be seen before anything is loaded
  (a detail matte that does not fit the clip, or given to the lanczos engine);
- :func:`run_engine`: the engine's own job (atomic output, resumable for freescale);
- :func:`finish_job`: the review page when ``output.review`` asks for one.

:func:`upscale_one` is the three in order. The cluster driver calls them separately, because its
workers run the engine and the driver writes the output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..media import probe
from ..media.matte import open_matte
from ..pages import write_review
from ..pipeline.result import UpscaleResult
from ..progress import Progress
from ..settings import Settings


def check_job(source: Path, settings: Settings) -> None:
    """Refuse, before anything is loaded (exit 2), a detail matte that cannot drive this job."""
    if not settings.upscale.detail_mask:
        return
    if settings.upscale.engine != "freescale":
        raise InputError("--detail-mask steers generated detail: it needs --engine freescale")
    open_matte(Path(settings.upscale.detail_mask), probe(source))


def run_engine(source: Path, output: Path, settings: Settings, *, frames=None, overwrite: bool = False,
               progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
               model: Any = None) -> UpscaleResult:
    """The engine's job for one clip.

    ``should_stop`` lets a caller (Ctrl-C, the watch folder's SIGTERM handler) end a freescale job
    after its current step, which is saved: it raises ``Interrupted`` and the same call later
    resumes from that step. The lanczos engine has no steps to save; it is fast and always runs
    to the end. ``model``: a loaded model for ``settings.model`` to reuse (a watcher keeps one
    between clips); None loads it.
    """
    if settings.upscale.engine == "lanczos":
        from ..pipeline.lanczos import upscale_lanczos

        return upscale_lanczos(source, output, settings, frames=frames, overwrite=overwrite, progress=progress)
    from ..pipeline.upscale import upscale_clip

    return upscale_clip(source, output, settings, frames=frames, overwrite=overwrite, progress=progress,
                        should_stop=should_stop, model=model)


def finish_job(source: Path, result: UpscaleResult, settings: Settings, *, frames=None) -> UpscaleResult:
    """``result`` with its review page written beside the output, when ``output.review`` asks."""
    if not settings.output.review:
        return result
    review = write_review(source, result.output, settings, result.to_dict(), frames=frames)
    return dataclasses.replace(result, review=review)


def upscale_one(source: Path, output: Path, settings: Settings, *, frames=None, overwrite: bool = False,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                model: Any = None) -> UpscaleResult:
    """Check, run and finish one clip's job (:func:`check_job`, :func:`run_engine`, :func:`finish_job`)."""
    check_job(source, settings)
    result = run_engine(source, output, settings, frames=frames, overwrite=overwrite, progress=progress,
                        should_stop=should_stop, model=model)
    return finish_job(source, result, settings, frames=frames)
