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

from ..errors import VidscaleError
from ..settings import Settings
from .engines import run_engine
from .models import ModelKeeper


@dataclass(frozen=True)
class UnitFailed:
    """What a worker returns when a unit fails for a reason that retrying cannot fix."""

    message: str
    exit_code: int


class Worker:
    """A Ray actor: keeps the loaded model between units and runs them."""

    def __init__(self) -> None:
        self.models = ModelKeeper()

    def pid(self) -> int:
        return os.getpid()

    def lanczos(self, source: Path, output: Path, settings: Settings, frames) -> Any:
        """Encode the whole clip here and return its bytes; the driver writes the output."""
        try:
            with tempfile.TemporaryDirectory() as folder:
                temp = Path(folder) / output.name
                result = run_engine(source, temp, settings, frames=frames)
                return temp.read_bytes(), dataclasses.replace(result, output=output)
        except VidscaleError as error:
            return UnitFailed(str(error), error.exit_code)

    def segment(self, clip: Any, index: int, settings: Settings, shared: str) -> Any:
        """Denoise segment ``index`` of ``clip`` into the shared job store (returns None), or,
        without a shared path, into a private one whose chunks go back to the driver."""
        from ..pipeline.segments import denoise_segment

        segment = clip.segments[index]
        try:
            model, _ = self.models.get(settings)
            if shared:
                denoise_segment(model, clip, segment, clip.store(segment, Path(shared)), settings)
                return None
            with tempfile.TemporaryDirectory() as folder:
                store = clip.store(segment, Path(folder))
                denoise_segment(model, clip, segment, store, settings)
                return {int(i): (store.load_chunk(int(i)), {k: v for k, v in entry.items() if k != "file"})
                        for i, entry in store.manifest["chunks"].items()}
        except VidscaleError as error:
            return UnitFailed(str(error), error.exit_code)
