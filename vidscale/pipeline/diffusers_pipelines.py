"""diffusers pipeline classes over vidscale's own pipeline code: a face, not a second implementation.

Each ``__call__`` turns its arguments into the same :class:`~vidscale.settings.Settings` the CLI
builds (a preset, then ``overrides``, then the named arguments) and calls the function the CLI
calls: :func:`~vidscale.pipeline.generate.generate_latents` for text-to-video,
:func:`~vidscale.pipeline.frames.upscale_frames` for upscaling. Frames are quantised to 16 bits
exactly as the CLI hands them to its writer, so a pipeline user and a CLI user get the same
frames for the same seed and settings.

A converted model folder loads with ``DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)`` (the "remote code" is the folder's one-line imports of the installed
vidscale; see :mod:`vidscale.model.folder`) or, without the flag, with
``VideoCrafter2Pipeline.from_pretrained(folder)`` and the other classes here, which trust exactly
those lines and nothing else.

Interrupting: the pipelines return frames and have no place on disk for a job folder, so they
run without one and are not resumable. A ``KeyboardInterrupt`` keeps nothing and leaves the
modules as they were (every FreeScale patch is restored on the way out): the next call starts
over. A resumable text-to-video is :func:`vidscale.generate` (or ``vidscale generate``), which
writes a file and keeps its job folder beside it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import PIL.Image
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, PreTrainedTokenizerBase, UMT5EncoderModel

from ..backends import as_backend
from ..model import VideoCrafter2
from ..model.folder import is_vidscale_code
from ..model.schedule import VC2Schedule
from ..model.tokenizer import ClipTokenizer
from ..model.unet import VC2UNet
from ..model.wan import Wan, wan_base_size
from ..model.wan_schedule import FlowSchedule
from ..progress import Progress
from ..settings import Settings, load_settings
from .base_stage import sample_from
from .frames import upscale_frames
from .generate import decoded_rgb16, generate_latents

RGB16 = 65535.0

Callback = Callable[[DiffusionPipeline, int, int, dict[str, Any]], dict[str, Any]]


@dataclass
class VideoPipelineOutput(BaseOutput):
    """``frames``: batch first, like diffusers' video pipelines: (1, F, H, W, 3) floats in [0, 1] for
    ``"np"``, (1, F, 3, H, W) for ``"pt"``, ``[[PIL.Image, ...]]`` for ``"pil"``;
    ``diffusers.utils.export_to_video(frames[0], path)`` takes any of the first and last."""

    frames: np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]


class _Face(DiffusionPipeline):
    """What every vidscale pipeline class shares: settings built as the CLI builds them, its
    progress bar, and ``callback_on_step_end`` as a step hook of vidscale's loop."""

    default_preset: str | None = "t2v-640p"  # the settings `vidscale generate` starts from

    def settings(self, preset: str | os.PathLike | Settings | None, overrides: Mapping[str, Any] | None,
                 named: Mapping[str, Any]) -> Settings:
        """The preset (a name, a .toml path or Settings; None: the CLI's default), then dotted
        ``overrides``, then the named arguments that are not None."""
        base = preset if isinstance(preset, Settings) else load_settings(preset or self.default_preset)
        return base.replace(dict(overrides or {}), source="overrides").replace(named, source="pipeline argument")

    def _progress(self) -> Progress:
        return Progress(enabled=not getattr(self, "_progress_bar_config", {}).get("disable", False))

    def _generate(self, model: Any, settings: Settings, generator: torch.Generator | None,
                  callback: Callback | None, output_type: str, return_dict: bool) -> VideoPipelineOutput | tuple:
        """Steps 2 and 3 of every text-to-video ``__call__``: the function ``vidscale generate`` runs
        (a generator seeded with the settings' seed unless one is given), then the frames decoded
        as the CLI writes them (or the latents, for ``"latent"``)."""
        if generator is None:
            generator = torch.Generator(model.device).manual_seed(settings.sampling.seed)
        latents = generate_latents(model, settings, generator=generator, progress=self._progress(),
                                   after_step=self._after_step(callback))
        frames: Any = latents
        if output_type != "latent":
            frames = to_output(np.concatenate(list(decoded_rgb16(model, latents, self._progress()))), output_type)
        self.maybe_free_model_hooks()
        return VideoPipelineOutput(frames=frames) if return_dict else (frames,)

    def _after_step(self, callback: Callback | None) -> Callable[[int, int, torch.Tensor], torch.Tensor] | None:
        if callback is None:
            return None

        def after_step(i: int, t: int, latents: torch.Tensor) -> torch.Tensor:
            return callback(self, i, t, {"latents": latents}).get("latents", latents)

        return after_step


