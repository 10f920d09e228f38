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
  ``upscale_2160_budget22`` the same with ``--memory-budget 22`` (a 24 GB card).

Each job runs through the library's entry points (``generate_clip``, ``upscale_clip``). Stages are
timed from the outside: the progress bars the pipelines open (base, each cascade stage, decode)
and wrappers around the model's text encoder and VAE; on CUDA every boundary synchronises.
FLOPs come from the plan's UNet model (``vidscale.work.plan.unet_tflops``, full width, CFG counted
as batch 2); TFLOP/s is FLOPs of the UNet steps over the denoising seconds; the bf16 peak is looked
up by device name. A full-size job records which of its targets (one H200, bf16) it ``missed``.
``--profile-step DIR`` runs a job only up to one step of its highest stage and writes a
torch.profiler summary of that step (``step_profile.py``).

``--reduced`` shrinks widths, sizes and frames so the same jobs run on a CPU in minutes; its
numbers are for ratios only (DPM 25 vs DDIM 50, compile vs eager), not for the GPU targets.

    PYTHONPATH=. python benchmarks/speed.py --model random --json speed.json   # GPU: bf16 on cuda
    PYTHONPATH=. python benchmarks/speed.py --reduced                          # CPU: ratios in minutes
    PYTHONPATH=. python benchmarks/speed.py --list [--reduced]                 # the jobs, their FLOPs and targets
"""

from __future__ import annotations

import argparse
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
from vidscale.model.loading import load_videocrafter2
from vidscale.model.videocrafter2 import random_videocrafter2
from vidscale.pipeline.generate import cascade_factors, generate_clip
from vidscale.pipeline.loading import peak_memory_gb, reset_peak_memory
from vidscale.pipeline.steps import plan_for_model
from vidscale.pipeline.upscale import upscale_clip
from vidscale.progress import Progress
from vidscale.settings import Settings, load_settings
from vidscale.work.plan import VC2_VAE_WIDTH, make_plan, unet_tflops

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, matched on the device name.
BF16_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]
PROJECTED_FRAMES = 48  # the upscale's reference clip length; its time is projected from 16 frames

# --reduced: same jobs, tiny widths, 1/5 of the side, 2 frames (ratios, not absolute numbers).
REDUCED_SIZES = {"generate.frames": 2, "generate.base_width": 96, "generate.base_height": 64}
REDUCED_CONFIGS = {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}  # the test widths
REDUCED_UPSCALE = {"jobs.chunk_frames": 4, "jobs.overlap_frames": 1}


@dataclass(frozen=True)
class Job:
    """One reference job: what it runs at full size and with ``--reduced``, what it must reach,
    and how long ``gpu_run.py`` lets its process run."""

    label: str  # its row in the README's table
    kind: str  # "t2v" | "upscale" | "unet_compile"
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    reduced: dict[str, Any] = field(default_factory=dict)  # more overrides with --reduced
    clip: tuple[int, int, int] = (0, 0, 0)  # upscale source: width, height, frames
    reduced_clip: tuple[int, int, int] = (0, 0, 0)
    targets: dict[str, float] = field(default_factory=dict)  # record key -> most allowed (full size, one H200)
    cap_s: float = 300.0  # the process's time cap at full size
    reduced_cap_s: float = 600.0  # ... and with --reduced (2 shared CPU cores)
    assumed_s: float = 0.0  # seconds its FLOPs do not account for (compiling): an assumption, for --budget


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
                        targets={"s_per_output_frame": 12.5}, cap_s=360),
    "upscale_2160_budget22": Job("the same upscale, --memory-budget 22", "upscale", "prores-hq-2x",
                                 overrides={"jobs.memory_budget_gb": 22.0},
                                 reduced=REDUCED_UPSCALE, clip=(1920, 1080, 16), reduced_clip=(96, 54, 6),
                                 targets={"peak_memory_gb": 22.0, "peak_reserved_gb": 22.0}, cap_s=420),
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


def run_t2v(model: Any, settings: Settings, folder: Path, timer: StageTimer) -> dict[str, Any]:
    sync = timer.sync
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
    return {"elapsed_s": result.elapsed_seconds, "stages_s": stages,
            "s_per_unet_step": {"denoise": denoise / max(1, unet_steps)}, "unet_tflop": plan_dict["tflops_total"],
            "denoise_s": denoise, "output": f"{result.width}x{result.height}x{result.frames}",
            "s_per_output_frame": per_frame,
            "projected": {"frames": PROJECTED_FRAMES, "elapsed_s": per_frame * PROJECTED_FRAMES,
                          "how": f"PROJECTED, not measured: s per output frame of this {result.frames}-frame "
                                 f"run times {PROJECTED_FRAMES}"},
            "plan": {"chunks": len(plan.chunks), "tiles": len(plan.tiles), "fusion": plan.fusion,
                     "steps": plan.steps, "memory_gb": plan.memory_gb, "notes": plan.notes}}


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


def planned_tflop(job: Job, settings: Settings, reduced: bool, dtype_bytes: int) -> float:
    """The job's UNet TFLOP from the plan's FLOP model, without a model (for --list and --budget)."""
    if job.kind == "t2v":
        return sum(steps * tflops for _, steps, tflops in t2v_unet_work(settings))
    if job.kind == "upscale":  # plan_for_model's plan, from what the model will be rather than the model
        width, height, frames = job.reduced_clip if reduced else job.clip
        base, vae_width = (((REDUCED_SIZES["generate.base_height"] // 8, REDUCED_SIZES["generate.base_width"] // 8),
                            REDUCED_CONFIGS["vae"]["block_out_channels"][1]) if reduced else ((40, 64), VC2_VAE_WIDTH))
        plan = make_plan(width, height, (0, frames), settings, base_latent=base, dtype_bytes=dtype_bytes,
                         vae_width=vae_width)
        return plan.tflops_per_step * plan.steps * len(plan.chunks)
    frames, size = compile_shape(reduced)
    return 2 * (COMPILE_CALLS + 1) * unet_tflops(frames, size[0] * size[1], size[0] * size[1], 2)


def profile_stage(job: Job, settings: Settings) -> tuple[str, int] | None:
    """(progress bar, occurrence) of the job's highest-resolution denoising stage, if it has one."""
    if job.kind == "t2v":
        return "steps", len(cascade_factors(settings))
    if job.kind == "upscale":
        return "steps", 1
    return None


