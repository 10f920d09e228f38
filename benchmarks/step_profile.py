"""A torch.profiler summary of exactly one denoising step of a real job, for a figure that missed
its target: which kernels the step's time goes to, and its memory peak.

The step is found through the pipeline's own progress bars, so it is the job's real step (tiles,
CFG batch, FreeScale's dilation and fusion patches, the solver) and not a stand-in: the bar
``stage`` opened for the ``occurrence``-th time is watched, and the time between its first and
second ``update`` (the job's second step there: the first pays one-off costs such as new
allocations) is profiled. The job then stops with :class:`StepProfiled`; the rest of it would
only repeat what its timed run already measured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

from vidscale.pipeline.loading import peak_memory_gb

TOP_ROWS = 25  # rows of the text table
TOP_JSON = 10  # rows kept in the run's JSON


class StepProfiled(Exception):
    """Raised once the step is profiled and written: the job need not go on."""


@dataclass
class StepProfile:
    """Which step to profile and where its summary goes (``folder / profile_<job>.txt``)."""

    job: str
    stage: str  # the progress bar's desc: "base" or "steps"
    occurrence: int  # 1 for the first bar of that desc, ...
    folder: Path
    device: torch.device
    sync: Callable[[], None]
    seen: int = 0
    summary: dict[str, Any] | None = field(default=None)

    def watch(self, desc: str, bar: Any, total: int | None) -> Any:
        """The bar the pipeline gets: ``bar`` itself, or a profiling wrapper for the chosen one."""
        if desc != self.stage:
            return bar
        self.seen += 1
        return _ProfiledBar(bar, self, total) if self.seen == self.occurrence else bar

    def write(self, events: Any, seconds: float, step: int, total: int | None) -> None:
        cuda = self.device.type == "cuda"
        key = "self_device_time_total" if cuda else "self_cpu_time_total"
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            peak_kind = "cuda max_memory_allocated in the step"
        else:
            peak, peak_kind = peak_memory_gb(self.device), "process peak RSS so far (not resettable)"
        ranked = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:TOP_JSON]
        path = self.folder / f"profile_{self.job}.txt"
        path.write_text(
            f"torch.profiler: one denoising step of {self.job}: bar '{self.stage}' #{self.occurrence}, "
            f"step {step + 1} of {total}\n"
            f"device {torch.cuda.get_device_name(self.device) if cuda else self.device.type}; "
            f"torch {torch.__version__}\n"
            f"step wall time {seconds:.4f} s; memory peak {peak:.2f} GB ({peak_kind})\n"
            f"ops and kernels by {key.replace('_', ' ')}:\n"
            + events.table(sort_by=key, row_limit=TOP_ROWS, max_name_column_width=90) + "\n")
        self.summary = {
            "file": path.name, "stage": self.stage, "occurrence": self.occurrence, "step": step + 1,
            "step_s": seconds, "peak_memory_gb": peak, "peak_memory_kind": peak_kind, "sorted_by": key,
            "top": [{"name": e.key, "self_ms": getattr(e, key) / 1e3, "calls": e.count} for e in ranked],
        }


class _ProfiledBar:
    """Forwards to the real bar; profiles from its first update to its second (or, for a
    one-step stage, from its start to its first)."""

    def __init__(self, bar: Any, owner: StepProfile, total: int | None):
        self.bar, self.owner, self.total = bar, owner, total
        self.done = 0
        self.profiler: profile | None = None
        self.started = 0.0
        if (total or 0) < 2:
            self._start()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        self.done += n
        if self.profiler is None:
            self._start()
        else:
            self._stop()

    def set_postfix_str(self, s: str) -> None:
        self.bar.set_postfix_str(s)

    def _start(self) -> None:
        owner = self.owner
        owner.sync()
        if owner.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(owner.device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if owner.device.type == "cuda" else [])
        self.profiler = profile(activities=activities, profile_memory=True)
        self.profiler.start()
        self.started = time.perf_counter()

    def _stop(self) -> None:
        assert self.profiler is not None
        self.owner.sync()
        seconds = time.perf_counter() - self.started
        self.profiler.stop()
        self.owner.write(self.profiler.key_averages(), seconds, self.done - 1, self.total)
        raise StepProfiled(self.owner.job)
