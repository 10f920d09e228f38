"""``vidscale generate PROMPT``: VideoCrafter2 at its base size, then the FreeScale self-cascade.

1. check the sizes: the final size must be the base size times 2, 4, ... (one x2 stage each);
2. load the model and encode the prompt;
3. base stage: full DDIM sampling at the base size; clips longer than one temporal window use
   windowed temporal attention and FreeNoise's noise rescheduling;
4. each cascade stage: upsample the clean latent (latent space), re-noise with one noise draw and
   denoise the remaining steps with dilation, scale fusion and detail control (``refine``);
5. decode and write the clip (temporary name, renamed on success).

Steps 3 and 4 run as a job (``.vidscale-jobs/`` beside the output, :mod:`vidscale.work.store`):
each finished stage is saved with the generator's state after it, and the running stage is
checkpointed after a step (every ``jobs.checkpoint_seconds``, and when asked to stop), so a rerun
of the same command continues where the last one stopped and makes the very same frames.

:func:`plan_generate` (``--dry-run``) makes step 1's checks, and those of the model and the
output, without running anything.
"""

from __future__ import annotations

import os
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..atomic import check_target, make_folder, remove_stale_temps
from ..backends import Backend, EpsFn, as_backend
from ..errors import Interrupted, SettingsError
from ..freescale import restart_index, upsample_latent
from ..media import VideoWriter
from ..media.codecs import output_suffix
from ..media.write import check_output
from ..model import resolve_model_path
from ..model.loading import ENV as MODEL_ENV
from ..model.loading import model_family, resolve_spec
from ..model.solvers import Solver
from ..progress import Progress
from ..settings import Settings
from ..work.plan import estimate_seconds, generate_tflops
from ..work.store import JobStore
from .base_stage import sample_base
from .checkpoints import StepCheckpoints, restored_latent, resume_step, saved_latent
from .denoise import StepHook
from .loading import load_model, reset_peak_memory, runtime_report, this_machine
from .refine import Denoiser, refine
from .result import GenerateResult
from .steps import to_rgb16

RESULT_SECTIONS = ("generate", "model", "sampling", "freescale")  # what generated frames depend on
Resume = tuple[int, torch.Tensor] | None  # (steps done, latent after them) of a stage, None: from its start
# One stage's denoising, given its solver, where to resume and the hook to run after every step;
# returns the stage's final latents.
StageRun = Callable[[Solver, Resume, StepHook | None], torch.Tensor]


def cascade_factors(settings: Settings) -> list[int]:
    """The scale of each cascade stage relative to the base: [2, 4] for 320x512 -> 1280x2048."""
    g = settings.generate
    ratio_w, ratio_h = Fraction(g.width, g.base_width), Fraction(g.height, g.base_height)
    if ratio_w != ratio_h or ratio_w.denominator != 1 or ratio_w.numerator & (ratio_w.numerator - 1):
        raise SettingsError(
            f"generate: size {g.width}x{g.height} is not the base {g.base_width}x{g.base_height} "
            "times 1, 2, 4, 8, ... (the cascade doubles each side per stage)")
    stages = ratio_w.numerator.bit_length() - 1
    return [2 ** (k + 1) for k in range(stages)]


# What generate runs without a preset: the model family's own text-to-video preset (its base size,
# frame count, guidance and sampler).
FAMILY_PRESETS = {"videocrafter2": "t2v-640p", "wan": "wan-t2v-960p"}


def family_preset(model_path: str | None) -> str:
    """The preset ``generate`` starts from when none is given (the CLI and the Python API alike):
    the family's of the model ``model_path`` names (else ``$VIDSCALE_MODEL``'s)."""
    return FAMILY_PRESETS[model_family(model_path or os.environ.get(MODEL_ENV, ""))]