class VideoCrafter2Pipeline(_Face):
    """Text-to-video with VideoCrafter2 at its base size (320x512 for the real model)."""

    # the components register_modules sets
    unet: VC2UNet
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: ClipTokenizer
    scheduler: VC2Schedule

    model_cpu_offload_seq = "text_encoder->unet->vae"  # type: ignore[assignment]  # diffusers leaves it unannotated (None)
    _callback_tensor_inputs = ["latents"]

    def __init__(self, unet: VC2UNet, vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: ClipTokenizer,
                 scheduler: VC2Schedule):
        super().__init__()
        self.register_modules(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """diffusers' loader; a folder whose only code is vidscale's import lines loads without
        ``trust_remote_code`` (any other code still needs the caller's explicit trust). The folder
        names :class:`VideoCrafter2Pipeline`; the other classes take its components."""
        folder = Path(pretrained_model_name_or_path)
        if folder.is_dir() and is_vidscale_code(folder):
            kwargs.setdefault("trust_remote_code", True)
        pipeline = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        return pipeline if type(pipeline) is cls else cls.from_pipe(pipeline)

    @property
    def base_size(self) -> tuple[int, int]:
        """(height, width) in pixels the UNet was trained at (its config's ``sample_size`` x 8)."""
        sample = self.unet.config["sample_size"] or (40, 64)
        sample = (sample, sample) if isinstance(sample, int) else sample
        return sample[0] * 8, sample[1] * 8

    def videocrafter2(self) -> VideoCrafter2:
        """The components as the model object vidscale's pipeline functions run on."""
        height, width = self.base_size
        return VideoCrafter2(self.unet, self.vae, self.text_encoder, self.tokenizer, self.scheduler,
                             name="VideoCrafter2 (diffusers pipeline)", base_height=height, base_width=width,
                             execution_device=self._execution_device)

    def check_size(self, height: int, width: int) -> None:
        if (height, width) != self.base_size:
            raise ValueError(f"{type(self).__name__} makes {self.base_size[0]}x{self.base_size[1]} (height x width), "
                             f"got {height}x{width}; FreeScalePipeline makes 2x, 4x, ... that")

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str | None = None, height: int | None = None,
                 width: int | None = None, num_frames: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, eta: float | None = None, fps: int | None = None,
                 generator: torch.Generator | None = None, output_type: str = "np", return_dict: bool = True,
                 callback_on_step_end: Callback | None = None, preset: str | os.PathLike | Settings | None = None,
                 overrides: Mapping[str, Any] | None = None) -> VideoPipelineOutput | tuple:
        """Generate ``num_frames`` frames for ``prompt``. ``None`` takes the preset's value (``t2v-640p``:
        16 frames, 50 steps, CFG 12, fps 28). Without ``generator`` the preset's seed is used, as the
        CLI does; a generator on the model's device reproduces ``vidscale generate --seed N``."""
        # 1. settings, as the CLI builds them
        base_height, base_width = self.base_size
        default_height, default_width = self._default_size()
        height, width = height or default_height, width or default_width
        self.check_size(height, width)
        named = {"sampling.prompt": prompt, "sampling.negative_prompt": negative_prompt,
                 "sampling.steps": num_inference_steps, "sampling.guidance_scale": guidance_scale,
                 "sampling.eta": eta, "sampling.fps": fps, "generate.frames": num_frames,
                 "generate.base_height": base_height, "generate.base_width": base_width,
                 "generate.height": height, "generate.width": width}
        settings = self.settings(preset, overrides, named)
        return self._generate(self.videocrafter2(), settings, generator, callback_on_step_end, output_type, return_dict)

    def _default_size(self) -> tuple[int, int]:
        return self.base_size


