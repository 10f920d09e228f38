"""Speed at real size: the reference jobs, timed per stage, with memory and achieved TFLOP/s.

Jobs (full size, ``--model random``: VideoCrafter2's architecture with random weights), in order of
value, which is the order :data:`JOBS` lists them, ``--list`` prints them and ``gpu_run.py`` runs
them in (a new job is one more entry there):

- ``t2v_640_dpm25``: text to video, 16 frames 320x512 -> 640x1024 with DPM-Solver++(2M) in 25
  steps (preset t2v-640p-fast); ``t2v_640`` the same with DDIM 50 steps, restart 0.3 (the
  FreeScale paper's setting);
- ``unet_compile``: one CFG UNet call at the x2 stage's size, eager and with ``--compile`` (the
  first compiled call compiles);
- ``t2v_1280``: 16 frames, x4 cascade to 1280x2048 (preset t2v-1280p);
- ``upscale_2160``: 16 frames 1920x1080 -> 3840x2160 with ``vidscale upscale``'s default preset,
  prores-hq-2x (the clip synthesised with PyAV; tiles where the plan needs them), with seconds per
  output frame and the 48-frame time projected from them;
  ``upscale_2160_budget22`` the same with ``--memory-budget 22`` (a 24 GB card);
- then the Wan jobs (``--wan-model wan-random``: Wan 2.1 1.3B's architecture and UMT5-XXL with
  random weights): ``wan_t2v_480``, 81 frames at 480x832, UniPC 50 steps, guidance 5 (preset
  wan-t2v-960p at its base size); ``wan_t2v_480_fbc`` / ``wan_t2v_480_mag`` the same with
  ``sampling.cache`` first-block / mag (MagCache's one-off calibration included, as a first
  generation pays it); ``wan_t2v_960``: the x2 cascade to 960x1664 (preset wan-t2v-960p);
  ``wan_upscale_1440``: 81 frames 1280x720 -> 2560x1440 (preset wan-upscale-2x; no target, a
  figure); ``wan_cache``: each cache against none on wan_t2v_480's sampling, wall-time ratio and
  the final latent's deviation. On random weights that deviation says how much a cache changes
  the numbers, not whether the picture survives: that needs real weights (``--wan-model FOLDER``).

Each family's model is built at its first job, one family at a time (the other's is freed first).
Each job runs through the library's entry points (``generate_clip``, ``upscale_clip``). Stages are
timed from the outside: the progress bars the pipelines open (base, each cascade stage, decode)
and wrappers around the model's text encoder and VAE; on CUDA every boundary synchronises.
FLOPs come from the plan's cost model of the job's model (:class:`vidscale.model.spec.CostModel`:
VideoCrafter2's UNet fitted to counted FLOPs, Wan's transformer from its config; CFG counted as
batch 2); TFLOP/s is FLOPs of the denoiser steps over the denoising seconds (with a cache: the
uncached run's FLOPs, an effective rate); the bf16 peak is looked up by device name. A full-size
job records which of its targets (one H200, bf16) it ``missed``. ``--profile-step DIR`` runs a
job only up to one step of its highest stage and writes a torch.profiler summary of that step
(``step_profile.py``).

``--reduced`` shrinks widths, sizes and frames so the same jobs run on a CPU in minutes; its
numbers are for ratios only (DPM 25 vs DDIM 50, compile vs eager, a cache vs none), not for the
GPU targets; its Wan jobs run the tiny test model (wan-tiny).

    PYTHONPATH=. python benchmarks/speed.py --model random --json speed.json   # GPU: bf16 on cuda
    PYTHONPATH=. python benchmarks/speed.py --reduced                          # CPU: ratios in minutes
    PYTHONPATH=. python benchmarks/speed.py --list [--reduced]                 # the jobs, their FLOPs and targets
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from clips import gradient_clip
from step_profile import StepProfile, StepProfiled

import vidscale
from vidscale.freescale import restart_index
from vidscale.model.compile import compile_blocks, uncompile_blocks
from vidscale.model.configs import TINY_TEXT, TINY_UNET, TINY_VAE
from vidscale.model.loading import load_videocrafter2, resolve_spec
from vidscale.model.spec import ModelSpec
from vidscale.model.videocrafter2 import random_videocrafter2
from vidscale.model.wan import load_wan
from vidscale.pipeline.generate import cascade_factors, generate_clip, generate_latents
from vidscale.pipeline.loading import peak_memory_gb, reset_peak_memory
from vidscale.pipeline.steps import plan_for_model, plan_for_spec
from vidscale.pipeline.upscale import upscale_clip
from vidscale.progress import Progress
from vidscale.settings import Settings, load_settings
from vidscale.work.plan import unet_tflops

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]

# --reduced: same jobs, tiny widths, 1/5 of the side, 2 frames (ratios, not absolute numbers).
REDUCED_SIZES = {"generate.frames": 2, "generate.base_width": 96, "generate.base_height": 64}
REDUCED_CONFIGS = {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}  # the test widths
REDUCED_UPSCALE = {"jobs.chunk_frames": 4, "jobs.overlap_frames": 1}
WAN_BASE_ONLY = {"generate.width": 832, "generate.height": 480}  # no cascade: Wan's own generation
# Wan on wan-tiny: 9 frames (1 + 4 x 2), 1/10 of the side (48x80 base), the real 50 steps.
WAN_REDUCED = {"generate.frames": 9, "generate.base_width": 80, "generate.base_height": 48,
               "generate.width": 80, "generate.height": 48}
WAN_CACHES = ("first-block", "mag")  # each timed against none by the wan_cache job


@dataclass(frozen=True)
class Job:
    """One reference job: what it runs at full size and with ``--reduced``, what it must reach,
    and how long ``gpu_run.py`` lets its process run."""

    label: str  # its row in the README's table
    kind: str  # "t2v" | "upscale" | "unet_compile" | "wan_cache"
    preset: str | None = None
    family: str = "videocrafter2"  # the model it runs: "videocrafter2" (--model) or "wan" (--wan-model)
    overrides: dict[str, Any] = field(default_factory=dict)
    reduced: dict[str, Any] = field(default_factory=dict)  # more overrides with --reduced
    clip: tuple[int, int, int] = (0, 0, 0)  # upscale source: width, height, frames
    reduced_clip: tuple[int, int, int] = (0, 0, 0)
    projected_frames: int = 0  # an upscale's time per output frame is projected to this many (0: none)
    targets: dict[str, float] = field(default_factory=dict)  # record key -> most allowed (full size, one H200)
    cap_s: float = 300.0  # the process's time cap at full size
    reduced_cap_s: float = 600.0  # ... and with --reduced (2 shared CPU cores)
    assumed_s: float = 0.0  # seconds its FLOPs do not account for (compiling): an assumption, for --budget


WAN_480_TARGETS = {"elapsed_s": 60.0, "peak_memory_gb": 40.0}
WAN_CACHED_TARGETS = {"elapsed_s": 30.0, "peak_memory_gb": 40.0}
JOBS: dict[str, Job] = {
    "t2v_640_dpm25": Job("T2V 16 x 640x1024, DPM++ 2M 25", "t2v", "t2v-640p-fast",
                         reduced={**REDUCED_SIZES, "generate.width": 192, "generate.height": 128},
                         targets={"elapsed_s": 15.0, "peak_memory_gb": 40.0}, cap_s=150),
    "t2v_640": Job("T2V 16 x 640x1024, DDIM 50", "t2v", "t2v-640p",
                   reduced={**REDUCED_SIZES, "generate.width": 192, "generate.height": 128},
                   targets={"elapsed_s": 30.0, "peak_memory_gb": 40.0}, cap_s=180),
    "unet_compile": Job("one UNet step, eager vs --compile (16 x 80x128 latent, CFG)", "unet_compile",
                        cap_s=300, reduced_cap_s=300, assumed_s=150),
    "t2v_1280": Job("T2V 16 x 1280x2048", "t2v", "t2v-1280p",
                    reduced={**REDUCED_SIZES, "generate.width": 384, "generate.height": 256},
                    targets={"elapsed_s": 180.0, "peak_memory_gb": 80.0}, cap_s=420),
    "upscale_2160": Job("upscale 16 x 1920x1080 -> 3840x2160", "upscale", "prores-hq-2x",
                        reduced=REDUCED_UPSCALE, clip=(1920, 1080, 16), reduced_clip=(96, 54, 6),
                        projected_frames=48, targets={"s_per_output_frame": 12.5}, cap_s=360),
    "upscale_2160_budget22": Job("the same upscale, --memory-budget 22", "upscale", "prores-hq-2x",
                                 overrides={"jobs.memory_budget_gb": 22.0},
                                 reduced=REDUCED_UPSCALE, clip=(1920, 1080, 16), reduced_clip=(96, 54, 6),
                                 projected_frames=48, targets={"peak_memory_gb": 22.0, "peak_reserved_gb": 22.0},
                                 cap_s=420),
    "wan_t2v_480": Job("Wan T2V 81 x 480x832, UniPC 50", "t2v", "wan-t2v-960p", "wan", overrides=WAN_BASE_ONLY,
                       reduced=WAN_REDUCED, targets=WAN_480_TARGETS, cap_s=240),
    "wan_t2v_480_fbc": Job("the same, first-block cache", "t2v", "wan-t2v-960p", "wan",
                           overrides={**WAN_BASE_ONLY, "sampling.cache": "first-block"}, reduced=WAN_REDUCED,
                           targets=WAN_CACHED_TARGETS, cap_s=240),
    "wan_t2v_480_mag": Job("the same, MagCache (its calibration run included)", "t2v", "wan-t2v-960p", "wan",
                           overrides={**WAN_BASE_ONLY, "sampling.cache": "mag"}, reduced=WAN_REDUCED,
                           targets=WAN_CACHED_TARGETS, cap_s=240),
    "wan_t2v_960": Job("Wan T2V 81 x 960x1664 (x2 cascade)", "t2v", "wan-t2v-960p", "wan",
                       reduced={**WAN_REDUCED, "generate.width": 160, "generate.height": 96},
                       targets={"elapsed_s": 360.0, "peak_memory_gb": 40.0}, cap_s=600),
    "wan_upscale_1440": Job("Wan upscale 81 x 1280x720 -> 2560x1440", "upscale", "wan-upscale-2x", "wan",
                            clip=(1280, 720, 81), reduced_clip=(128, 72, 9), cap_s=420),
    "wan_cache": Job("Wan caches vs none on the 81 x 480x832 sampling: wall time, latent's deviation",
                     "wan_cache", "wan-t2v-960p", "wan", overrides=WAN_BASE_ONLY, reduced=WAN_REDUCED, cap_s=600),
}
COMPILE_CALLS = 3  # timed calls each, eager and compiled, after one warm-up / compiling call


class StageTimer(Progress):
    """A silent Progress that records how long each bar (pipeline stage) was open, and its size;
    with a :class:`StepProfile`, it hands the pipeline that profile's watched bar."""

    def __init__(self, sync: Callable[[], None], profile: StepProfile | None = None):
        super().__init__(enabled=False)
        self.sync = sync
        self.profile = profile
        self.stages: list[tuple[str, float, int | None]] = []

    @contextmanager
    def bar(self, desc: str, total: int | None, unit: str = "it") -> Iterator[Any]:
        self.sync()
        started = time.perf_counter()
        with super().bar(desc, total, unit) as bar:
            yield self.profile.watch(desc, bar, total) if self.profile else bar
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


