"""The loaded Wan 2.x model: diffusers' transformer and causal VAE, UMT5, a tokenizer, the flow schedule.

A Wan model is used exactly as diffusers' ``WanPipeline`` uses it, so vidscale's frames can equal
diffusers' (tests/test_wan_diffusers.py): prompts are cleaned, tokenized to 512 ids, encoded by
UMT5 and cut to their length then zero-padded; latents are the VAE posterior's mode normalised by
the VAE config's ``latents_mean`` / ``latents_std``; decoding undoes both.

Memory: UMT5-XXL (5.7 B parameters, 11 GB in bf16) is needed only once per prompt. On a GPU it
stays on the CPU, goes to the GPU for one encode and comes back before denoising; each prompt's
features are kept (a few MB), so a watch folder or a cascade encodes its prompt once. The VAE
runs in float32 (Wan's own recommendation: its decoder is sensitive to bf16), the transformer in
the chosen dtype with diffusers' float32 islands (rotary tables, time embedding, norms).

Sources: ``--model PATH`` (a diffusers Wan folder, ``model_index.json`` naming ``WanPipeline``),
``wan-tiny`` (the real classes at toy widths, seeded: identical in every process) and
``wan-random`` (the full 1.3B architecture built on the meta device and filled on the target,
for speed and memory runs). The random models' outputs are noise and say so.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformer3DModel
from diffusers.pipelines.wan.pipeline_wan import WanPipeline, prompt_clean
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from ..errors import CheckpointError, ModelNotFoundError, SettingsError
from .random_weights import fill_random
from .spec import VAE_PIXELS_PER_PASS, CostModel, LatentGrid, ModelSpec
from .tiles import Box, blend_tiles
from .wan_configs import (
    BASE_SIZES,
    TINY_BASE_SIZE,
    TINY_TEXT,
    TINY_TRANSFORMER,
    TINY_VAE,
    UMT5_XXL,
    WAN_1_3B_TRANSFORMER,
    WAN_2_1_VAE,
    WAN_FPS,
    WAN_SCHEDULER,
)
from .wan_schedule import FlowSchedule
from .wan_tokenizer import MAX_LENGTH, byte_level_tokenizer

WAN_TINY = "wan-tiny"
WAN_RANDOM = "wan-random"
WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN_DOWNLOAD = f"https://huggingface.co/{WAN_REPO}"
PIPELINE_CLASS = "WanPipeline"
TINY_SEED = 20250420
RANDOM_SEED = 20250421
PROMPTS_KEPT = 8  # encoded prompts kept per model
TINY_NAME = "wan-tiny (random test model)"
RANDOM_NAME = "wan-random (Wan 2.1 1.3B architecture, random weights: for speed tests)"
GRAPHS_PER_BLOCK = 64  # compiled graphs per block: cascade sizes x chunk lengths, with room


@dataclass
class Wan:
    """Wan's transformer, VAE, UMT5 encoder, tokenizer and flow schedule, plus what vidscale needs
    to know of them (base size, frame rate, whether the weights are random)."""

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    schedule: FlowSchedule
    name: str
    is_test_model: bool = False
    base_height: int = 480
    base_width: int = 832
    fps: int = WAN_FPS
    max_sequence_length: int = MAX_LENGTH
    execution_device: torch.device | None = None  # where inputs go when offloading keeps weights elsewhere
    prompts: OrderedDict = field(default_factory=OrderedDict, repr=False)  # prompt -> features (CPU)
    mag_ratios: dict = field(default_factory=dict, repr=False)  # (steps, shift) -> MagCache's ratios
    # AutoencoderKLWan keeps its causal caches on the module and every encode or decode starts by
    # clearing both: a chunk's encode (reader thread) must not run inside another's decode (writer).
    vae_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def device(self) -> torch.device:
        return self.execution_device or self.transformer.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.patch_embedding.weight.dtype

    @property
    def grid(self) -> LatentGrid:
        return self.spec.grid

    @property
    def spec(self) -> ModelSpec:
        return wan_spec(self.name, self.is_test_model, (self.base_height, self.base_width),
                        self.transformer.config, self.vae.config, self.fps)

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, 512, D) UMT5 features in the transformer's dtype, as WanPipeline makes them: the
        prompt's own tokens, zeros after them. Encoded once per prompt and kept."""
        if prompt not in self.prompts:
            ids = self.tokenizer([prompt_clean(prompt)], padding="max_length", max_length=self.max_sequence_length,
                                 truncation=True, add_special_tokens=True, return_attention_mask=True,
                                 return_tensors="pt")
            with self._text_encoder_on(self.device):
                device = self.text_encoder.device
                states = self.text_encoder(ids.input_ids.to(device), ids.attention_mask.to(device)).last_hidden_state
            length = int(ids.attention_mask.gt(0).sum())
            features = torch.zeros_like(states)
            features[:, :length] = states[:, :length]
            self.prompts[prompt] = features.cpu()
            while len(self.prompts) > PROMPTS_KEPT:
                self.prompts.popitem(last=False)
        return self.prompts[prompt].to(self.device, self.dtype)

    @contextmanager
    def _text_encoder_on(self, device: torch.device) -> Iterator[None]:
        """UMT5 on ``device`` for one encode; back where it was kept (the CPU on a GPU run) after."""
        home = self.text_encoder.device
        if home == device:
            yield
            return
        self.text_encoder.to(device)  # type: ignore[arg-type]  # typeshed: functools.wraps on .to drops self
        try:
            yield
        finally:
            self.text_encoder.to(home)  # type: ignore[arg-type]  # typeshed: functools.wraps on .to drops self
            if device.type == "cuda":
                torch.cuda.empty_cache()

    @torch.no_grad()
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1], F = 1 + 4k -> (1, C, 1 + k, H/8, W/8) normalised float32 latents.

        The posterior's mode (deterministic: resumed jobs rely on it), normalised as Wan's
        pipelines do: ``(z - latents_mean) / latents_std``.
        """
        frames = pixels.shape[0]
        temporal = self.grid.temporal
        if (frames - 1) % temporal:
            raise ValueError(f"Wan's causal VAE encodes 1 + {temporal}k frames, got {frames}")
        video = pixels.permute(1, 0, 2, 3)[None].to(self.device, self.vae.dtype)  # (1, 3, F, H, W)
        with self.vae_lock:
            latents = self.vae.encode(video).latent_dist.mode().float()
        mean, inverse_std = self._normalisation()
        return (latents - mean) * inverse_std

    @torch.no_grad()
    def decoded(self, latents: torch.Tensor, *, tiles: Sequence[Box] = (), overlap: int = 0,
                pixels_per_pass: int = VAE_PIXELS_PER_PASS) -> Iterator[torch.Tensor]:
        """(1, C, f, h, w) normalised latents -> successive (n, 3, H, W) pixel batches in [-1, 1].

        The causal decoder runs over the whole clip (each latent frame sees the ones before it);
        with more than one of ``tiles``, each latent window is decoded alone and the windows are
        blended with linear ramps in pixel space (memory follows the tile).
        """
        mean, inverse_std = self._normalisation()
        z = (latents.to(self.device, torch.float32) / inverse_std + mean).to(self.vae.dtype)

        def decode(part: torch.Tensor) -> torch.Tensor:
            with self.vae_lock:
                return self.vae.decode(part, return_dict=False)[0]

        spatial = self.grid.spatial
        video = blend_tiles(decode, z, tiles, overlap, scale=spatial) if len(tiles) > 1 else decode(z)
        frames = video[0].permute(1, 0, 2, 3)  # (F, 3, H, W)
        step = max(1, pixels_per_pass // (frames.shape[-2] * frames.shape[-1]))
        for i in range(0, frames.shape[0], step):
            yield frames[i:i + step]

    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1 / std) as (1, C, 1, 1, 1) float32 on the model's device (diffusers multiplies by 1/std)."""
        config = self.vae.config
        mean = torch.tensor(config["latents_mean"]).view(1, config["z_dim"], 1, 1, 1)
        inverse_std = 1.0 / torch.tensor(config["latents_std"]).view(1, config["z_dim"], 1, 1, 1)
        return mean.to(self.device, torch.float32), inverse_std.to(self.device, torch.float32)


