"""Speed at real size: three reference jobs, timed per stage, with memory and achieved TFLOP/s.

Jobs (full size, ``--model random``: VideoCrafter2's architecture with random weights):

- ``t2v_640``: text to video, 16 frames 320x512 -> 640x1024, DDIM 50 steps, restart 0.3 (the
  FreeScale paper's setting); ``t2v_640_dpm25`` the same with DPM-Solver++(2M) in 25 steps;
- ``t2v_1280``: 16 frames, x4 cascade to 1280x2048 (preset t2v-1280p);
- ``upscale_2160``: 48 frames 1920x1080 -> 3840x2160 (synthesised with PyAV; tiles where the
  plan needs them);
- ``wan_t2v_480``: Wan 2.1 1.3B (``--wan-model wan-random``: its architecture, random weights),
  81 frames at 480x832, UniPC 50 steps, guidance 5 (preset wan-t2v-960p at its base size);
  ``wan_t2v_480_fbc`` / ``wan_t2v_480_mag`` the same with ``sampling.cache`` first-block / mag;
- ``wan_t2v_960``: 81 frames, x2 cascade to 960x1664 (preset wan-t2v-960p);
- ``wan_upscale_1440``: 81 frames 1280x720 -> 2560x1440 (preset wan-upscale-2x).

Each job runs through the library's entry points (``generate_clip``, ``upscale_clip``). Stages are
timed from the outside: the progress bars the pipelines open (base, each cascade stage, decode)
and wrappers around the model's text encoder and VAE; on CUDA every boundary synchronises.
FLOPs come from the plan's UNet model (``vidscale.work.plan.unet_tflops``, full width, CFG counted
as batch 2); TFLOP/s is FLOPs of the UNet steps over the denoising seconds; the bf16 peak is looked
up by device name; Wan's FLOPs come from :func:`vidscale.model.wan.transformer_tflops` (per CFG
stream). After the jobs, ``unet_compile`` times UNet calls eagerly and with ``--compile``, and
``wan_cache`` (``--reduced``) runs the Wan base job's sampling with each ``sampling.cache`` against none: wall time
ratio and the result's deviation from the uncached one. On random weights that deviation says
how much a cache changes the numbers, not whether the picture survives: that needs real weights.

``--reduced`` shrinks widths, sizes and frames so the same jobs run on a CPU in minutes; its
numbers are for ratios only (DPM 25 vs DDIM 50, compile vs eager, a cache vs none), not for the
GPU targets; its Wan jobs run the tiny test model (wan-tiny).

    PYTHONPATH=. python benchmarks/speed.py --model random --json speed.json   # GPU: bf16 on cuda
    PYTHONPATH=. python benchmarks/speed.py --reduced                          # CPU: ratios in minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from clips import gradient_clip

from vidscale.freescale import restart_index
from vidscale.model.compile import compile_blocks, uncompile_blocks
from vidscale.model.configs import TINY_TEXT, TINY_UNET, TINY_VAE
from vidscale.model.loading import load_videocrafter2
from vidscale.model.videocrafter2 import random_videocrafter2
from vidscale.model.wan import Wan, load_wan, transformer_tflops
from vidscale.pipeline.generate import cascade_factors, generate_clip, generate_latents
from vidscale.pipeline.loading import peak_memory_gb, reset_peak_memory
from vidscale.pipeline.upscale import plan_upscale, upscale_clip
from vidscale.progress import Progress
from vidscale.settings import Settings, load_settings
from vidscale.work.plan import unet_tflops

WAN_BASE_ONLY = {"generate.width": 832, "generate.height": 480}  # no cascade: Wan's own generation
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]

FULL_JOBS: dict[str, dict[str, Any]] = {
    "t2v_640": {"kind": "t2v", "preset": "t2v-640p", "overrides": {}},
    "t2v_640_dpm25": {"kind": "t2v", "preset": "t2v-640p-fast", "overrides": {}},
    "t2v_1280": {"kind": "t2v", "preset": "t2v-1280p", "overrides": {}},
    "upscale_2160": {"kind": "upscale", "preset": None, "clip": (1920, 1080, 48),
                     "overrides": {"upscale.scale": 2, "upscale.engine": "freescale"}},
    "wan_t2v_480": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p", "overrides": WAN_BASE_ONLY},
    "wan_t2v_480_fbc": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p",
                        "overrides": {**WAN_BASE_ONLY, "sampling.cache": "first-block"}},
    "wan_t2v_480_mag": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p",
                        "overrides": {**WAN_BASE_ONLY, "sampling.cache": "mag"}},
    "wan_t2v_960": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p", "overrides": {}},
    "wan_upscale_1440": {"kind": "upscale", "family": "wan", "preset": "wan-upscale-2x", "clip": (1280, 720, 81),
                         "overrides": {}},
}
# --reduced: same jobs, tiny widths, 1/5 of the side, 2 frames (ratios, not absolute numbers).
REDUCED_SIZES = {"generate.frames": 2, "generate.base_width": 96, "generate.base_height": 64}
WAN_REDUCED_BASE = {"generate.frames": 9, "generate.base_width": 80, "generate.base_height": 48,
                    "generate.width": 80, "generate.height": 48}
REDUCED_JOBS: dict[str, dict[str, Any]] = {
    "t2v_640": {"kind": "t2v", "preset": "t2v-640p",
                "overrides": {**REDUCED_SIZES, "generate.width": 192, "generate.height": 128}},
    "t2v_640_dpm25": {"kind": "t2v", "preset": "t2v-640p-fast",
                      "overrides": {**REDUCED_SIZES, "generate.width": 192, "generate.height": 128}},
    "t2v_1280": {"kind": "t2v", "preset": "t2v-1280p",
                 "overrides": {**REDUCED_SIZES, "generate.width": 384, "generate.height": 256}},
    "upscale_2160": {"kind": "upscale", "preset": None, "clip": (96, 54, 6),
                     "overrides": {"upscale.scale": 2, "upscale.engine": "freescale", "jobs.chunk_frames": 4,
                                   "jobs.overlap_frames": 1}},
    # Wan on wan-tiny: 9 frames, 1/10 of the side (48x80 base), the real 50 steps
    "wan_t2v_480": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p", "overrides": WAN_REDUCED_BASE},
    "wan_t2v_480_fbc": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p",
                        "overrides": {**WAN_REDUCED_BASE, "sampling.cache": "first-block"}},
    "wan_t2v_480_mag": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p",
                        "overrides": {**WAN_REDUCED_BASE, "sampling.cache": "mag"}},
    "wan_t2v_960": {"kind": "t2v", "family": "wan", "preset": "wan-t2v-960p",
                    "overrides": {**WAN_REDUCED_BASE, "generate.width": 160, "generate.height": 96}},
    "wan_upscale_1440": {"kind": "upscale", "family": "wan", "preset": "wan-upscale-2x", "clip": (128, 72, 9),
                         "overrides": {}},
}
REDUCED_CONFIGS = {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}  # the test widths


class StageTimer(Progress):
    """A silent Progress that records how long each bar (pipeline stage) was open, and its size."""

    def __init__(self, sync: Callable[[], None]):
        super().__init__(enabled=False)
        self.sync = sync
        self.stages: list[tuple[str, float, int | None]] = []

    @contextmanager
    def bar(self, desc: str, total: int | None, unit: str = "it") -> Iterator[Any]:
        self.sync()
        started = time.perf_counter()
        with super().bar(desc, total, unit) as bar:
            yield bar
        self.sync()
        self.stages.append((desc, time.perf_counter() - started, total))


@contextmanager
def timed_methods(model: Any, sync: Callable[[], None], names: dict[str, str]) -> Iterator[dict[str, float]]:
    """Add up the seconds spent in ``model.<method>`` (generators included) under ``names[method]``."""
    totals = {label: 0.0 for label in names.values()}
    originals = {method: getattr(model, method) for method in names}

    def wrap(method: str, label: str) -> Callable[..., Any]:
        original = originals[method]

        def call(*args: Any, **kwargs: Any) -> Any:
            sync()
            started = time.perf_counter()
            result = original(*args, **kwargs)
            if hasattr(result, "__next__"):
                return timed_iter(result, label)
            sync()
            totals[label] += time.perf_counter() - started
            return result
        return call

    def timed_iter(iterator: Iterator[Any], label: str) -> Iterator[Any]:
        while True:
            sync()
            started = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                sync()
                totals[label] += time.perf_counter() - started
            yield item

    for method, label in names.items():
        setattr(model, method, wrap(method, label))
    try:
        yield totals
    finally:
        for method in names:
            vars(model).pop(method, None)


def t2v_unet_work(settings: Settings, model: Any) -> list[tuple[str, int, float]]:
    """(stage, denoiser steps, TFLOP per step) of a generate job: the plan's UNet FLOP model for
    VC2, the transformer's matrix products for Wan (global attention counted at every size)."""
    g, sampling, method = settings.generate, settings.sampling, settings.freescale
    batch = 2 if sampling.guidance_scale > 1 else 1
    base = (g.base_height // 8) * (g.base_width // 8)
    high_steps = sampling.steps - restart_index(sampling.steps, method.restart_fraction)
    if isinstance(model, Wan):
        config, frames = model.transformer.config, model.grid.latent_frames(g.frames)
        latent = (g.base_height // 8, g.base_width // 8)
        work = [("base", sampling.steps, batch * transformer_tflops(config, frames, latent))]
        for factor in cascade_factors(settings):
            size = (latent[0] * factor, latent[1] * factor)
            work.append((f"x{factor}", high_steps, batch * transformer_tflops(config, frames, size)))
        return work
    work = [("base", sampling.steps, unet_tflops(g.frames, base, base, batch))]
    for factor in cascade_factors(settings):
        tokens = base * factor * factor
        attended = tokens if method.fusion in ("off", "reference", "fast") else min(tokens, base)
        work.append((f"x{factor}", high_steps, unet_tflops(g.frames, tokens, attended, batch)))
    return work


def run_t2v(model: Any, settings: Settings, folder: Path, sync: Callable[[], None]) -> dict[str, Any]:
    timer = StageTimer(sync)
    with timed_methods(model, sync, {"encode_prompt": "text", "decoded": "vae_decode"}) as inner:
        result = generate_clip(settings, output=folder / "t2v.mp4", overwrite=True, progress=timer, model=model)
    work = t2v_unet_work(settings, model)
    denoise = [(desc, seconds, total) for desc, seconds, total in timer.stages if desc in ("base", "steps")]
    stages: dict[str, float] = {"text": inner["text"]}
    per_step: dict[str, float] = {}
    for (name, steps, _), (_, seconds, total) in zip(work, denoise):
        stages[name] = seconds
        per_step[name] = seconds / max(1, total or steps)
    decode = sum(seconds for desc, seconds, _ in timer.stages if desc == "decode")
    stages.update(vae_decode=inner["vae_decode"], write=decode - inner["vae_decode"])
    flops = sum(steps * tflops for _, steps, tflops in work)
    return {"elapsed_s": result.elapsed_seconds, "stages_s": stages, "s_per_unet_step": per_step,
            "unet_tflop": flops, "denoise_s": sum(seconds for _, seconds, _ in denoise),
            "output": f"{result.width}x{result.height}x{result.frames}"}


def run_upscale(model: Any, settings: Settings, clip: tuple[int, int, int], folder: Path,
                sync: Callable[[], None]) -> dict[str, Any]:
    width, height, frames = clip
    source = gradient_clip(folder / "source.mp4", width=width, height=height, frames=frames)
    plan = plan_upscale(source, settings)
    timer = StageTimer(sync)
    with timed_methods(model, sync, {"encode_prompt": "text", "encode_frames": "vae_encode",
                                     "decoded": "vae_decode"}) as inner:
        result = upscale_clip(source, folder / "upscaled.mov", settings, overwrite=True, progress=timer, model=model)
    steps = [(seconds, total) for desc, seconds, total in timer.stages if desc == "steps"]
    denoise = sum(seconds for seconds, _ in steps)
    decode = sum(seconds for desc, seconds, _ in timer.stages if desc == "decode")
    chunks = sum(seconds for desc, seconds, _ in timer.stages if desc == "chunks")
    stages = {"text": inner["text"], "vae_encode": inner["vae_encode"], "denoise": denoise,
              "other_in_chunks": chunks - denoise - inner["vae_encode"] - inner["text"],
              "vae_decode": inner["vae_decode"], "write": decode - inner["vae_decode"]}
    unet_steps = sum(total or 0 for _, total in steps)
    plan_dict = plan.to_dict()
    return {"elapsed_s": result.elapsed_seconds, "stages_s": stages,
            "s_per_unet_step": {"denoise": denoise / max(1, unet_steps)}, "unet_tflop": plan_dict["tflops_total"],
            "denoise_s": denoise, "output": f"{result.width}x{result.height}x{result.frames}",
            "plan": {"chunks": len(plan.chunks), "tiles": len(plan.tiles), "fusion": plan.fusion,
                     "steps": plan.steps, "notes": plan.notes}}


def unet_compile(model: Any, reduced: bool, sync: Callable[[], None], calls: int = 3) -> dict[str, Any]:
    """Seconds per CFG UNet call at the x2 stage size, eager and compiled (first call = compile)."""
    frames, size = (2, (16, 24)) if reduced else (16, (80, 128))
    generator = torch.Generator(model.device).manual_seed(0)
    x = torch.randn(2, 4, frames, *size, generator=generator, device=model.device).to(model.dtype)
    context = model.encode_prompt(["a lighthouse", ""])

    def call() -> float:
        sync()
        started = time.perf_counter()
        with torch.no_grad():
            model.unet(x, 681, context, fps=28)
        sync()
        return time.perf_counter() - started

    eager = [call() for _ in range(calls + 1)][1:]
    compile_blocks(model.unet)
    try:
        first = call()
        compiled = [call() for _ in range(calls)]
    finally:
        uncompile_blocks(model.unet)
    return {"frames": frames, "latent": list(size), "eager_s": min(eager), "compiled_s": min(compiled),
            "first_compiled_call_s": first, "ratio": min(compiled) / min(eager)}


def wan_cache(model: Wan, settings: Settings, sync: Callable[[], None]) -> dict[str, Any]:
    """Each ``sampling.cache`` against none on one Wan sampling run (the job's settings): wall-time
    ratio (after a warm-up run; MagCache's one-off calibration excluded) and the final latent's
    deviation from the uncached one (max and mean absolute, and relative to the latent's RMS)."""

    def run(cache: str) -> tuple[float, torch.Tensor]:
        chosen = settings.replace({"sampling.cache": cache})
        generate_latents(model, chosen, generator=torch.Generator(model.device).manual_seed(0))  # warm-up
        sync()
        started = time.perf_counter()
        latents = generate_latents(model, chosen, generator=torch.Generator(model.device).manual_seed(0))
        sync()
        return time.perf_counter() - started, latents.float()

    seconds, plain = run("none")
    rms = float(plain.pow(2).mean().sqrt())
    report: dict[str, Any] = {"none_s": seconds}
    for cache in ("first-block", "mag"):
        cached_seconds, latents = run(cache)
        deviation = (latents - plain).abs()
        report[cache] = {"seconds": cached_seconds, "wall_ratio": round(cached_seconds / seconds, 3),
                         "max_abs_deviation": float(deviation.max()), "mean_abs_deviation": float(deviation.mean()),
                         "mean_abs_deviation_over_rms": round(float(deviation.mean()) / rms, 4)}
    report["note"] = "random weights: the deviation is numeric only; whether quality holds needs real weights"
    return report


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def build_model(args: argparse.Namespace, family: str, device: torch.device, dtype: torch.dtype) -> Any:
    if family == "wan":
        return load_wan("wan-tiny" if args.reduced else args.wan_model, device=device, dtype=dtype)
    if args.reduced:
        model = random_videocrafter2(device, dtype, configs=REDUCED_CONFIGS)
        model.base_height, model.base_width = REDUCED_SIZES["generate.base_height"], REDUCED_SIZES["generate.base_width"]
        return model
    return load_videocrafter2(args.model, device=device, dtype=dtype)


def job_settings(spec: dict[str, Any], device: torch.device) -> Settings:
    return load_settings(spec["preset"], {**spec["overrides"], "sampling.prompt": "a lighthouse on a cliff",
                                          "model.device": device.type})


def table(results: dict[str, Any], peak: float | None) -> str:
    lines = [f"{'job':<15} {'output':>14} {'total s':>9} {'denoise s':>10} {'s/step':>24} {'peak GB':>8} "
             f"{'TFLOP/s':>8} {'of peak':>8}  stages (s)"]
    for name, job in results["jobs"].items():
        if "error" in job:
            lines.append(f"{name:<15} ERROR {job['error']}")
            continue
        per_step = ", ".join(f"{k} {v:.3g}" for k, v in job["s_per_unet_step"].items())
        rate = job.get("tflops_per_s")
        rate_text = f"{rate:8.1f}" if rate is not None else "     n/a"
        share = f"{rate / peak:8.1%}" if rate is not None and peak else "     n/a"
        stages = ", ".join(f"{k} {v:.2f}" for k, v in job["stages_s"].items())
        lines.append(f"{name:<15} {job['output']:>14} {job['elapsed_s']:9.2f} {job['denoise_s']:10.2f} "
                     f"{per_step:>24} {job['peak_memory_gb']:8.2f} {rate_text} {share}  {stages}")
    compare = results.get("comparisons", {})
    for key, value in compare.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random", help="'random' (default), or a converted folder")
    parser.add_argument("--wan-model", default="wan-random", help="'wan-random' (default), or a Wan folder")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                        help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--reduced", action="store_true", help="narrow model, small sizes: CPU ratios in minutes")
    parser.add_argument("--jobs", default=None, help="comma-separated subset of: " + ", ".join(FULL_JOBS))
    parser.add_argument("--no-compile", action="store_true", help="skip the compile vs eager comparison")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (after every job)")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    specs = REDUCED_JOBS if args.reduced else FULL_JOBS
    chosen = args.jobs.split(",") if args.jobs else list(specs)
    name, peak = device_peak(device)
    results: dict[str, Any] = {
        "device": name, "bf16_peak_tflops": peak, "dtype": str(dtype).removeprefix("torch."),
        "reduced": args.reduced, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "command": " ".join(sys.argv), "jobs": {}, "comparisons": {},
        "note": "random weights: speed and memory only" + ("; REDUCED widths and sizes: ratios only"
                                                            if args.reduced else ""),
    }

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    models: dict[str, Any] = {}
    results["models"] = {}

    def model_for(family: str) -> Any:
        """Each family's model, built at its first job (one family on the GPU at a time)."""
        if family not in models:
            models.clear()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            started = time.perf_counter()
            models[family] = build_model(args, family, device, dtype)
            denoiser = models[family].transformer if family == "wan" else models[family].unet
            results["models"][family] = {"name": models[family].name, "build_s": time.perf_counter() - started,
                                         "denoiser_parameters": sum(p.numel() for p in denoiser.parameters())}
        return models[family]

    for job in chosen:
        spec = specs[job]
        reset_peak_memory(device)
        try:
            model = model_for(spec.get("family", "videocrafter2"))
            settings = job_settings(spec, device)
            with tempfile.TemporaryDirectory() as scratch:
                if spec["kind"] == "t2v":
                    record = run_t2v(model, settings, Path(scratch), sync)
                else:
                    record = run_upscale(model, settings, spec["clip"], Path(scratch), sync)
            record["peak_memory_gb"] = peak_memory_gb(device)
            record["peak_memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else \
                "process peak RSS (never reset between jobs)"
            record["tflops_per_s"] = None if args.reduced else record["unet_tflop"] / record["denoise_s"]
            record["settings"] = {"scheduler": settings.sampling.scheduler, "steps": settings.sampling.steps,
                                  "fusion": settings.freescale.fusion}
        except Exception as exc:  # one failing job (an OOM) must not lose the others
            record = {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}",
                      "traceback": traceback.format_exc()[-4000:]}
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results["jobs"][job] = record
        save()
        print(f"{job}: " + (record.get("error") or f"{record['elapsed_s']:.2f} s"), file=sys.stderr, flush=True)
    jobs = results["jobs"]
    if all("elapsed_s" in jobs.get(k, {}) for k in ("t2v_640", "t2v_640_dpm25")):
        results["comparisons"]["dpm25_vs_ddim50_wall_ratio"] = round(
            jobs["t2v_640_dpm25"]["elapsed_s"] / jobs["t2v_640"]["elapsed_s"], 3)
    if not args.no_compile and any(specs[job].get("family", "videocrafter2") == "videocrafter2" for job in chosen):
        try:
            results["comparisons"]["unet_compile"] = unet_compile(model_for("videocrafter2"), args.reduced, sync)
        except Exception as exc:
            results["comparisons"]["unet_compile"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    if args.reduced and "wan_t2v_480" in chosen:
        try:
            results["comparisons"]["wan_cache"] = wan_cache(model_for("wan"), job_settings(specs["wan_t2v_480"],
                                                                                          device), sync)
        except Exception as exc:
            results["comparisons"]["wan_cache"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    save()
    print(table(results, peak))


if __name__ == "__main__":
    main()