class FreeScalePipeline(VideoCrafter2Pipeline):
    """Text-to-video at 2x, 4x, ... the base size: VideoCrafter2, then FreeScale's self-cascade
    (one x2 stage per doubling; default 2x: 640x1024 for the real model)."""

    def check_size(self, height: int, width: int) -> None:
        base_height, base_width = self.base_size
        ratio = height // base_height
        if height % base_height or width != base_width * ratio or ratio & (ratio - 1):
            raise ValueError(f"FreeScalePipeline: {height}x{width} (height x width) is not the base "
                             f"{base_height}x{base_width} times 1, 2, 4, ...")

    def _default_size(self) -> tuple[int, int]:
        return self.base_size[0] * 2, self.base_size[1] * 2


class VideoCrafter2UpscalePipeline(VideoCrafter2Pipeline):
    """Frames in, frames 2x (or 4x) larger out: ``vidscale upscale --engine freescale`` on an array."""

    default_preset = None  # `vidscale upscale` without --preset starts from the defaults

    # the text-to-video pipeline's components, not its call: video in, video out
    @torch.no_grad()
    def __call__(self, video: np.ndarray | torch.Tensor | Sequence[PIL.Image.Image],  # type: ignore[override]
                 prompt: str | None = None,
                 scale: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, fps: int | None = None,
                 generator: torch.Generator | None = None, output_type: str = "np", return_dict: bool = True,
                 preset: str | os.PathLike | Settings | None = None,
                 overrides: Mapping[str, Any] | None = None) -> VideoPipelineOutput | tuple:
        """Upscale ``video``: (F, H, W, 3) numpy (integers, or floats in [0, 1]), (F, 3, H, W) torch
        floats in [0, 1], or a list of PIL images. ``fps`` is what the UNet is conditioned on (the
        CLI uses the clip's rate). The noise is keyed per frame by the seed (``generator``'s initial
        seed, else the preset's), so chunking never changes the result."""
        # 1. settings, as the CLI builds them
        named = {"sampling.prompt": prompt, "upscale.scale": scale, "sampling.steps": num_inference_steps,
                 "sampling.guidance_scale": guidance_scale, "sampling.fps": fps,
                 "sampling.seed": generator.initial_seed() if generator is not None else None}
        settings = self.settings(preset, overrides, named)
        if not settings.sampling.fps:
            raise ValueError("VideoCrafter2UpscalePipeline: pass fps= (the clip's frame rate; "
                             "VC2 is conditioned on it)")
        # 2. the same chunked FreeScale denoising as `vidscale upscale`
        frames = upscale_frames(self.videocrafter2(), as_rgb_frames(video), settings, fps=settings.sampling.fps,
                                progress=self._progress())
        self.maybe_free_model_hooks()
        output = to_output(frames, output_type)
        return VideoPipelineOutput(frames=output) if return_dict else (output,)


