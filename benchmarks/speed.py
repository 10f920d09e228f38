"""Speed at real size: three reference jobs, timed per stage, with memory and achieved TFLOP/s.

Jobs (full size, ``--model random``: VideoCrafter2's architecture with random weights):

- ``t2v_640``: text to video, 16 frames 320x512 -> 640x1024, DDIM 50 steps, restart 0.3 (the
  FreeScale paper's setting); ``t2v_640_dpm25`` the same with DPM-Solver++(2M) in 25 steps;
- ``t2v_1280``: 16 frames, x4 cascade to 1280x2048 (preset t2v-1280p);
- ``upscale_2160``: 48 frames 1920x1080 -> 3840x2160 (synthesised with PyAV; tiles where the
  plan needs them).

Each job runs through the library's entry points (``generate_clip``, ``upscale_clip``). Stages are
timed from the outside: the progress bars the pipelines open (base, each cascade stage, decode)
and wrappers around the model's text encoder and VAE; on CUDA every boundary synchronises.
FLOPs come from the plan's UNet model (``vidscale.work.plan.unet_tflops``, full width, CFG counted
as batch 2); TFLOP/s is FLOPs of the UNet steps over the denoising seconds; the bf16 peak is looked
up by device name. After the jobs, ``unet_compile`` times UNet calls eagerly and with ``--compile``.

``--reduced`` shrinks widths, sizes and frames so the same jobs run on a CPU in minutes; its
numbers are for ratios only (DPM 25 vs DDIM 50, compile vs eager), not for the GPU targets.

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
from vidscale.pipeline.generate import cascade_factors, generate_clip
from vidscale.pipeline.loading import peak_memory_gb, reset_peak_memory
from vidscale.pipeline.upscale import plan_upscale, upscale_clip
from vidscale.progress import Progress
from vidscale.settings import Settings, load_settings
from vidscale.work.plan import unet_tflops

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]

FULL_JOBS: dict[str, dict[str, Any]] = {
    "t2v_640": {"kind": "t2v", "preset": "t2v-640p", "overrides": {}},
    "t2v_640_dpm25": {"kind": "t2v", "preset": "t2v-640p-fast", "overrides": {}},
    "t2v_1280": {"kind": "t2v", "preset": "t2v-1280p", "overrides": {}},
    "upscale_2160": {"kind": "upscale", "preset": None, "clip": (1920, 1080, 48),
                     "overrides": {"upscale.scale": 2, "upscale.engine": "freescale"}},
}
# --reduced: same jobs, tiny widths, 1/5 of the side, 2 frames (ratios, not absolute numbers).
REDUCED_SIZES = {"generate.frames": 2, "generate.base_width": 96, "generate.base_height": 64}
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


def t2v_unet_work(settings: Settings) -> list[tuple[str, int, float]]:
    """(stage, UNet steps, TFLOP per step) of a generate job, from the plan's FLOP model."""
    g, sampling, method = settings.generate, settings.sampling, settings.freescale
    batch = 2 if sampling.guidance_scale > 1 else 1
    base = (g.base_height // 8) * (g.base_width // 8)
    work = [("base", sampling.steps, unet_tflops(g.frames, base, base, batch))]
    high_steps = sampling.steps - restart_index(sampling.steps, method.restart_fraction)
    for factor in cascade_factors(settings):
        tokens = base * factor * factor
        attended = tokens if method.fusion in ("off", "reference", "fast") else min(tokens, base)
        work.append((f"x{factor}", high_steps, unet_tflops(g.frames, tokens, attended, batch)))
    return work


def run_t2v(model: Any, settings: Settings, folder: Path, sync: Callable[[], None]) -> dict[str, Any]:
    timer = StageTimer(sync)
    with timed_methods(model, sync, {"encode_prompt": "text", "decoded": "vae_decode"}) as inner:
        result = generate_clip(settings, output=folder / "t2v.mp4", overwrite=True, progress=timer, model=model)
    work = t2v_unet_work(settings)
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


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
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

    started = time.perf_counter()
    model = build_model(args, device, dtype)
    results["model"] = {"name": model.name, "build_s": time.perf_counter() - started,
                        "unet_parameters": sum(p.numel() for p in model.unet.parameters())}
    save()
    for job in chosen:
        spec = specs[job]
        reset_peak_memory(device)
        try:
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
    if not args.no_compile:
        try:
            results["comparisons"]["unet_compile"] = unet_compile(model, args.reduced, sync)
        except Exception as exc:
            results["comparisons"]["unet_compile"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    save()
    print(table(results, peak))


if __name__ == "__main__":
    main()
