"""The loaded VideoCrafter2: its modules, the tokenizer and schedule, and the frame-wise VAE helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from einops import rearrange
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from ..errors import CheckpointError
from .configs import TINY_TEXT, TINY_UNET, TINY_VAE, VC2_TEXT, VC2_UNET, VC2_VAE
from .keymap import missing_and_unexpected
from .random_weights import fill_random
from .schedule import VC2Schedule
from .spec import TINY_COST, VAE_PIXELS_PER_PASS, VC2_COST, VC2_GRID, CostModel, ModelSpec
from .tiles import Box, blend_tiles
from .tokenizer import ClipTokenizer
from .unet import VC2UNet, keep_group_norm_fp32

VC2_FPS = 28  # VC2's official script conditions on 28 fps; generated clips are written at that rate
TINY_NAME = "tiny (random test model)"
RANDOM_NAME = "random (VideoCrafter2 architecture, random weights: for speed tests)"
TINY_SEED = 20240101
RANDOM_SEED = 20241212
VC2_CONFIGS = {"unet": VC2_UNET, "vae": VC2_VAE, "text_encoder": VC2_TEXT}


@dataclass
class VideoCrafter2:
    """VC2's UNet (with fps), VAE, text encoder, exact tokenizer and signal-scaled DDIM schedule."""

    unet: VC2UNet
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: ClipTokenizer
    schedule: VC2Schedule
    name: str
    is_test_model: bool = False
    base_height: int = 320
    base_width: int = 512
    execution_device: torch.device | None = None  # where inputs go when offloading keeps weights elsewhere
    cost: CostModel = VC2_COST  # what a UNet call costs (plans and estimates)

    @property
    def device(self) -> torch.device:
        return self.execution_device or self.unet.conv_in.weight.device

    @property
    def spec(self) -> ModelSpec:
        return vc2_spec(self.name, self.is_test_model, (self.base_height, self.base_width),
                        self.vae.config["block_out_channels"][1], self.cost)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.conv_in.weight.dtype

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B, 77, D) token features of the penultimate text layer after the final LayerNorm."""
        ids = self.tokenizer(prompts).to(self.device)
        return self.text_encoder(input_ids=ids).last_hidden_state.to(self.dtype)

    @torch.no_grad()
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1] -> (1, 4, F, H/8, W/8) scaled float32 latents, frame by frame in batches.

        VC2's VAE is an image VAE applied to each frame, so batching over frames is exact. The
        posterior mean is used (not a sample): the same frames always give the same latent, which
        resumed jobs rely on.
        """
        step = self._frames_per_pass(pixels.shape[-2:])
        parts = [self.vae.encode(pixels[i:i + step].to(self.device, self.dtype)).latent_dist.mode()
                 for i in range(0, pixels.shape[0], step)]
        latents = torch.cat(parts).float() * self.vae.config["scaling_factor"]
        return rearrange(latents, "f c h w -> 1 c f h w")

    @torch.no_grad()
    def decoded(self, latents: torch.Tensor, *, tiles: Sequence[Box] = (), overlap: int = 0,
                pixels_per_pass: int = VAE_PIXELS_PER_PASS) -> Iterator[torch.Tensor]:
        """(B, 4, F, h, w) scaled latents -> successive (n, 3, 8h, 8w) pixel batches in about [-1, 1],
        one VAE pass each, so a writer can stream them with bounded memory.

        With more than one of ``tiles`` (latent windows overlapping by ``overlap``), each pass
        decodes the tiles separately and blends them with linear ramps in pixel space: memory
        follows the tile, not the frame. Close to the whole-frame decode, not equal to it (the
        decoder's mid-block attention sees the whole frame), so plans tile only frames that would
        not fit. One tile, or none, is the whole-frame decode.
        """
        flat = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config["scaling_factor"]
        decode = lambda z: self.vae.decode(z).sample  # noqa: E731
        window = (tiles[0].height, tiles[0].width) if len(tiles) > 1 else flat.shape[-2:]
        step = self._frames_per_pass((window[0] * 8, window[1] * 8), pixels_per_pass)
        for i in range(0, flat.shape[0], step):
            z = flat[i:i + step].to(self.device, self.dtype)
            yield blend_tiles(decode, z, tiles, overlap, scale=8) if len(tiles) > 1 else decode(z)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """All of :meth:`decoded` as one (B*F, 3, 8h, 8w) tensor."""
        return torch.cat(list(self.decoded(latents)))

    @staticmethod
    def _frames_per_pass(size: Sequence[int], pixels: int = VAE_PIXELS_PER_PASS) -> int:
        return max(1, pixels // (int(size[0]) * int(size[1])))


def vc2_spec(name: str, is_test_model: bool, base_size: tuple[int, int], vae_width: int,
             cost: CostModel) -> ModelSpec:
    """The spec of a VideoCrafter2 model, loaded (:attr:`VideoCrafter2.spec`) or only resolved
    (:func:`vidscale.model.loading.resolve_spec`): one definition for both."""
    return ModelSpec(family="videocrafter2", name=name, is_test_model=is_test_model, base_size=base_size,
                     grid=VC2_GRID, vae_width=vae_width, fps=VC2_FPS, cost=cost)


def build_modules(configs: Mapping[str, dict]) -> tuple[VC2UNet, AutoencoderKL, CLIPTextModel]:
    return (VC2UNet(**configs["unet"]), AutoencoderKL(**configs["vae"]),
            CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])))