class WanFreeScalePipeline(_Face):
    """Text-to-video with Wan 2.1 through vidscale: ``WanPipeline``'s arguments, its frames at the
    base size, FreeScale's self-cascade above it (one x2 stage per doubling).

    ``WanFreeScalePipeline.from_pretrained(folder)`` loads a stock diffusers Wan folder (the
    ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` layout). At the base size (480x832 for the 1.3B model)
    and with the same arguments, the frames are ``WanPipeline``'s (tests/test_wan_diffusers.py);
    above it, the same code as ``vidscale generate``. Unset arguments take the preset's values
    (``wan-t2v-960p``: 81 frames, 50 steps, guidance 5.0 and Wan's own negative prompt, where
    WanPipeline uses none: pass ``negative_prompt=""`` to match it). The flow shift is the
    scheduler's (``pipe.scheduler = UniPCMultistepScheduler.from_config(..., flow_shift=5.0)``
    changes it, as for WanPipeline).
    """

    # the components register_modules sets
    tokenizer: PreTrainedTokenizerBase
    text_encoder: UMT5EncoderModel
    vae: AutoencoderKLWan
    scheduler: UniPCMultistepScheduler
    transformer: WanTransformer3DModel

    model_cpu_offload_seq = "text_encoder->transformer->vae"  # type: ignore[assignment]  # diffusers leaves it unannotated (None)
    _callback_tensor_inputs = ["latents"]
    default_preset = "wan-t2v-960p"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, text_encoder: UMT5EncoderModel, vae: AutoencoderKLWan,
                 scheduler: UniPCMultistepScheduler, transformer: WanTransformer3DModel):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                              transformer=transformer)
        self.base_size = wan_base_size(transformer.config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """diffusers' loader on a Wan folder; a folder vidscale saved also gives its base size."""
        pipeline = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        index = Path(pretrained_model_name_or_path) / "model_index.json"
        if index.is_file():
            pipeline.base_size = wan_base_size(pipeline.transformer.config, json.loads(index.read_text()))
        return pipeline

    def wan(self) -> Wan:
        """The components as the model object vidscale's pipeline functions run on."""
        height, width = self.base_size
        return Wan(self.transformer, self.vae, self.text_encoder, self.tokenizer,
                   FlowSchedule(self.scheduler.config["flow_shift"]), name="Wan (diffusers pipeline)",
                   base_height=height, base_width=width, execution_device=self._execution_device)

    def check_size(self, height: int, width: int) -> None:
        base_height, base_width = self.base_size
        ratio = height // base_height
        if height % base_height or width != base_width * ratio or ratio & (ratio - 1):
            raise ValueError(f"{type(self).__name__}: {height}x{width} (height x width) is not the base "
                             f"{base_height}x{base_width} times 1, 2, 4, ...")

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str | None = None, height: int | None = None,
                 width: int | None = None, num_frames: int | None = None, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None,
                 output_type: str = "np", return_dict: bool = True, callback_on_step_end: Callback | None = None,
                 preset: str | os.PathLike | Settings | None = None,
                 overrides: Mapping[str, Any] | None = None) -> VideoPipelineOutput | tuple:
        """``num_frames`` (1 + 4k) frames for ``prompt`` at ``height`` x ``width`` (default: 2x the
        base). Without ``generator`` the preset's seed is used, as the CLI does."""
        # 1. settings, as the CLI builds them
        base_height, base_width = self.base_size
        height, width = height or 2 * base_height, width or 2 * base_width
        self.check_size(height, width)
        named = {"sampling.prompt": prompt, "sampling.negative_prompt": negative_prompt,
                 "sampling.steps": num_inference_steps, "sampling.guidance_scale": guidance_scale,
                 "generate.frames": num_frames, "generate.base_height": base_height,
                 "generate.base_width": base_width, "generate.height": height, "generate.width": width}
        settings = self.settings(preset, overrides, named)
        return self._generate(self.wan(), settings, generator, callback_on_step_end, output_type, return_dict)