def default_output(settings: Settings) -> Path:
    """``SLUG_WxH.mp4`` in the current folder; the slug keeps the prompt's letters in any script."""
    slug = re.sub(r"[\W_]+", "-", settings.sampling.prompt.lower()).strip("-")[:48].strip("-") or "clip"
    g = settings.generate
    return Path(f"{slug}_{g.width}x{g.height}{output_suffix(settings.output.codec)}")


def plan_generate(settings: Settings, *, output: Path | None = None) -> dict[str, Any]:
    """``generate --dry-run``: what :func:`generate_clip` checks before it starts (sizes, output
    name and folder, the weights), and what it would make; nothing is loaded or written."""
    factors = cascade_factors(settings)
    output = Path(output) if output is not None else default_output(settings)
    check_output(output, settings.output.codec)
    g = settings.generate
    spec = resolve_spec(settings.model.path)
    tflops = generate_tflops(settings, spec.cost, spec.grid)
    machine = this_machine(settings.model)
    return {"engine": f"{spec.family} + freescale cascade", "output": str(output),
            "codec": settings.output.codec, "model": str(resolve_model_path(settings.model.path)),
            "width": g.width, "height": g.height, "frames": g.frames,
            "frame_rate": generation_fps(settings, spec.fps), "steps": settings.sampling.steps,
            "stages": [f"{g.base_width}x{g.base_height}"] + [
                f"{g.base_width * f}x{g.base_height * f}" for f in factors],
            "tflops_total": tflops, "machine": machine, "estimate_seconds": estimate_seconds(tflops, machine)}


def generate_clip(settings: Settings, *, output: Path | None = None, overwrite: bool = False,
                  progress: Progress | None = None, model: Any = None,
                  should_stop: Callable[[], bool] | None = None) -> GenerateResult:
    """Generate a clip for ``settings.sampling.prompt`` at ``settings.generate``'s size; resumable.

    ``should_stop`` is asked after every denoising step: once it says yes, the running stage is
    saved at that step and :class:`~vidscale.errors.Interrupted` is raised. A stop without it (a
    ``KeyboardInterrupt``, a crash) keeps every finished stage and the running stage's last step
    checkpoint. Either way the next call with the same arguments continues from there and writes
    the very same clip.
    """
    started = time.perf_counter()
    progress = progress or Progress(enabled=False)
    # 1. sizes
    cascade_factors(settings)
    output = Path(output) if output is not None else default_output(settings)
    check_target(output, overwrite=overwrite)
    check_output(output, settings.output.codec)
    make_folder(output.parent, exit_code=2)
    g, sampling = settings.generate, settings.sampling
    # 2. model and job store
    backend = as_backend(model or load_model(settings.model))
    reset_peak_memory(backend.device)
    store = JobStore.open(output.parent / ".vidscale-jobs", output.stem, job_identity(settings, backend))
    remove_stale_temps(output)  # a killed run's half-written output: this run writes it anew
    generator = torch.Generator(backend.device).manual_seed(sampling.seed)
    # 3. and 4. base stage and cascade
    started_denoise = time.perf_counter()
    latents = generate_latents(backend, settings, generator=generator, progress=progress, store=store,
                               should_stop=should_stop)
    denoised = time.perf_counter()
    # 5. decode and write
    fps = generation_fps(settings, backend.spec.fps)
    with VideoWriter(output, width=g.width, height=g.height, source=None, settings=settings.output,
                     frame_rate=Fraction(fps), overwrite=overwrite) as writer:
        for frames in decoded_rgb16(backend, latents, progress):
            writer.write(frames)
    result = GenerateResult(output=output, prompt=sampling.prompt, width=g.width, height=g.height,
                            frames=g.frames, frame_rate=Fraction(fps),
                            codec=settings.output.codec, seed=sampling.seed,
                            elapsed_seconds=time.perf_counter() - started, test_model=backend.spec.is_test_model)
    timings = {"denoise": denoised - started_denoise, "decode_and_write": time.perf_counter() - denoised}
    store.complete({"result": result.to_dict(), "settings": settings.to_dict(), "seconds": timings,
                    **runtime_report(backend)})
    return result


