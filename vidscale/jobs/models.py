"""A loaded model kept between jobs, for the drivers that run many (watch, cluster workers).

Its own module, free of torch, watchdog and Ray at import, so that a Ray worker, the watcher and
the cluster driver share it without importing each other.
"""

from __future__ import annotations

from typing import Any

from ..settings import ModelSettings, Settings


class ModelKeeper:
    """Keeps the last loaded VideoCrafter2 for the next clip: loading it takes longer than a short
    clip's job. A clip with other model settings replaces it (the old one is dropped first, so
    two never share the GPU). Torch is imported only when a freescale clip comes."""

    def __init__(self) -> None:
        self._settings: ModelSettings | None = None
        self._model: Any = None

    def get(self, settings: Settings) -> tuple[Any, bool]:
        """The model for ``settings.model`` and whether it was loaded just now."""
        if self._model is not None and self._settings == settings.model:
            return self._model, False
        from ..pipeline.loading import load_model

        self._settings, self._model = None, None
        self._model, self._settings = load_model(settings.model), settings.model
        return self._model, True
