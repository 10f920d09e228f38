"""What a Ray worker of ``--cluster`` runs (:mod:`vidscale.jobs.cluster` is the driver).

Kept apart from the driver so a worker process imports only what it computes with: no Ray
client code, no watchdog, no status server. The class is made a Ray actor by the driver
(``ray.remote(Worker)``), so this module does not import Ray either.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import Interrupted, VidscaleError
from ..settings import Settings
from .engines import run_engine
from .models import ModelKeeper


@dataclass(frozen=True)
class UnitFailed:
    """What a worker returns when a unit fails for a reason that retrying cannot fix."""

    message: str
    exit_code: int


@dataclass(frozen=True)
class UnitStopped:
    """What a worker returns when the driver asked it to stop: without a shared folder, the chunks
    it finished and the running chunk's step checkpoint ``(chunk, step, tensors)``, for the
    driver to store (with one, they are stored there already: both None)."""

    chunks: dict[int, Any] | None
    running: tuple[int, int, Any] | None


class Worker:
    """A Ray actor: keeps the loaded model between units and runs them.

    :meth:`stop` runs in the actor's control group, beside a running unit: it only notes which
    run is to stop, and the unit's step loop asks after every step.
    """

    def __init__(self) -> None:
        self.models = ModelKeeper()
        self.stopped = 0  # the driver's latest run asked to stop

    def pid(self) -> int:
        return os.getpid()

    def stop(self, run: int) -> None:
        """Stop run ``run``'s unit (and any earlier run's) after its current step."""
        self.stopped = max(self.stopped, run)

    def lanczos(self, source: Path, output: Path, settings: Settings, frames) -> Any:
        """Encode the whole clip here and return its bytes; the driver writes the output."""
        try:
            with tempfile.TemporaryDirectory() as folder:
                temp = Path(folder) / output.name
                result = run_engine(source, temp, settings, frames=frames)
                return temp.read_bytes(), dataclasses.replace(result, output=output)
        except VidscaleError as error:
            return UnitFailed(str(error), error.exit_code)

    def segment(self, clip: Any, index: int, settings: Settings, shared: str, run: int = 0,
                saved: dict[str, Any] | None = None) -> Any:
        """Denoise segment ``index`` of ``clip`` into the shared job store (returns None), or,
        without a shared path, into a private one, first filled with what the driver ``saved``
        (finished chunks, a step checkpoint), whose chunks go back to the driver.

        Stopped by :meth:`stop` for ``run``: :class:`UnitStopped` with what it did."""
        from ..pipeline.segments import denoise_segment

        segment = clip.segments[index]

        def should_stop() -> bool:  # asked after every step
            return self.stopped >= run > 0

        try:
            model, _ = self.models.get(settings)
            if shared:
                try:
                    denoise_segment(model, clip, segment, clip.store(segment, Path(shared)), settings,
                                    should_stop=should_stop)
                except Interrupted:
                    return UnitStopped(None, None)
                return None
            with tempfile.TemporaryDirectory() as folder:
                store = clip.store(segment, Path(folder))
                _restore(store, saved)
                try:
                    denoise_segment(model, clip, segment, store, settings, should_stop=should_stop)
                except Interrupted:
                    running = store.running
                    step = store.load_step(running["chunk"]) if running else None
                    return UnitStopped(_chunks(store), (running["chunk"], *step) if step else None)
                return _chunks(store)
        except VidscaleError as error:
            return UnitFailed(str(error), error.exit_code)


def _chunks(store: Any) -> dict[int, Any]:
    """A job store's finished chunks, as ``{index: (tensors, info)}``, to send to the driver."""
    return {int(i): (store.load_chunk(int(i)), {k: v for k, v in entry.items() if k != "file"})
            for i, entry in store.manifest["chunks"].items()}


def _restore(store: Any, saved: dict[str, Any] | None) -> None:
    """Put what the driver's store holds of this segment into the worker's private one."""
    if not saved:
        return
    for index, (tensors, info) in sorted(saved["chunks"].items()):
        store.save_chunk(index, tensors, info)
    if saved["running"] is not None:
        store.save_step(*saved["running"])
