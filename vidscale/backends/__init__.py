"""Model families behind one seam (:mod:`.base`): VideoCrafter2 and Wan 2.x.

:func:`as_backend` is the one way from a loaded model (what :func:`vidscale.pipeline.loading.load_model`
returns, or a test's tiny model) to the interface the pipelines run on.
"""

from __future__ import annotations

from typing import Any

from ..model import VideoCrafter2
from ..model.wan import Wan
from .base import Backend, EpsFn, NoiseSchedule
from .videocrafter2 import VC2Backend
from .wan import WanBackend

# The backend class of each loaded model class.
BACKENDS: dict[type, type[VC2Backend] | type[WanBackend]] = {VideoCrafter2: VC2Backend, Wan: WanBackend}


def as_backend(model: Any) -> Backend:
    """``model`` as a :class:`Backend` (a backend is returned as it is)."""
    for kind, backend in BACKENDS.items():
        if isinstance(model, backend):
            return model
        if isinstance(model, kind):
            return backend(model)
    raise TypeError(f"no backend runs a {type(model).__name__}; known: {', '.join(k.__name__ for k in BACKENDS)}")


__all__ = ["Backend", "EpsFn", "NoiseSchedule", "VC2Backend", "WanBackend", "as_backend"]