def job_identity(settings: Settings, model: Any) -> dict[str, Any]:
    """Everything that decides a generation's frames: the prompt, negative prompt, seed, size,
    frame count and the sampling, FreeScale and model settings (:data:`RESULT_SECTIONS`), and the
    model. Not ``jobs.*`` or ``output.*``: they decide how the job runs and how the frames are
    encoded, not the frames. A stopped job resumes only into a job of the same identity."""
    return {"settings": settings.digest(*RESULT_SECTIONS), "model": as_backend(model).spec.name}


def generation_fps(settings: Settings, model_fps: int) -> int:
    """The frame rate the model is conditioned on (VC2) and the clip is written at: ``sampling.fps``,
    else the model family's own (``model_fps``)."""
    return settings.sampling.fps or model_fps


@torch.no_grad()
def generate_latents(model: Any, settings: Settings, *, generator: torch.Generator,
                     progress: Progress | None = None, after_step: StepHook | None = None,
                     store: JobStore | None = None,
                     should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """Steps 3 and 4: base sampling, then each cascade stage; the final (1, C, f, h, w) latents.

    The CLI (:func:`generate_clip`) and the diffusers pipelines call this same function, so the
    same generator state and settings give the same frames. ``after_step`` runs after every
    denoising step of every stage. With a ``store`` the stages run as a resumable job
    (:class:`Stages`); without one (the pipelines) nothing is kept.
    """
    factors = cascade_factors(settings)
    backend = as_backend(model)
    g, method, sampling = settings.generate, settings.freescale, settings.sampling
    eps_fn = backend.predictor(sampling, fps=generation_fps(settings, backend.spec.fps))
    spatial = backend.spec.grid.spatial
    base_latent = (g.base_height // spatial, g.base_width // spatial)
    stages = Stages(backend, settings, generator, count=1 + len(factors), store=store, after_step=after_step,
                    should_stop=should_stop)
    first, latents = stages.resume()
    if latents is None:  # 3. base stage (a new job)
        latents = stages.run(0, sampling.steps, _base_stage(backend, eps_fn, settings, generator, base_latent,
                                                            progress))
    for index in range(max(first, 1), stages.count):  # 4. each cascade stage
        steps = sampling.steps - restart_index(sampling.steps, method.restart_fraction)
        run = _cascade_stage(backend, eps_fn, settings, latents, generator, base_latent, factors[index - 1],
                             progress)
        latents = stages.run(index, steps, run)
    return latents


def _base_stage(backend: Backend, eps_fn: EpsFn, settings: Settings, generator: torch.Generator,
                base_latent: tuple[int, int], progress: Progress | None) -> StageRun:
    """Draw the base noise (now, from ``generator``); the run samples the base size from it."""
    g, method = settings.generate, settings.freescale
    noise = backend.initial_noise(g.frames, base_latent, generator, method)

    def run(solver: Solver, resume: Resume, hook: StepHook | None) -> torch.Tensor:
        with backend.base_patches(method, frames=g.frames):
            return sample_base(backend, eps_fn, noise, steps=settings.sampling.steps, generator=generator,
                               progress=progress, after_step=hook, solver=solver, resume=resume)
    return run


def _cascade_stage(backend: Backend, eps_fn: EpsFn, settings: Settings, latents: torch.Tensor,
                   generator: torch.Generator, base_latent: tuple[int, int], factor: int,
                   progress: Progress | None) -> StageRun:
    """Upsample the previous stage's ``latents`` to ``factor`` x the base and draw the stage's one
    noise (now, from ``generator``); the run denoises from the restart step with FreeScale."""
    method, steps = settings.freescale, settings.sampling.steps
    target = (base_latent[0] * factor, base_latent[1] * factor)
    reference = upsample_latent(latents, target, method.upsample_mode)
    noise = randn_tensor(reference.shape, generator=generator, device=backend.device, dtype=torch.float32)
    denoiser = Denoiser(
        eps_fn=eps_fn,
        stage_patches=lambda: backend.stage_patches(method, base_latent=base_latent, target_latent=target,
                                                    scale=factor),
        step_patches=lambda i: backend.step_patches(method, step_index=i, num_steps=steps, scale=factor),
    )

    def run(solver: Solver, resume: Resume, hook: StepHook | None) -> torch.Tensor:
        return refine(denoiser, backend.schedule, reference, noise, settings, solver=solver, resume=resume,
                      progress=progress, after_step=hook)
    return run


class Stages:
    """The stages of one generation as a job: stage 0 is the base, each cascade stage follows.

    Every random draw of a generation comes from the ONE ``generator``, in order: the base noise,
    DDIM's step noise when eta > 0, each cascade stage's noise. So a finished stage is saved with
    the generator's state after it, and a step checkpoint with its state after that step: a resume
    draws exactly what the uninterrupted run drew. A stage's inputs (the base noise; a cascade
    stage's reference and noise) are rebuilt by drawing them again from the restored state, then
    the running stage's checkpoint moves the generator on to where it was.
    """

    def __init__(self, backend: Backend, settings: Settings, generator: torch.Generator, *, count: int,
                 store: JobStore | None, after_step: StepHook | None, should_stop: Callable[[], bool] | None):
        self.backend, self.settings, self.generator, self.count = backend, settings, generator, count
        self.store, self.after_step, self.should_stop = store, after_step, should_stop

    def resume(self) -> tuple[int, torch.Tensor | None]:
        """(the first stage to run, the latents the stage before it ended in), with the generator
        set to its state after that stage; (0, None) for a new job."""
        if self.store is None:
            return 0, None
        finished = len(self.store.finished)  # saved in order: 0 .. n-1
        if not finished:
            return 0, None
        saved = self.store.load_chunk(finished - 1)
        self.generator.set_state(saved["generator"])
        return finished, restored_latent(saved, self.backend.device)

    def run(self, index: int, steps: int, stage: StageRun) -> torch.Tensor:
        """Run stage ``index`` (``steps`` steps) from its last checkpoint, save it, and stop after it
        if asked to."""
        sampling = self.settings.sampling
        solver = self.backend.schedule.solver(sampling.scheduler, eta=sampling.eta, generator=self.generator)
        if self.store is None:
            return stage(solver, None, self.after_step)
        resume, saved = resume_step(self.store, index, solver, self.backend.device)
        if "generator" in saved:
            self.generator.set_state(saved["generator"])
        checkpoints = StepCheckpoints(self.store, index, unit="stage", units=self.count,
                                      steps=steps, done=resume[0] if resume else 0,
                                      every=self.settings.jobs.checkpoint_seconds, solver=solver,
                                      should_stop=self.should_stop,
                                      extra=lambda: {"generator": self.generator.get_state()})
        latents = stage(solver, resume, _then(self.after_step, checkpoints))
        self.store.save_chunk(index, {**saved_latent(latents), "generator": self.generator.get_state()},
                              {"stage": index})
        if self.should_stop is not None and self.should_stop():
            raise Interrupted(f"stopped after stage {index + 1} of {self.count}; kept in {self.store.root}: "
                              f"{len(self.store.finished)} finished stage(s)")
        return latents


def _then(first: StepHook | None, second: StepHook) -> StepHook:
    """``first`` then ``second`` after every step (a caller's hook, then the step checkpoints)."""
    if first is None:
        return second
    return lambda i, t, x: second(i, t, first(i, t, x))


def decoded_rgb16(model: Any, latents: torch.Tensor, progress: Progress) -> Iterator[np.ndarray]:
    """The latents decoded batch by batch as (n, H, W, 3) uint16 RGB: what is written."""
    backend = as_backend(model)
    with progress.bar("decode", total=backend.spec.grid.frames(latents.shape[2]), unit="frame") as bar:
        for pixels in backend.decoded(latents):
            yield to_rgb16(pixels)
            bar.update(pixels.shape[0])