def wan_spec(name: str, is_test_model: bool, base_size: tuple[int, int], transformer: Mapping[str, Any],
             vae: Mapping[str, Any], fps: int = WAN_FPS) -> ModelSpec:
    """The spec of a Wan model from its transformer and VAE configs, loaded (:attr:`Wan.spec`) or
    only resolved (:func:`resolve_wan_spec`): 16 channels, 8x in space and 4x in time with the
    first frame alone for Wan 2.1 (48 channels, 16x for Wan 2.2 TI2V-5B); even latent sides
    (patch (1, 2, 2))."""
    grid = LatentGrid(channels=vae["z_dim"], spatial=vae.get("scale_factor_spatial") or 8,
                      temporal=vae.get("scale_factor_temporal") or 4, causal=True,
                      multiple=transformer["patch_size"][1])
    vae_width = (vae.get("decoder_base_dim") or vae["base_dim"]) * vae["dim_mult"][1]
    return ModelSpec(family="wan", name=name, is_test_model=is_test_model, base_size=base_size, grid=grid,
                     vae_width=vae_width, fps=fps, cost=wan_cost(transformer, vae))


def resolve_wan_spec(path: str | Path) -> ModelSpec:
    """The spec of ``wan-tiny``, ``wan-random`` or a Wan folder, from configs only (no weight read)."""
    if str(path) in (WAN_TINY, WAN_RANDOM):
        tiny = str(path) == WAN_TINY
        transformer, vae = (TINY_TRANSFORMER, TINY_VAE) if tiny else (WAN_1_3B_TRANSFORMER, WAN_2_1_VAE)
        return wan_spec(TINY_NAME if tiny else RANDOM_NAME, True, TINY_BASE_SIZE if tiny else BASE_SIZES[1536],
                        transformer, vae)
    folder = Path(path)
    index = json.loads((folder / "model_index.json").read_text())
    transformer = json.loads((folder / "transformer" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    own = index.get("_vidscale", {})
    fps = 24 if transformer["num_attention_heads"] * transformer["attention_head_dim"] == 3072 else WAN_FPS  # TI2V-5B
    return wan_spec(own.get("name") or f"Wan ({folder.name})", bool(own.get("test_model")),
                    wan_base_size(transformer, index), transformer, vae, fps)


def is_wan_folder(path: str | Path) -> bool:
    """A diffusers folder whose ``model_index.json`` names ``WanPipeline``."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text()).get("_class_name") == PIPELINE_CLASS
    except (OSError, ValueError):
        return False


def load_wan(path: str | Path, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
             flow_shift: float = 0.0) -> Wan:
    """A Wan folder, ``wan-tiny`` or ``wan-random`` on ``device``; ``flow_shift`` 0 keeps the
    folder's own (3.0 for Wan 2.1 at 480p)."""
    device = torch.device(device)
    if str(path) == WAN_TINY:
        return tiny_wan(device, dtype, flow_shift=flow_shift)
    if str(path) == WAN_RANDOM:
        return random_wan(device, dtype, flow_shift=flow_shift)
    folder = Path(path)
    index = json.loads((folder / "model_index.json").read_text())
    if index.get("transformer_2") not in (None, [None, None]) or index.get("expand_timesteps"):
        raise CheckpointError(f"{folder}: a Wan 2.2 two-expert or TI2V folder; vidscale runs single-transformer "
                              f"Wan 2.1 text-to-video folders ({WAN_REPO})")
    for component in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / component).is_dir():
            raise ModelNotFoundError(f"{folder}: no {component}/ folder; download the whole of {WAN_DOWNLOAD} "
                                     f"(e.g. `hf download {WAN_REPO} --local-dir {folder}`)")
    try:
        transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype)
        vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32)
        text_encoder = UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
    except (OSError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{folder}: cannot load the Wan components ({first}); download it again from "
                              f"{WAN_DOWNLOAD}") from None
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    spec = resolve_wan_spec(folder)
    return _placed(Wan(transformer, vae, text_encoder, tokenizer,
                       FlowSchedule(flow_shift or scheduler.get("flow_shift", WAN_SCHEDULER["flow_shift"])),
                       name=spec.name, is_test_model=spec.is_test_model, base_height=spec.base_size[0],
                       base_width=spec.base_size[1], fps=spec.fps), device)