class WanFreeScaleVideoToVideoPipeline(WanFreeScalePipeline):
    """Video-to-video at the clip's own size with Wan 2.1: ``WanVideoToVideoPipeline``'s arguments
    and frames (the clip encoded, re-noised to ``strength``, denoised by vidscale's sampler)."""

    # the text-to-video pipeline's components, not its call: video in, video out
    @torch.no_grad()
    def __call__(self, video: np.ndarray | torch.Tensor | Sequence[PIL.Image.Image],  # type: ignore[override]
                 prompt: str = "",
                 negative_prompt: str | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 strength: float = 0.8, generator: torch.Generator | None = None, output_type: str = "np",
                 return_dict: bool = True, callback_on_step_end: Callback | None = None,
                 preset: str | os.PathLike | Settings | None = None,
                 overrides: Mapping[str, Any] | None = None) -> VideoPipelineOutput | tuple:
        """``video``: (F, H, W, 3) numpy, (F, 3, H, W) torch floats in [0, 1] or PIL images, F = 1 + 4k;
        ``height`` / ``width``, when given, must be its size (resize it first: nothing is resampled here)."""
        # 1. settings and the clip's latent
        frames = as_rgb_frames(video)
        if (height or frames.shape[1], width or frames.shape[2]) != frames.shape[1:3]:
            raise ValueError(f"{type(self).__name__}: the video is {frames.shape[1]}x{frames.shape[2]} "
                             f"(height x width), not {height}x{width}: resize it first")
        named = {"sampling.prompt": prompt, "sampling.negative_prompt": negative_prompt,
                 "sampling.steps": num_inference_steps, "sampling.guidance_scale": guidance_scale}
        settings = self.settings(preset, overrides, named)
        backend = as_backend(self.wan())
        pixels = torch.from_numpy(frames.astype(np.float32) / float(np.iinfo(frames.dtype).max))
        latents = backend.encode_frames(pixels.permute(0, 3, 1, 2) * 2 - 1)
        # 2. the prompt, then the re-noised clip denoised from the strength's step
        eps_fn = backend.predictor(settings.sampling, fps=backend.spec.fps)
        if generator is None:
            generator = torch.Generator(backend.device).manual_seed(settings.sampling.seed)
        latents = sample_from(backend, eps_fn, latents, steps=settings.sampling.steps, strength=strength,
                              scheduler=settings.sampling.scheduler, generator=generator, progress=self._progress(),
                              after_step=self._after_step(callback_on_step_end))
        if output_type == "latent":
            output: Any = latents
        else:  # 3. decode as the CLI writes
            output = to_output(np.concatenate(list(decoded_rgb16(backend, latents, self._progress()))), output_type)
        self.maybe_free_model_hooks()
        return VideoPipelineOutput(frames=output) if return_dict else (output,)


def as_rgb_frames(video: np.ndarray | torch.Tensor | Sequence[PIL.Image.Image]) -> np.ndarray:
    """Any accepted input -> (F, H, W, 3) integer RGB (floats in [0, 1] become 16-bit)."""
    if isinstance(video, torch.Tensor):
        video = video.detach().cpu().permute(0, 2, 3, 1).numpy()
    elif not isinstance(video, np.ndarray):
        video = np.stack([np.asarray(image.convert("RGB")) for image in video])
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected frames as (F, H, W, 3) numpy, (F, 3, H, W) torch or PIL images; got {video.shape}")
    if np.issubdtype(video.dtype, np.integer):
        return video
    return np.round(np.clip(video, 0.0, 1.0) * RGB16).astype(np.uint16)


def to_output(rgb16: np.ndarray, output_type: str) -> np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]:
    """(F, H, W, 3) uint16 -> one batch of frames in the requested form."""
    if output_type == "np":
        return (rgb16.astype(np.float32) / RGB16)[None]
    if output_type == "pt":
        return torch.from_numpy(rgb16.astype(np.float32) / RGB16).permute(0, 3, 1, 2)[None]
    if output_type == "pil":
        eight = ((rgb16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return [[PIL.Image.fromarray(frame) for frame in eight]]
    raise ValueError(f"output_type {output_type!r}: choose 'np', 'pt', 'pil' (or 'latent' for text-to-video)")
