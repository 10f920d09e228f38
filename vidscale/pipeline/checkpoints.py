"""Step checkpoints: the running unit of a job (an upscale's chunk, a generation's stage) saved
after a denoising step, so a stop or a crash costs at most that step.

A checkpoint holds the latent after the step, its memory layout (strides: the live latent is
often channels-last, and kernels reduce in a different order on another layout, which would
change the last bits), the solver's state (the generator's when eta > 0, a multistep solver's
history) and whatever else the unit's next step depends on (``extra``: a chunk's anchor
trajectory, a generation's generator). With the inputs the caller rebuilds (reference, noise),
that is all a step depends on, so the continuation equals the uninterrupted run bit for bit.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..errors import Interrupted
from ..model.solvers import Solver
from ..work.store import JobStore

SOLVER = "solver."  # prefix of the solver's state in a step checkpoint


def saved_latent(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A latent as the store keeps it: its values and its memory layout."""
    return {"latent": x, "stride": torch.tensor(x.stride())}


def restored_latent(tensors: dict[str, torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """A :func:`saved_latent` (contiguous, as files store it) back in the layout it had."""
    saved, stride = tensors["latent"], tensors["stride"]
    return torch.empty_strided(saved.shape, stride.tolist(), dtype=saved.dtype, device=device).copy_(saved)


def resume_step(store: JobStore, index: int, solver: Solver,
                device: torch.device | str) -> tuple[tuple[int, torch.Tensor] | None, dict[str, torch.Tensor]]:
    """Unit ``index``'s last step checkpoint as ``((steps done, latent), tensors)`` with ``solver``
    restored to its state then; ``(None, {})`` when the unit has none (it starts at its first step)."""
    saved = store.load_step(index)
    if saved is None:
        return None, {}
    done, tensors = saved
    solver.load_state({key[len(SOLVER):]: value for key, value in tensors.items() if key.startswith(SOLVER)})
    return (done, restored_latent(tensors, device)), tensors


class StepCheckpoints:
    """An after-step hook: saves the running unit every ``every`` seconds, and stops it when asked.

    ``unit`` names what is running in the stop message ("chunk", "stage"); ``extra()`` returns
    the tensors saved besides the latent and the solver's state. The last step saves nothing:
    the finished unit is saved right after.
    """

    def __init__(self, store: JobStore, index: int, *, unit: str, units: int, steps: int, done: int,
                 every: float, solver: Solver, should_stop: Callable[[], bool] | None,
                 extra: Callable[[], dict[str, torch.Tensor]] = dict):
        self.store, self.index, self.unit, self.units = store, index, unit, units
        self.steps, self.done, self.every, self.solver = steps, done, every, solver
        self.should_stop, self.extra = should_stop, extra
        self.saved_at = time.monotonic()

    def __call__(self, step: int, t: int, x: torch.Tensor) -> torch.Tensor:
        self.done += 1
        if self.done == self.steps:
            return x
        stop = self.should_stop is not None and self.should_stop()
        if stop or time.monotonic() - self.saved_at >= self.every:
            tensors = {**saved_latent(x), **self.extra(),
                       **{SOLVER + key: value for key, value in self.solver.state().items()}}
            self.store.save_step(self.index, self.done, tensors)
            self.saved_at = time.monotonic()
        if stop:
            unit, number = self.unit, self.index + 1
            raise Interrupted(f"stopped at step {self.done} of {self.steps} in {unit} {number} of {self.units}; "
                              f"kept in {self.store.root}: {len(self.store.finished)} finished {unit}(s) and "
                              f"{unit} {number} up to that step")
        return x


__all__ = ["SOLVER", "StepCheckpoints", "restored_latent", "resume_step", "saved_latent"]
