"""``sampling.cache``: diffusers' transformer caches on Wan, set up per sampling run.

Both caches reuse the blocks' residual from an earlier step when the model's output is predicted
to change little, so a run is faster and close to, not equal to, the uncached one:

- ``first-block``: diffusers' ``FirstBlockCacheConfig``: the first block always runs; when its
  output changed less than the threshold since the last full step, the other blocks are skipped.
- ``mag``: diffusers' ``MagCacheConfig`` (MagCache, Ma et al. 2025, reported 2.68x on Wan 2.1):
  skips by the accumulated error of per-step *magnitude ratios* ``mean(|r_k| / |r_{k-1}|)`` of
  the transformer's residual ``r`` (last block's output minus the first block's input). The
  ratios belong to the weights and the schedule, not the prompt, and diffusers ships none for
  Wan: :func:`calibrate_mag_ratios` measures them on the loaded weights, once per model, step
  count and shift (a full uncached run from seeded noise at the model's base size), and they are
  kept on the model. The same model and settings give the same ratios in every process, so a
  resumed job skips the same steps.

A cache's state belongs to one sampling run: :func:`use_cache` (re)installs the configuration at
the start of every run (a cascade stage, a chunk), and a run restarted at step ``k`` of ``N``
(FreeScale's high stage) gets the ratios of steps ``k..N-1``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig
from diffusers.utils.torch_utils import randn_tensor

CALIBRATION_SEED = 0


def cache_config(kind: str, *, steps: int, start: int = 0, ratios: Sequence[float] | None = None):
    """The diffusers cache configuration of ``sampling.cache`` for a run of steps ``start..steps-1``."""
    if kind == "none":
        return None
    if kind == "first-block":
        return FirstBlockCacheConfig()
    if kind == "mag":
        if ratios is None or len(ratios) != steps:
            raise ValueError(f"MagCache needs {steps} calibrated ratios, got {None if ratios is None else len(ratios)}")
        return MagCacheConfig(num_inference_steps=steps - start, mag_ratios=torch.tensor(list(ratios[start:])))
    raise ValueError(f"sampling.cache = {kind!r}: choose none, first-block or mag")


def use_cache(transformer, config) -> None:
    """Install ``config`` on ``transformer`` with fresh state (None: no cache)."""
    if transformer.is_cache_enabled:
        transformer.disable_cache()
    if config is not None:
        transformer.enable_cache(config)


@torch.no_grad()
def calibrate_mag_ratios(transformer, velocity: Callable[[torch.Tensor, float], torch.Tensor], schedule,
                         steps: int, shape: tuple[int, ...], device: torch.device) -> list[float]:
    """MagCache's ratios for ``steps`` steps of ``schedule``: one uncached UniPC run of ``velocity``
    from seeded noise of ``shape``, recording the residual ``r`` over the transformer's blocks
    at each call; ratio ``k`` is ``mean over tokens of |r_k| / |r_{k-1}|`` (1 at the first step)."""
    use_cache(transformer, None)
    residuals: list[torch.Tensor] = []
    first, last = transformer.blocks[0], transformer.blocks[-1]
    entry: dict[str, torch.Tensor] = {}
    hooks = [first.register_forward_pre_hook(lambda _m, args: entry.update(x=args[0].float())),
             last.register_forward_hook(lambda _m, _a, out: residuals.append(
                 torch.linalg.norm(out.float() - entry["x"], dim=-1)))]
    try:
        generator = torch.Generator(device).manual_seed(CALIBRATION_SEED)
        x = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        timesteps = schedule.timesteps(steps)
        solver = schedule.solver("unipc")
        for k, t in enumerate(timesteps):
            calls = len(residuals)
            v = velocity(x, t)
            del residuals[calls + 1:]  # the prompt's stream only (the first call of the step)
            x = solver.step(x, v, t, timesteps[k + 1] if k + 1 < steps else 0)
    finally:
        for hook in hooks:
            hook.remove()
    ratios = [1.0] + [float((now / (before + 1e-8)).mean()) for before, now in zip(residuals, residuals[1:])]
    return ratios
