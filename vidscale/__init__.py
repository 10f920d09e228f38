"""vidscale: video upscaling and text-to-video with VideoCrafter2 and FreeScale.

The package root imports nothing heavy: ``import vidscale`` and ``vidscale --help`` never load torch.
``vidscale.upscale``, ``vidscale.generate`` and ``vidscale.probe`` (:mod:`vidscale.api`) are
imported on first use (PEP 562).
"""

from typing import Any

__version__ = "0.3.0"
__all__ = ["__version__", "generate", "probe", "upscale"]
_API = ("generate", "probe", "upscale")


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vidscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
