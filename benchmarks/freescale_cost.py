"""What scale fusion costs per UNet step, next to direct inference at the same size.

Two measurements, side by side in one run, for direct inference (no patches), FreeScale
``reference`` (overlapping windows) and ``fast`` (neighborhood patch attention) at a VC2 x2 stage
(80 x 128 latent, base 40 x 64), batch 1:

1. FLOPs per UNet forward at FULL VC2 width (diffusers' default UNet3DConditionModel config, the
   VC2 UNet without its fps embedding), 16 frames, counted on the meta device with
   ``torch.utils.flop_counter.FlopCounterMode``. On meta, SDPA runs its math path (two bmm per
   call), so attention FLOPs are counted; the script checks that first. Gathers and the blur are
   memory work and count 0 FLOPs: the timing below includes them.
2. CPU seconds per UNet forward on a reduced-width model of the same shape (same levels, same
   head counts, narrower channels) at the same 80 x 128 latent, a few frames, best of N.
   Narrowing the channels shrinks convolutions and projections (~C^2) more than attention (~C),
   so attention's share, and with it any attention overhead, is LARGER here than at full width.

Run:  PYTHONPATH=. python benchmarks/freescale_cost.py [--width 160] [--frames 2] [--reps 2]
"""

from __future__ import annotations

import argparse
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import UNet3DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from vidscale.freescale import scale_fusion

BASE, TARGET = (40, 64), (80, 128)
MODES = ("direct", "reference", "fast")


def patches(unet: UNet3DConditionModel, mode: str) -> AbstractContextManager:
    """The context of one benchmarked variant."""
    if mode == "direct":
        return nullcontext()
    return scale_fusion(unet, base_size=BASE, target_size=TARGET, mode=mode, sigma=1.0, scale=2)


def check_sdpa_is_counted() -> None:
    """FlopCounterMode must see SDPA on meta, else attention would silently count as free."""
    q = torch.empty(2, 5, 256, 64, device="meta")
    with FlopCounterMode(display=False) as counter:
        F.scaled_dot_product_attention(q, q, q)
    expected = 4 * 2 * 5 * 256 * 256 * 64
    if counter.get_total_flops() != expected:
        raise RuntimeError(f"SDPA counted {counter.get_total_flops()} FLOPs, expected {expected}")


def flops_per_step(frames: int) -> dict[str, int]:
    """FLOPs of one forward at full VC2 width on the meta device, per variant."""
    with torch.device("meta"):
        unet = UNet3DConditionModel()
        sample = torch.empty(1, 4, frames, *TARGET)
        text = torch.empty(1, 77, 1024)
    result = {}
    for mode in MODES:
        with patches(unet, mode), FlopCounterMode(display=False) as counter:
            unet(sample, 500, text)
        result[mode] = counter.get_total_flops()
    return result


def reduced_unet(width: int) -> UNet3DConditionModel:
    """VC2's shape (4 levels, 2 layers, 5/10/20 heads) with block widths width x (1, 2, 4, 4)."""
    torch.manual_seed(0)
    return UNet3DConditionModel(
        block_out_channels=(width, 2 * width, 4 * width, 4 * width),
        attention_head_dim=width // 5,  # diffusers' name: this is the head dim -> 5/10/20 heads
        cross_attention_dim=1024,
    ).eval()


def seconds_per_step(width: int, frames: int, reps: int) -> dict[str, float]:
    """Best-of-``reps`` CPU seconds of one forward per variant, after one warm-up each."""
    unet = reduced_unet(width)
    sample = torch.randn(1, 4, frames, *TARGET)
    text = torch.randn(1, 77, 1024)
    result = {}
    with torch.inference_mode():
        for mode in MODES:
            with patches(unet, mode):
                result[mode] = best_time(lambda: unet(sample, 500, text), reps)
    return result


def best_time(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=160, help="level-0 width of the timed UNet (VC2: 320)")
    parser.add_argument("--frames", type=int, default=2, help="frames of the timed clip")
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions (best is kept)")
    parser.add_argument("--flop-frames", type=int, default=16, help="frames of the FLOP count")
    args = parser.parse_args()

    check_sdpa_is_counted()
    flops = flops_per_step(args.flop_frames)
    seconds = seconds_per_step(args.width, args.frames, args.reps)
    print(f"VC2 x2 stage: latent {TARGET[0]}x{TARGET[1]} (base {BASE[0]}x{BASE[1]}), batch 1, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"FLOPs: full width, {args.flop_frames} frames (meta).  "
          f"Time: width {args.width}, {args.frames} frames, best of {args.reps}.")
    print(f"{'variant':<10} {'TFLOP/step':>11} {'x direct':>9} {'s/step':>8} {'x direct':>9}")
    for mode in MODES:
        print(f"{mode:<10} {flops[mode] / 1e12:>11.2f} {flops[mode] / flops['direct']:>9.3f} "
              f"{seconds[mode]:>8.2f} {seconds[mode] / seconds['direct']:>9.3f}")


if __name__ == "__main__":
    main()
