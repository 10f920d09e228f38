"""From model settings to a loaded model, and what a report says about where it ran."""

from __future__ import annotations

import functools
import platform
import resource
import sys
import time
from importlib import metadata
from typing import Any

import torch

from ..backends import as_backend
from ..errors import SettingsError
from ..model import VideoCrafter2, load_videocrafter2, resolve_device, resolve_dtype, resolve_model_path
from ..model.compile import compile_blocks
from ..model.loading import model_family
from ..model.wan import Wan, compile_transformer, load_wan, set_attention_backend
from ..settings import ModelSettings


def load_model(settings: ModelSettings) -> VideoCrafter2 | Wan:
    """Resolve path, device and dtype from the settings and load the model of the family the path
    names (VideoCrafter2 or Wan, or a random test model of either); with ``compile``, its repeated
    blocks are compiled (lazily, at the first steps)."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    path = resolve_model_path(settings.path)
    if model_family(path) == "wan":
        model = load_wan(path, device=device, dtype=dtype, flow_shift=settings.flow_shift)
        if settings.attention_backend:
            set_attention_backend(model.transformer, settings.attention_backend)
        if settings.compile:
            compile_transformer(model.transformer)
        return model
    for key in ("flow_shift", "attention_backend"):
        if getattr(settings, key):
            raise SettingsError(f"model.{key} = {getattr(settings, key)!r} applies to Wan models only; "
                                f"{path} is VideoCrafter2: remove it")
    vc2 = load_videocrafter2(path, device=device, dtype=dtype)
    if settings.compile:
        compile_blocks(vc2.unet)
    return vc2


@functools.lru_cache(maxsize=None)
def measured_tflops(device: torch.device, dtype: torch.dtype, seconds: float = 0.25) -> float:
    """This machine's sustained matrix-product rate on ``device`` in ``dtype`` (TFLOP/s), measured
    once per process for about ``seconds``: what ``--dry-run`` divides the plan's FLOPs by.

    A plain product is the best case a denoiser step reaches (its convolutions, attention and
    norms run slower), so an estimate from it is on the short side, and is labelled as one.
    """
    side = 2048 if device.type == "cuda" else 512
    a = torch.randn(side, side, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ a  # warm up: first-call allocation and kernel selection
    sync()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ a
        count += 1
    sync()
    return 2 * side**3 * count / (time.perf_counter() - started) / 1e12


def this_machine(settings: ModelSettings) -> dict[str, Any]:
    """Where ``settings`` would run a job here, with its measured rate (:func:`measured_tflops`)."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    return {"device": str(device), "dtype": str(dtype).removeprefix("torch."),
            "tflops": round(measured_tflops(device, dtype), 4)}


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