def listing(reduced: bool, device: torch.device, dtype: torch.dtype) -> list[dict[str, Any]]:
    """The jobs in order of value, with what ``gpu_run.py`` and ``speed_table.py`` need of each."""
    rows = []
    for name, job in JOBS.items():
        settings = job_settings(job, reduced, device)
        rows.append({"name": name, "label": job.label, "kind": job.kind, "targets": job.targets,
                     "tflop": planned_tflop(job, settings, reduced, torch.finfo(dtype).bits // 8),
                     "assumed_s": job.assumed_s, "cap_s": job.reduced_cap_s if reduced else job.cap_s,
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


def build_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    if args.reduced:
        model = random_videocrafter2(device, dtype, configs=REDUCED_CONFIGS)
        model.base_height, model.base_width = REDUCED_SIZES["generate.base_height"], REDUCED_SIZES["generate.base_width"]
        return model
    return load_videocrafter2(args.model, device=device, dtype=dtype)


def job_settings(job: Job, reduced: bool, device: torch.device) -> Settings:
    overrides = {**job.overrides, **(job.reduced if reduced else {})}
    return load_settings(job.preset, {**overrides, "sampling.prompt": "a lighthouse on a cliff",
                                      "model.device": device.type})


def run_job(name: str, model: Any, args: argparse.Namespace, device: torch.device,
            sync: Callable[[], None]) -> dict[str, Any]:
    """One job's record: its figures, or the profile of one step (``--profile-step``), or its error."""
    job = JOBS[name]
    reset_peak_memory(device)
    profile = None
    try:
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
                                     Path(scratch), timer)
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
    parser.add_argument("--model", default="random", help="'random' (default), or a converted folder")
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
                           "reduced": args.reduced, "plan": listing(args.reduced, device, dtype)}, indent=2)
        if args.json is not None:
            args.json.write_text(text)
        else:
            print(text)
        return
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    results: dict[str, Any] = {
        "environment": environment(device), "dtype": str(dtype).removeprefix("torch."), "reduced": args.reduced,
        "command": " ".join(sys.argv), "jobs": {},
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
    for name in args.jobs:
        record = run_job(name, model, args, device, sync)
        results["jobs"][name] = record
        save()
        print(f"{name}: " + (record.get("error") or ("profiled" if "profile" in record else
                                                     f"{record.get('elapsed_s', record.get('eager_s', 0)):.2f} s")),
              file=sys.stderr, flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