def assemble(configs: Mapping[str, dict], states: Mapping[str, Mapping[str, torch.Tensor]], *,
             tokenizer: ClipTokenizer, name: str, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, **fields: Any) -> VideoCrafter2:
    """Build the modules on the meta device (no random init of 1.8 B weights) and load strictly,
    each tensor straight into its device and dtype; GroupNorm stays float32 (as in VC2)."""
    with torch.device("meta"):
        modules = build_modules(configs)
    for component, module in zip(("unet", "vae", "text_encoder"), modules):
        load_strict(module, _cast(module, states[component], device, dtype), component)
        module.eval().requires_grad_(False)
        if dtype != torch.float32:
            keep_group_norm_fp32(module)
    unet, vae, text_encoder = modules
    # CLIP's position ids are a non-persistent buffer: not in any state dict, so still on meta.
    positions = torch.arange(text_encoder.config.max_position_embeddings, device=device)[None]
    text_encoder.get_submodule("embeddings").register_buffer("position_ids", positions, persistent=False)
    left = [name for module in modules for name, t in module.state_dict(keep_vars=True).items() if t.is_meta]
    left += [name for module in modules for name, t in module.named_buffers() if t.is_meta]
    if left:
        raise CheckpointError(f"tensors left unloaded: {left[:3]} (a library version this vidscale does not know)")
    return VideoCrafter2(unet, vae, text_encoder, tokenizer, VC2Schedule(), name, **fields)


def _cast(module: nn.Module, state: Mapping[str, torch.Tensor], device: torch.device | str,
          dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors to ``dtype``, except GroupNorm's, which stay float32 (they never round)."""
    norms = {f"{name}.{param}" for name, m in module.named_modules() if isinstance(m, nn.GroupNorm)
             for param in ("weight", "bias")}
    return {key: value.to(device, torch.float32 if key in norms else dtype) if value.is_floating_point()
            else value.to(device) for key, value in state.items()}


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], component: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the first differences."""
    missing, unexpected = missing_and_unexpected(module.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise CheckpointError(f"{component}: {len(missing)} missing and {len(unexpected)} unexpected tensors "
                              f"(e.g. missing {missing[:2]}, unexpected {unexpected[:2]}): the folder or "
                              "checkpoint does not match VideoCrafter2's layout")
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"{component}: {str(exc).splitlines()[-1].strip()}") from None


def tiny_videocrafter2(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> VideoCrafter2:
    """The same classes at toy widths with seeded random weights: for tests and ``--model tiny``.

    The weights are the same in every process (the resume tests compare separate runs). Its
    output is noise; every result made with it is labelled as coming from a random test model.
    """
    configs = {"unet": TINY_UNET, "vae": TINY_VAE, "text_encoder": TINY_TEXT}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        modules = build_modules(configs)
    states = {component: module.state_dict() for component, module in zip(configs, modules)}
    return assemble(configs, states, tokenizer=ClipTokenizer.byte_level(), name=TINY_NAME,
                    device=device, dtype=dtype, is_test_model=True, base_height=64, base_width=64,
                    cost=TINY_COST)


def random_videocrafter2(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, *,
                         configs: Mapping[str, dict] = VC2_CONFIGS, seed: int = RANDOM_SEED) -> VideoCrafter2:
    """VideoCrafter2's real architecture with seeded random weights: ``--model random``.

    For speed and memory measurements without the 7 GB checkpoint: the modules are built on the
    meta device, cast there (GroupNorm kept float32, as the loader does), then given memory once,
    directly on ``device`` in ``dtype`` (no CPU copy on a GPU run), and filled from a generator
    on that device. On ``device="meta"`` nothing is allocated at all (parameter counts, FLOPs).
    Weights: N(0, 1/fan_in) for matrices and kernels (activations keep their scale through the
    layers), ones for norm scales, zeros for biases. The output is noise and every result made
    with it says it came from a random test model. The tokenizer is the byte-level one of
    ``tiny`` (CLIP's BPE merges are a separate download): other token ids than CLIP's, but the
    same 77-token sequence, so the cost is the real one.
    """
    with torch.device("meta"):
        modules = build_modules(configs)
    generator = None if torch.device(device).type == "meta" else torch.Generator(device).manual_seed(seed)
    for module in modules:
        nn.Module.to(module, dtype)  # not diffusers' override: it warns; GroupNorm is handled below
        module.eval().requires_grad_(False)
        if dtype != torch.float32:
            keep_group_norm_fp32(module)
        if generator is not None:
            module.to_empty(device=device)
            fill_random(module, generator)
    unet, vae, text_encoder = modules
    positions = torch.arange(text_encoder.config.max_position_embeddings, device=device)[None]
    text_encoder.get_submodule("embeddings").register_buffer("position_ids", positions, persistent=False)
    others = [name for module in modules for name, _ in module.named_buffers() if not name.endswith("position_ids")]
    if others:  # to_empty left them uninitialised
        raise CheckpointError(f"buffers this vidscale does not know how to fill: {others[:3]}")
    name = RANDOM_NAME
    if configs is not VC2_CONFIGS:
        name = "random (reduced VideoCrafter2 architecture, random weights: for speed tests)"
    return VideoCrafter2(unet, vae, text_encoder, ClipTokenizer.byte_level(), VC2Schedule(), name,
                         is_test_model=True)