def t2v_unet_work(settings: Settings, spec: ModelSpec) -> list[tuple[str, int, float]]:
    """(stage, denoiser steps, TFLOP per step) of a generate job on ``spec``'s model, stage by stage:
    the plan's cost model as :func:`vidscale.work.plan.generate_tflops` applies it to the whole."""
    g, sampling, method = settings.generate, settings.sampling, settings.freescale
    batch = 2 if sampling.guidance_scale > 1 else 1
    frames = spec.grid.latent_frames(g.frames)
    base = (g.base_height // spec.grid.spatial) * (g.base_width // spec.grid.spatial)
    work = [("base", sampling.steps, unet_tflops(frames, base, base, batch, spec.cost))]
    high_steps = sampling.steps - restart_index(sampling.steps, method.restart_fraction)
    for factor in cascade_factors(settings):
        tokens = base * factor * factor
        attended = tokens if method.fusion in ("off", "reference", "fast") else min(tokens, base)
        work.append((f"x{factor}", high_steps, unet_tflops(frames, tokens, attended, batch, spec.cost)))
    return work


def run_t2v(model: Any, settings: Settings, folder: Path, timer: StageTimer) -> dict[str, Any]:
    sync = timer.sync
    with timed_methods(model, sync, {"encode_prompt": "text", "decoded": "vae_decode"}) as inner:
        result = generate_clip(settings, output=folder / "t2v.mp4", overwrite=True, progress=timer, model=model)
    work = t2v_unet_work(settings, model.spec)
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


def run_upscale(model: Any, settings: Settings, clip: tuple[int, int, int], projected_frames: int, folder: Path,
                timer: StageTimer) -> dict[str, Any]:
    width, height, frames = clip
    source = gradient_clip(folder / "source.mp4", width=width, height=height, frames=frames)
    plan = plan_for_model(width, height, (0, frames), settings, model)  # the plan upscale_clip makes
    with timed_methods(model, timer.sync, {"encode_prompt": "text", "encode_frames": "vae_encode",
                                           "decoded": "vae_decode"}) as inner:
        result = upscale_clip(source, folder / "upscaled.mov", settings, overwrite=True, progress=timer, model=model)
    steps = [(seconds, total) for desc, seconds, total in timer.stages if desc == "steps"]
    denoise = sum(seconds for seconds, _ in steps)
    chunks = sum(seconds for desc, seconds, _ in timer.stages if desc == "chunks")
    write = sum(seconds for desc, seconds, _ in timer.stages if desc == "write")  # open for the whole job
    # Decoding and writing run beside the next chunk's denoising (jobs.overlap_io): vae_decode is
    # their decode time wherever it ran; after_chunks is what was left once the last chunk was denoised.
    stages = {"text": inner["text"], "vae_encode": inner["vae_encode"], "denoise": denoise,
              "other_in_chunks": chunks - denoise - inner["vae_encode"] - inner["text"],
              "vae_decode": inner["vae_decode"], "after_chunks": write - chunks}
    unet_steps = sum(total or 0 for _, total in steps)
    plan_dict = plan.to_dict()
    per_frame = result.elapsed_seconds / result.frames
    record = {"elapsed_s": result.elapsed_seconds, "stages_s": stages,
              "s_per_unet_step": {"denoise": denoise / max(1, unet_steps)}, "unet_tflop": plan_dict["tflops_total"],
              "denoise_s": denoise, "output": f"{result.width}x{result.height}x{result.frames}",
              "s_per_output_frame": per_frame,
              "plan": {"chunks": len(plan.chunks), "tiles": len(plan.tiles), "fusion": plan.fusion,
                       "steps": plan.steps, "memory_gb": plan.memory_gb, "notes": plan.notes}}
    if projected_frames:
        record["projected"] = {"frames": projected_frames, "elapsed_s": per_frame * projected_frames,
                               "how": f"PROJECTED, not measured: s per output frame of this {result.frames}-frame "
                                      f"run times {projected_frames}"}
    return record


def cache_rounds(reduced: bool) -> int:
    """Timed rounds of the wan_cache job: one at full size; with --reduced a run takes a fraction
    of a second on shared cores, so the best of several interleaved rounds."""
    return 5 if reduced else 1


def run_wan_cache(model: Any, settings: Settings, rounds: int, sync: Callable[[], None]) -> dict[str, Any]:
    """Each of :data:`WAN_CACHES` against none on one sampling run with the job's settings (no
    decode): the best wall time of ``rounds`` rounds (each runs none, then every cache), and the
    final latent's deviation from the uncached one (max and mean absolute, and the mean relative
    to the latent's RMS). One untimed run with each cache goes first: it warms up, and it
    calibrates MagCache's ratios (a one-off the wan_t2v_480_mag job includes)."""

    def run(cache: str) -> tuple[float, torch.Tensor]:
        sync()
        started = time.perf_counter()
        latents = generate_latents(model, settings.replace({"sampling.cache": cache}),
                                   generator=torch.Generator(model.device).manual_seed(0))
        sync()
        return time.perf_counter() - started, latents.float()

    started = time.perf_counter()
    for cache in WAN_CACHES:
        run(cache)
    seconds: dict[str, list[float]] = {cache: [] for cache in ("none", *WAN_CACHES)}
    latents: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for cache in seconds:
            took, latents[cache] = run(cache)  # the same latent every round: same seed, deterministic
            seconds[cache].append(took)
    plain, none_s = latents["none"], min(seconds["none"])
    rms = float(plain.pow(2).mean().sqrt())
    caches = {}
    for cache in WAN_CACHES:
        deviation = (latents[cache] - plain).abs()
        caches[cache] = {"seconds": min(seconds[cache]), "wall_ratio": min(seconds[cache]) / none_s,
                         "max_abs_deviation": float(deviation.max()), "mean_abs_deviation": float(deviation.mean()),
                         "mean_abs_deviation_over_rms": float(deviation.mean()) / rms}
    return {"elapsed_s": time.perf_counter() - started,  # the whole comparison, warm-up included
            "rounds": rounds, "none_s": none_s, "caches": caches,
            "note": "on random weights the deviation is numeric only; whether quality holds needs real weights"}


def compile_shape(reduced: bool) -> tuple[int, tuple[int, int]]:
    """(frames, latent) of the compile job's UNet call: the x2 stage of t2v-640p."""
    return (2, (16, 24)) if reduced else (16, (80, 128))


def run_unet_compile(model: Any, reduced: bool, sync: Callable[[], None]) -> dict[str, Any]:
    """Seconds per CFG UNet call at the x2 stage size, eager and compiled (first call = compile)."""
    frames, size = compile_shape(reduced)
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

    eager = [call() for _ in range(COMPILE_CALLS + 1)][1:]
    compile_blocks(model.unet)
    try:
        first = call()
        compiled = [call() for _ in range(COMPILE_CALLS)]
    finally:
        uncompile_blocks(model.unet)
    tflop = unet_tflops(frames, size[0] * size[1], size[0] * size[1], 2)
    return {"frames": frames, "latent": list(size), "eager_s": min(eager), "compiled_s": min(compiled),
            "first_compiled_call_s": first, "compile_s": first - min(compiled), "ratio": min(compiled) / min(eager),
            "unet_tflop": tflop, "tflops_per_s_compiled": None if reduced else tflop / min(compiled),
            "eager_tflops_per_s": None if reduced else tflop / min(eager)}


def planned_tflop(job: Job, settings: Settings, spec: ModelSpec, reduced: bool, dtype: torch.dtype) -> float:
    """The job's denoiser TFLOP from the plan's cost model of ``spec``, without a model (for --list
    and --budget); ``wan_cache``'s sampling runs are counted as uncached (a cache skips calls,
    MagCache's calibration adds one guidance-free run)."""
    if job.kind == "t2v":
        return sum(steps * tflops for _, steps, tflops in t2v_unet_work(settings, spec))
    if job.kind == "wan_cache":
        runs = len(WAN_CACHES) + cache_rounds(reduced) * (1 + len(WAN_CACHES))
        return runs * sum(steps * tflops for _, steps, tflops in t2v_unet_work(settings, spec))
    if job.kind == "upscale":  # the plan upscale_clip makes, from the model's spec rather than the model
        width, height, frames = job.reduced_clip if reduced else job.clip
        plan = plan_for_spec(width, height, (0, frames), settings, spec, dtype)
        return plan.tflops_per_step * plan.steps * len(plan.chunks)
    frames, size = compile_shape(reduced)
    return 2 * (COMPILE_CALLS + 1) * unet_tflops(frames, size[0] * size[1], size[0] * size[1], 2, spec.cost)


def profile_stage(job: Job, settings: Settings) -> tuple[str, int] | None:
    """(progress bar, occurrence) of the job's highest-resolution denoising stage, if it has one."""
    if job.kind == "t2v":
        factors = len(cascade_factors(settings))
        return ("steps", factors) if factors else ("base", 1)
    if job.kind == "upscale":
        return "steps", 1
    return None


def family_spec(family: str, args: argparse.Namespace) -> ModelSpec:
    """The spec of the model a family's jobs run on (what :func:`build_model` builds), read without
    loading a weight: its cost model, latent grid and base size plan the jobs for --list."""
    if family == "wan":
        return resolve_spec("wan-tiny" if args.reduced else args.wan_model)
    if args.reduced:  # the random model at the test widths, built on the meta device: nothing allocated
        return build_model(args, family, torch.device("meta"), torch.float32).spec
    return resolve_spec(args.model)


def listing(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[dict[str, Any]]:
    """The jobs in order of value, with what ``gpu_run.py`` and ``speed_table.py`` need of each."""
    specs = {family: family_spec(family, args) for family in {job.family for job in JOBS.values()}}
    rows = []
    for name, job in JOBS.items():
        settings = job_settings(job, args.reduced, device)
        rows.append({"name": name, "label": job.label, "kind": job.kind, "targets": job.targets,
                     "tflop": planned_tflop(job, settings, specs[job.family], args.reduced, dtype),
                     "assumed_s": job.assumed_s, "cap_s": job.reduced_cap_s if args.reduced else job.cap_s,
                     "profiled": profile_stage(job, settings) is not None})
    return rows


def missed_targets(record: dict[str, Any], targets: dict[str, float]) -> list[str]:
    """The targets ``record`` does not meet (a figure it lacks counts as missed)."""
    return [key for key, most in targets.items() if record.get(key) is None or record[key] > most]


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def gpu_driver() -> str | None:
    """The NVIDIA driver's version as nvidia-smi reports it (torch does not say)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              check=False, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def environment(device: torch.device) -> dict[str, Any]:
    """What the figures depend on besides the code, and where vidscale was imported from."""
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads(),
        "versions": {name: version(name) for name in ("diffusers", "transformers", "av", "vidscale")},
        "vidscale_from": str(Path(vidscale.__file__).parent), "device": device.type, "bf16_peak_tflops": None,
    }
    if device.type != "cuda" or torch.cuda.is_available():
        env["device"], env["bf16_peak_tflops"] = device_peak(device)
    if device.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        env.update(gpu_memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   gpu_driver=gpu_driver())
    return env


def build_model(args: argparse.Namespace, family: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The model of ``family``'s jobs: --model / --wan-model, or with --reduced the test widths."""
    if family == "wan":
        return load_wan("wan-tiny" if args.reduced else args.wan_model, device=device, dtype=dtype)
    if args.reduced:
        model = random_videocrafter2(device, dtype, configs=REDUCED_CONFIGS)
        model.base_height = REDUCED_SIZES["generate.base_height"]
        model.base_width = REDUCED_SIZES["generate.base_width"]
        return model
    return load_videocrafter2(args.model, device=device, dtype=dtype)


def job_settings(job: Job, reduced: bool, device: torch.device) -> Settings:
    overrides = {**job.overrides, **(job.reduced if reduced else {})}
    return load_settings(job.preset, {**overrides, "sampling.prompt": "a lighthouse on a cliff",
                                      "model.device": device.type})


def run_job(name: str, model_for: Callable[[str], Any], args: argparse.Namespace, device: torch.device,
            sync: Callable[[], None]) -> dict[str, Any]:
    """One job's record: its figures, or the profile of one step (``--profile-step``), or its error
    (building its model included: a missing Wan folder fails the Wan jobs, not the others)."""
    job = JOBS[name]
    reset_peak_memory(device)
    profile = None
    try:
        model = model_for(job.family)
        settings = job_settings(job, args.reduced, device)
        if args.profile_step is not None:
            stage = profile_stage(job, settings)
            if stage is None:
                return {"error": f"{name} has no denoising step to profile"}
            profile = StepProfile(name, *stage, folder=args.profile_step, device=device, sync=sync)
        timer = StageTimer(sync, profile)
        with tempfile.TemporaryDirectory() as scratch:
            if job.kind == "t2v":
                record = run_t2v(model, settings, Path(scratch), timer)
            elif job.kind == "upscale":
                record = run_upscale(model, settings, job.reduced_clip if args.reduced else job.clip,
                                     job.projected_frames, Path(scratch), timer)
            elif job.kind == "wan_cache":
                record = run_wan_cache(model, settings, cache_rounds(args.reduced), sync)
            else:
                record = run_unet_compile(model, args.reduced, sync)
    except StepProfiled:
        assert profile is not None
        return {"profile": profile.summary}
    except Exception as exc:  # one failing job (an OOM) must not lose the others
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc) else ''}",
                "traceback": traceback.format_exc()[-4000:]}
    if profile is not None:  # the watched stage never reached its second step
        return {"error": f"{name}: the profiled stage ended before its step was profiled"}
    record["peak_memory_gb"] = peak_memory_gb(device)
    record["peak_memory_kind"] = "cuda max_memory_allocated" if device.type == "cuda" else \
        "process peak RSS (never reset between jobs)"
    if device.type == "cuda":
        record["peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 2**30
    if "denoise_s" in record:
        record["tflops_per_s"] = None if args.reduced else record["unet_tflop"] / record["denoise_s"]
        record["settings"] = {"scheduler": settings.sampling.scheduler, "steps": settings.sampling.steps,
                              "fusion": settings.freescale.fusion, "memory_budget_gb": settings.jobs.memory_budget_gb}
    if not args.reduced:
        record["missed"] = missed_targets(record, job.targets)
    return record


def table(results: dict[str, Any]) -> str:
    """Per-stage detail of this process's jobs, for the console (the README's table: speed_table.py)."""
    peak = results["environment"]["bf16_peak_tflops"]
    header = (f"{'job':<22} {'output':>14} {'total s':>9} {'denoise s':>10} {'s/step':>24} {'peak GB':>8} "
              f"{'TFLOP/s':>8} {'of peak':>8}  stages (s)")
    lines = [header]
    for name, job in results["jobs"].items():
        if "error" in job:
            lines.append(f"{name:<22} ERROR {job['error']}")
            continue
        if "profile" in job:
            lines.append(f"{name:<22} profiled one step: {job['profile']['file']}")
            continue
        if "eager_s" in job:
            lines.append(f"{name:<22} eager {job['eager_s']:.3f} s, compiled {job['compiled_s']:.3f} s "
                         f"({job['ratio']:.2f}x), first compiled call {job['first_compiled_call_s']:.1f} s, "
                         f"peak {job['peak_memory_gb']:.2f} GB")
            continue
        if "none_s" in job:
            caches = "; ".join(f"{cache} {c['wall_ratio']:.3f} of the wall time, latent off by at most "
                               f"{c['max_abs_deviation']:.2g} (mean {c['mean_abs_deviation']:.2g}, "
                               f"{c['mean_abs_deviation_over_rms']:.2%} of its RMS)"
                               for cache, c in job["caches"].items())
            lines.append(f"{name:<22} uncached {job['none_s']:.2f} s; {caches}")
            continue
        per_step = ", ".join(f"{k} {v:.3g}" for k, v in job["s_per_unet_step"].items())
        rate = job.get("tflops_per_s")
        rate_text = f"{rate:8.1f}" if rate is not None else "     n/a"
        share = f"{rate / peak:8.1%}" if rate is not None and peak else "     n/a"
        stages = ", ".join(f"{k} {v:.2f}" for k, v in job["stages_s"].items())
        lines.append(f"{name:<22} {job['output']:>14} {job['elapsed_s']:9.2f} {job['denoise_s']:10.2f} "
                     f"{per_step:>24} {job['peak_memory_gb']:8.2f} {rate_text} {share}  {stages}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="random",
                        help="VideoCrafter2's jobs: 'random' (default), or a converted folder")
    parser.add_argument("--wan-model", default="wan-random",
                        help="the Wan jobs: 'wan-random' (default), or a Wan folder (--reduced: wan-tiny)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default=None,
                        help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--reduced", action="store_true", help="narrow model, small sizes: CPU ratios in minutes")
    parser.add_argument("--jobs", default=None, help="comma-separated subset of: " + ", ".join(JOBS))
    parser.add_argument("--list", action="store_true",
                        help="the environment and the jobs in order of value (FLOPs, targets, caps) as JSON, "
                             "to --json or stdout")
    parser.add_argument("--profile-step", type=Path, default=None, metavar="DIR",
                        help="run each job only up to one step of its highest stage; write its profile to DIR")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (after every job)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs.split(",") if args.jobs else list(JOBS)
    unknown = [name for name in args.jobs if name not in JOBS]
    if unknown:
        parser.error(f"unknown job {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    if args.list:
        text = json.dumps({"environment": environment(device), "dtype": str(dtype).removeprefix("torch."),
                           "reduced": args.reduced, "plan": listing(args, device, dtype)}, indent=2)
        if args.json is not None:
            args.json.write_text(text)
        else:
            print(text)
        return
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    results: dict[str, Any] = {
        "environment": environment(device), "dtype": str(dtype).removeprefix("torch."), "reduced": args.reduced,
        "command": " ".join(sys.argv), "models": {}, "jobs": {},
        "note": "random weights: speed and memory only" + ("; REDUCED widths and sizes: ratios only"
                                                            if args.reduced else ""),
    }

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2, default=str))

    models: dict[str, Any] = {}

    def model_for(family: str) -> Any:
        """``family``'s model, built at its first job; the other family's is freed first."""
        if family not in models:
            models.clear()
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            started = time.perf_counter()
            model = models[family] = build_model(args, family, device, dtype)
            denoiser = model.transformer if family == "wan" else model.unet
            results["models"][family] = {"name": model.name, "build_s": time.perf_counter() - started,
                                         "denoiser_parameters": sum(p.numel() for p in denoiser.parameters())}
            save()
        return models[family]

    for name in args.jobs:
        record = run_job(name, model_for, args, device, sync)
        results["jobs"][name] = record
        save()
        print(f"{name}: " + (record.get("error") or ("profiled" if "profile" in record else
                                                     f"{record.get('elapsed_s', record.get('eager_s', 0)):.2f} s")),
              file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