def wan_base_size(transformer: Mapping[str, Any], index: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(height, width) the model was trained at: what a vidscale-saved folder records, else by the
    transformer config's width (480x832 for the 1.3B model, 720x1280 for 14B, 704x1280 for TI2V-5B)."""
    recorded = (index or {}).get("_vidscale", {}).get("base_size")
    if recorded:
        return int(recorded[0]), int(recorded[1])
    return BASE_SIZES.get(transformer["num_attention_heads"] * transformer["attention_head_dim"], BASE_SIZES[1536])


def save_wan(model: Wan, dest: str | Path) -> None:
    """``model`` as a diffusers Wan folder (``WanPipeline.save_pretrained``), labelled with what
    diffusers does not record: vidscale's name for it, its base size, and whether it is random."""
    # diffusers annotates the tokenizer as AutoTokenizer, the factory that makes PreTrainedTokenizerBase
    pipeline = WanPipeline(tokenizer=cast(AutoTokenizer, model.tokenizer), text_encoder=model.text_encoder,
                           vae=model.vae, scheduler=_diffusers_scheduler(model.schedule),
                           transformer=model.transformer)
    pipeline.save_pretrained(dest)
    index_file = Path(dest) / "model_index.json"
    index = json.loads(index_file.read_text())
    index["_vidscale"] = {"name": model.name, "test_model": model.is_test_model,
                          "base_size": [model.base_height, model.base_width]}
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _diffusers_scheduler(schedule: FlowSchedule):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(**{**WAN_SCHEDULER, "flow_shift": schedule.shift})


def tiny_wan(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
             flow_shift: float = 0.0) -> Wan:
    """The real classes at toy widths (diffusers' own Wan test sizes), seeded: the same weights in
    every process. Base size 32x32 (a 4x4 latent, 2x2 tokens per frame). Its output is noise."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        transformer = WanTransformer3DModel(**TINY_TRANSFORMER)
        vae = AutoencoderKLWan(**TINY_VAE)
        text_encoder = UMT5EncoderModel(UMT5Config(**TINY_TEXT))
    model = Wan(_cast(transformer, dtype), vae.eval().requires_grad_(False), _cast(text_encoder, dtype),
                byte_level_tokenizer(), FlowSchedule(flow_shift or WAN_SCHEDULER["flow_shift"]),
                name=TINY_NAME, is_test_model=True,
                base_height=TINY_BASE_SIZE[0], base_width=TINY_BASE_SIZE[1])
    return _placed(model, torch.device(device))


def random_wan(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
               flow_shift: float = 0.0, configs: Mapping[str, dict] | None = None, seed: int = RANDOM_SEED) -> Wan:
    """Wan 2.1 1.3B's architecture (and UMT5-XXL's) with seeded random weights: ``--model wan-random``.

    Built on the meta device, cast there, then given memory once on ``device`` and filled from a
    generator on it (no CPU copy on a GPU run): N(0, 1/fan_in) for matrices and kernels, ones for
    norm scales, zeros for biases; the rotary tables are computed. On ``device="meta"`` nothing
    is allocated (parameter counts). UMT5 gets the byte-level tokenizer (UMT5's own vocabulary is
    in the real folder), whose ids are a subset of UMT5's: the cost is the real one.
    ``configs`` ({"transformer", "vae", "text_encoder"}) replaces the sizes (the reduced speed runs).
    """
    configs = configs or {"transformer": WAN_1_3B_TRANSFORMER, "vae": WAN_2_1_VAE, "text_encoder": UMT5_XXL}
    device = torch.device(device)
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**configs["transformer"])
        vae = AutoencoderKLWan(**configs["vae"])
        text_encoder = UMT5EncoderModel(UMT5Config(**configs["text_encoder"]))
    modules = (_cast(transformer, dtype), vae.eval().requires_grad_(False), _cast(text_encoder, dtype))
    if device.type != "meta":
        generator = torch.Generator(device).manual_seed(seed)
        for module in modules:
            module.to_empty(device=device)
            fill_random(module, generator)
        config = transformer.config
        with torch.device(device):  # its non-persistent tables: to_empty left them uninitialised
            transformer.rope = WanRotaryPosEmbed(config.attention_head_dim, config.patch_size, config.rope_max_seq_len)
    full = configs["transformer"] is WAN_1_3B_TRANSFORMER
    name = RANDOM_NAME if full else "wan-random (reduced Wan architecture, random weights: for speed tests)"
    base = BASE_SIZES[1536] if full else TINY_BASE_SIZE
    model = Wan(transformer, vae, text_encoder, byte_level_tokenizer(),
                FlowSchedule(flow_shift or WAN_SCHEDULER["flow_shift"]), name=name, is_test_model=True,
                base_height=base[0], base_width=base[1])
    return model if device.type == "meta" else _placed(model, device)


def compile_transformer(transformer: WanTransformer3DModel, *, backend: str = "inductor") -> None:
    """``model.compile``: torch.compile on each transformer block (diffusers' regional compilation,
    ``compile_repeated_blocks``), lazily at the first steps. All 30 blocks share one graph per
    input shape; a cascade stage or a chunk of another length adds one, so dynamo's per-function
    graph limit is raised as for VC2's blocks (a hit limit silently runs the rest eagerly).
    ``backend="eager"`` traces without generating code (the tests)."""
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, GRAPHS_PER_BLOCK)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 16 * GRAPHS_PER_BLOCK)
    transformer.compile_repeated_blocks(backend=backend, dynamic=False)


def set_attention_backend(transformer: WanTransformer3DModel, backend: str) -> None:
    """``model.attention_backend``: diffusers' dispatcher for every attention of the transformer."""
    try:
        transformer.set_attention_backend(backend)
    except (RuntimeError, ImportError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SettingsError(f"model.attention_backend = {backend!r} cannot run here ({first}); install its "
                            "package or leave model.attention_backend empty (torch SDPA)") from None


def _cast(module: nn.Module, dtype: torch.dtype) -> Any:
    """``module`` in ``dtype`` except its ``_keep_in_fp32_modules``, as ``from_pretrained`` leaves them."""
    nn.Module.to(module, dtype)  # not diffusers' override: it warns about the float32 islands
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    for name, child in module.named_modules():
        if keep & set(name.split(".")):
            nn.Module.to(child, torch.float32)
    return module.eval().requires_grad_(False)


def _placed(model: Wan, device: torch.device) -> Wan:
    """Transformer and VAE on ``device``; UMT5 too on a CPU run, else kept on the CPU between prompts."""
    model.transformer.to(device)  # type: ignore[arg-type]  # typeshed: functools.wraps on .to drops self
    model.vae.to(device)  # type: ignore[arg-type]  # typeshed: functools.wraps on .to drops self
    model.text_encoder.to(device if device.type == "cpu" else "cpu")  # type: ignore[arg-type]  # typeshed: functools.wraps on .to drops self
    model.execution_device = device
    return model



def wan_cost(transformer: Mapping[str, Any], vae: Mapping[str, Any], text_tokens: int = MAX_LENGTH) -> CostModel:
    """What one transformer call costs, per latent cell (a token is a patch of cells), from its config.

    FLOPs: matrix products only (what runs on tensor cores). Per block and token: self-attention's
    projections (8 d^2), cross-attention's query and output projections (4 d^2) and its scores
    against the L text tokens (4 L d), the FFN (4 d f); per pair of tokens, self-attention's scores
    and values (4 d), over every token of the clip. The text's own keys and values (4 L d^2 per
    block, once per call) are left out: under 0.1 % at Wan's sizes. Parameters: each block's
    attention (8 d^2) and FFN (2 d f), plus the VAE (Wan 2.1's 127 M scales with its base width
    squared); the UMT5 text encoder waits on the CPU while the transformer runs. Activations: about
    16 live tensors of width d and 2 of width f per token (flash attention keeps no N x N matrix).
    """
    _, ph, pw = transformer["patch_size"]
    cells = ph * pw
    d, f, layers = transformer["num_attention_heads"] * transformer["attention_head_dim"], transformer["ffn_dim"], \
        transformer["num_layers"]
    per_token = layers * (12 * d * d + 4 * text_tokens * d + 4 * d * f)
    vae_parameters = 127e6 * (vae["base_dim"] / 96) ** 2
    return CostModel(flops_per_token=per_token / cells, flops_per_token_pair=layers * 4 * d / cells**2,
                     parameters=layers * (8 * d * d + 2 * d * f) + vae_parameters,
                     activation_elements_per_token=(16 * d + 2 * f) / cells, attention_spans_frames=True)
