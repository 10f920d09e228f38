"""Key maps from VideoCrafter2's original checkpoint layout to the diffusers / transformers modules.

Each map is a function from one original key (prefix already stripped) to its new key,
:data:`DROP` for a tensor that is deliberately not kept (the text tower's last block, which VC2
skips by reading the penultimate layer, and its CLIP projection head), or ``None`` for a key it
does not know. Unknown keys raise, so a checkpoint of another model family fails loudly instead of
loading partially.
Value changes (1x1 convolutions to linear weights, fused q/k/v splits) are applied by
:func:`convert_state`. The maps are written from the layouts docs/DESIGN.md describes; the UNet
map is parameterised by ``layers`` (ResBlocks per level) so reduced test models use it too.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

from ..errors import CheckpointError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
DROP = ""

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_VAE_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_TEXT_LAYER = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
               "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def _rename(rest: str, table: Mapping[str, str]) -> str | None:
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old):]
    return None


def _unet_layer(prefix: str, layer: int, part: int, rest: str) -> str | None:
    """Part 0 of an original block is a ResBlock (with its temporal conv), 1 spatial, 2 temporal attention."""
    if part == 0:
        if rest.startswith("temopral_conv."):  # sic, as in the original code
            return f"{prefix}.temp_convs.{layer}.{rest.removeprefix('temopral_conv.')}"
        renamed = _rename(rest, _RESNET)
        return renamed and f"{prefix}.resnets.{layer}.{renamed}"
    if part in (1, 2):
        return f"{prefix}.{('attentions', 'temp_attentions')[part - 1]}.{layer}.{rest}"
    return None


def unet_key(key: str, *, layers: int = 2) -> str | None:
    """``input_blocks.4.1.proj_in.weight`` -> ``down_blocks.1.attentions.0.proj_in.weight``."""
    head, _, rest = key.partition(".")
    if head in ("time_embed", "fps_embedding"):
        number, _, tail = rest.partition(".")
        linear = {"0": "linear_1", "2": "linear_2"}.get(number)
        name = "time_embedding" if head == "time_embed" else "fps_embedding"
        return linear and f"{name}.{linear}.{tail}"
    if head == "out":
        number, _, tail = rest.partition(".")
        return {"0": f"conv_norm_out.{tail}", "2": f"conv_out.{tail}"}.get(number)
    if head == "init_attn" and rest.startswith("0."):
        return "transformer_in." + rest[2:]
    if head == "middle_block":  # one sequence: ResBlock, spatial, temporal attention, ResBlock
        number, _, rest = rest.partition(".")
        if not number.isdigit() or int(number) > 3:
            return None
        part = int(number)
        return _unet_layer("mid_block", part // 3, 0 if part in (0, 3) else part, rest)
    index_number, _, rest = rest.partition(".")
    part_number, _, rest = rest.partition(".")
    if not (index_number.isdigit() and part_number.isdigit()):
        return None
    index, part = int(index_number), int(part_number)
    if head == "input_blocks":
        if index == 0:
            return f"conv_in.{rest}" if part == 0 else None
        level, layer = divmod(index - 1, layers + 1)
        if layer == layers:  # the level's downsampler
            return f"down_blocks.{level}.downsamplers.0.conv.{rest[3:]}" if rest.startswith("op.") else None
        return _unet_layer(f"down_blocks.{level}", layer, part, rest)
    if head == "output_blocks":
        level, layer = divmod(index, layers + 1)
        if rest.startswith("conv."):  # the level's upsampler, after its last layer
            return f"up_blocks.{level}.upsamplers.0.conv.{rest[5:]}" if layer == layers else None
        return _unet_layer(f"up_blocks.{level}", layer, part, rest)
    return None


def vae_key(key: str, *, levels: int = 4) -> str | None:
    """LDM ``AutoencoderKL`` names -> diffusers ``AutoencoderKL`` (decoder levels are reversed)."""
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        return key if side in ("quant_conv", "post_quant_conv") else None
    head, _, tail = rest.partition(".")
    if head in ("conv_in", "conv_out"):
        return key
    if head == "norm_out":
        return f"{side}.conv_norm_out.{tail}"
    if head == "mid":
        block, _, tail = tail.partition(".")
        if block in ("block_1", "block_2"):
            return f"{side}.mid_block.resnets.{int(block[-1]) - 1}.{tail.replace('nin_shortcut', 'conv_shortcut')}"
        renamed = _rename(tail, _VAE_ATTENTION) if block == "attn_1" else None
        return renamed and f"{side}.mid_block.attentions.0.{renamed}"
    if (side, head) not in (("encoder", "down"), ("decoder", "up")):
        return None
    number, _, tail = tail.partition(".")
    if not number.isdigit():
        return None
    level = int(number) if side == "encoder" else levels - 1 - int(number)
    blocks = f"{side}.{head}_blocks.{level}"
    kind, _, tail = tail.partition(".")
    if kind == "block":
        return f"{blocks}.resnets.{tail.replace('nin_shortcut', 'conv_shortcut')}"
    if kind in ("downsample", "upsample") and tail.startswith("conv."):
        return f"{blocks}.{kind}rs.0.{tail}"
    return None


def text_key(key: str, *, layers: int) -> str | None:
    """OpenCLIP text tower -> ``CLIPTextModel`` with ``layers`` blocks (VC2 reads the penultimate)."""
    simple = {"token_embedding.weight": "embeddings.token_embedding.weight",
              "positional_embedding": "embeddings.position_embedding.weight",
              "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
    if key in simple:
        return simple[key]
    if key in ("text_projection", "logit_scale", "attn_mask"):
        return DROP  # the CLIP head (VC2 uses token features, not the pooled projection); a derived mask
    if not key.startswith("transformer.resblocks."):
        return None
    index, _, rest = key.removeprefix("transformer.resblocks.").partition(".")
    if not index.isdigit():
        return None
    if int(index) >= layers:
        return DROP
    if rest.startswith("attn.in_proj_"):
        return f"encoder.layers.{index}.self_attn.{{q,k,v}}_proj.{rest.removeprefix('attn.in_proj_')}"
    renamed = _rename(rest, _TEXT_LAYER)
    return renamed and f"encoder.layers.{index}.{renamed}"


def _squeeze_1x1(key: str, value: torch.Tensor) -> torch.Tensor:
    """1x1 Conv1d/Conv2d weights of the original become Linear weights."""
    return value.reshape(value.shape[0], value.shape[1]) if value.dim() > 2 and key.endswith(".weight") else value


def convert_state(state: Mapping[str, torch.Tensor], mapping: Callable[[str], str | None],
                  component: str) -> dict[str, torch.Tensor]:
    """Rename every tensor; unknown keys raise a :class:`CheckpointError` naming them."""
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        new = mapping(key)
        if new is None:
            unknown.append(key)
        if not new:
            continue
        if "{q,k,v}" in new:  # open_clip's fused in-projection
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                converted[new.replace("{q,k,v}", name)] = part.contiguous()
        elif new.startswith(("transformer_in.proj_", "encoder.mid_block.attentions", "decoder.mid_block.attentions")):
            converted[new] = _squeeze_1x1(new, value).contiguous()
        else:
            converted[new] = value.contiguous()
    if unknown:
        raise CheckpointError(f"{component}: {len(unknown)} tensors the VideoCrafter2 layout does not have, "
                              f"e.g. {', '.join(sorted(unknown)[:3])}: is this a VideoCrafter2 checkpoint?")
    return converted


def split_components(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The UNet, VAE and text tower tensors of a flat checkpoint, prefixes stripped."""
    parts: dict[str, dict[str, torch.Tensor]] = {"unet": {}, "vae": {}, "text": {}}
    for key, value in state.items():
        for name, prefix in (("unet", UNET_PREFIX), ("vae", VAE_PREFIX), ("text", TEXT_PREFIX)):
            if key.startswith(prefix):
                parts[name][key[len(prefix):]] = value
    return parts


def missing_and_unexpected(expected: Iterable[str], got: Iterable[str]) -> tuple[list[str], list[str]]:
    expected, got = set(expected), set(got)
    return sorted(expected - got), sorted(got - expected)
