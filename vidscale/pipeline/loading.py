"""From model settings to a loaded model, and what a report says about where it ran."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from typing import Any

import torch

from ..backends import as_backend
from ..model import VideoCrafter2, load_videocrafter2, resolve_device, resolve_dtype, resolve_model_path
from ..model.compile import compile_blocks
from ..settings import ModelSettings


def load_model(settings: ModelSettings) -> VideoCrafter2:
    """Resolve path, device and dtype from the settings and load VideoCrafter2 (or a random test
    model); with ``compile``, its UNet blocks are compiled (lazily, at the first steps)."""
    device = resolve_device(settings.device)
    model = load_videocrafter2(resolve_model_path(settings.path), device=device,
                               dtype=resolve_dtype(settings.dtype, device))
    if settings.compile:
        compile_blocks(model.unet)
    return model


def reset_peak_memory(device: torch.device) -> None:
    """Start a job's GPU peak from zero (a watcher runs many jobs in one process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA, else this process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30


def runtime_report(model: Any) -> dict[str, Any]:
    """Where and with what a job ran: for report.json."""
    backend = as_backend(model)
    versions = {name: metadata.version(name) for name in ("vidscale", "torch", "diffusers", "av", "transformers")}
    return {"device": str(backend.device), "dtype": str(backend.dtype).removeprefix("torch."),
            "model": backend.spec.name, "family": backend.spec.family, "test_model": backend.spec.is_test_model,
            "peak_memory_gb": round(peak_memory_gb(model.device), 3),
            "python": platform.python_version(), "versions": versions}
