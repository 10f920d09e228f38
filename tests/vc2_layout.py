"""VideoCrafter2's ORIGINAL checkpoint layout, for tests: key names and shapes as a function of widths.

Written module by module from VideoCrafter's own architecture (``lvdm/modules/networks/
openaimodel3d.py``, ``attention.py``, ``ae_modules.py``, config ``inference_t2v_512_v2.0.yaml``)
and open_clip's text tower, NOT from diffusers' names: a wrong rename in vidscale's key map then
shows up as missing or unexpected keys instead of cancelling out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class UNetWidths:
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)  # attention_resolutions 4, 2, 1
    head_channels: int = 64
    context_dim: int = 1024
    in_channels: int = 4
    out_channels: int = 4


@dataclass(frozen=True)
class VAEWidths:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3


@dataclass(frozen=True)
class TextWidths:  # open_clip ViT-H-14 text tower
    width: int = 1024
    layers: int = 24
    mlp_width: int = 4096
    vocab: int = 49408
    context: int = 77
    embed_dim: int = 1024


def _norm(prefix: str, c: int) -> Shapes:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _linear(prefix: str, o: int, i: int, bias: bool = True) -> Shapes:
    return {f"{prefix}.weight": (o, i), **({f"{prefix}.bias": (o,)} if bias else {})}


def _conv(prefix: str, o: int, i: int, *kernel: int) -> Shapes:
    return {f"{prefix}.weight": (o, i, *kernel), f"{prefix}.bias": (o,)}


def _resblock(p: str, c_in: int, c_out: int, emb: int) -> Shapes:
    """ResBlock with its TemporalConvBlock (``temopral_conv``, sic; kernels (3, 1, 1))."""
    s = {**_norm(f"{p}.in_layers.0", c_in), **_conv(f"{p}.in_layers.2", c_out, c_in, 3, 3),
         **_linear(f"{p}.emb_layers.1", c_out, emb), **_norm(f"{p}.out_layers.0", c_out),
         **_conv(f"{p}.out_layers.3", c_out, c_out, 3, 3)}
    if c_in != c_out:
        s.update(_conv(f"{p}.skip_connection", c_out, c_in, 1, 1))
    for k in range(1, 5):  # conv1: GN, SiLU, Conv3d; conv2..4: GN, SiLU, Dropout, Conv3d
        s.update(_norm(f"{p}.temopral_conv.conv{k}.0", c_out))
        s.update(_conv(f"{p}.temopral_conv.conv{k}.{2 if k == 1 else 3}", c_out, c_out, 3, 1, 1))
    return s


def _block(p: str, dim: int, context: int) -> Shapes:
    """BasicTransformerBlock: attn1 (self), GEGLU feed-forward, attn2 (cross or self), three LayerNorms."""
    s: Shapes = {}
    for name, kv in (("attn1", dim), ("attn2", context)):
        s.update(_linear(f"{p}.{name}.to_q", dim, dim, bias=False))
        s.update(_linear(f"{p}.{name}.to_k", dim, kv, bias=False))
        s.update(_linear(f"{p}.{name}.to_v", dim, kv, bias=False))
        s.update(_linear(f"{p}.{name}.to_out.0", dim, dim))
    s.update(_linear(f"{p}.ff.net.0.proj", dim * 8, dim))
    s.update(_linear(f"{p}.ff.net.2", dim, dim * 4))
    for k in (1, 2, 3):
        s.update(_norm(f"{p}.norm{k}", dim))
    return s


def _transformer(p: str, c: int, inner: int, context: int, conv1d: bool = False) -> Shapes:
    """SpatialTransformer / TemporalTransformer (use_linear; init_attn uses Conv1d projections)."""
    kernel = (1,) if conv1d else ()
    return {**_norm(f"{p}.norm", c),
            f"{p}.proj_in.weight": (inner, c, *kernel), f"{p}.proj_in.bias": (inner,),
            **_block(f"{p}.transformer_blocks.0", inner, context),
            f"{p}.proj_out.weight": (c, inner, *kernel), f"{p}.proj_out.bias": (c,)}


def unet_shapes(w: UNetWidths = UNetWidths()) -> Shapes:
    """Keys without ``model.diffusion_model.``."""
    mc, emb = w.model_channels, 4 * w.model_channels
    s = {**_linear("time_embed.0", emb, mc), **_linear("time_embed.2", emb, emb),
         **_linear("fps_embedding.0", emb, mc), **_linear("fps_embedding.2", emb, emb),
         **_conv("input_blocks.0.0", mc, w.in_channels, 3, 3),
         **_transformer("init_attn.0", mc, 8 * w.head_channels, 8 * w.head_channels, conv1d=True)}

    def attention(p: str, ch: int) -> Shapes:  # spatial (cross-attention) then temporal (self only)
        return {**_transformer(f"{p}.1", ch, ch, w.context_dim), **_transformer(f"{p}.2", ch, ch, ch)}

    index, ch, skips = 1, mc, [mc]
    for level, mult in enumerate(w.channel_mult):
        for _ in range(w.num_res_blocks):
            s.update(_resblock(f"input_blocks.{index}.0", ch, mult * mc, emb))
            ch = mult * mc
            if level in w.attention_levels:
                s.update(attention(f"input_blocks.{index}", ch))
            skips.append(ch)
            index += 1
        if level != len(w.channel_mult) - 1:
            s.update(_conv(f"input_blocks.{index}.0.op", ch, ch, 3, 3))
            skips.append(ch)
            index += 1
    s.update(_resblock("middle_block.0", ch, ch, emb))
    s.update(attention("middle_block", ch))
    s.update(_resblock("middle_block.3", ch, ch, emb))
    index = 0
    for level in reversed(range(len(w.channel_mult))):
        for i in range(w.num_res_blocks + 1):
            out = w.channel_mult[level] * mc
            s.update(_resblock(f"output_blocks.{index}.0", ch + skips.pop(), out, emb))
            ch = out
            has_attention = level in w.attention_levels
            if has_attention:
                s.update(attention(f"output_blocks.{index}", ch))
            if level and i == w.num_res_blocks:
                s.update(_conv(f"output_blocks.{index}.{3 if has_attention else 1}.conv", ch, ch, 3, 3))
            index += 1
    s.update(_norm("out.0", ch))
    s.update(_conv("out.2", w.out_channels, mc, 3, 3))
    return s


def _vae_resnet(p: str, c_in: int, c_out: int) -> Shapes:
    s = {**_norm(f"{p}.norm1", c_in), **_conv(f"{p}.conv1", c_out, c_in, 3, 3),
         **_norm(f"{p}.norm2", c_out), **_conv(f"{p}.conv2", c_out, c_out, 3, 3)}
    if c_in != c_out:
        s.update(_conv(f"{p}.nin_shortcut", c_out, c_in, 1, 1))
    return s


def _vae_mid(p: str, c: int) -> Shapes:
    s = {**_vae_resnet(f"{p}.block_1", c, c), **_vae_resnet(f"{p}.block_2", c, c), **_norm(f"{p}.attn_1.norm", c)}
    for name in ("q", "k", "v", "proj_out"):
        s.update(_conv(f"{p}.attn_1.{name}", c, c, 1, 1))
    return s


def vae_shapes(w: VAEWidths = VAEWidths()) -> Shapes:
    """Keys without ``first_stage_model.`` (LDM Encoder / Decoder, no attention but the middle)."""
    widths = [w.ch * m for m in w.ch_mult]
    s = _conv("encoder.conv_in", w.ch, w.in_channels, 3, 3)
    c = w.ch
    for i, out in enumerate(widths):
        for j in range(w.num_res_blocks):
            s.update(_vae_resnet(f"encoder.down.{i}.block.{j}", c, out))
            c = out
        if i != len(widths) - 1:
            s.update(_conv(f"encoder.down.{i}.downsample.conv", c, c, 3, 3))
    s.update(_vae_mid("encoder.mid", c))
    s.update(_norm("encoder.norm_out", c))
    s.update(_conv("encoder.conv_out", 2 * w.z_channels, c, 3, 3))
    s.update(_conv("quant_conv", 2 * w.embed_dim, 2 * w.z_channels, 1, 1))
    s.update(_conv("post_quant_conv", w.z_channels, w.embed_dim, 1, 1))
    c = widths[-1]
    s.update(_conv("decoder.conv_in", c, w.z_channels, 3, 3))
    s.update(_vae_mid("decoder.mid", c))
    for i in reversed(range(len(widths))):
        for j in range(w.num_res_blocks + 1):
            s.update(_vae_resnet(f"decoder.up.{i}.block.{j}", c, widths[i]))
            c = widths[i]
        if i != 0:
            s.update(_conv(f"decoder.up.{i}.upsample.conv", c, c, 3, 3))
    s.update(_norm("decoder.norm_out", c))
    s.update(_conv("decoder.conv_out", w.out_ch, c, 3, 3))
    return s


def text_shapes(w: TextWidths = TextWidths()) -> Shapes:
    """Keys without ``cond_stage_model.model.`` (VC2 deletes the visual tower)."""
    s: Shapes = {"positional_embedding": (w.context, w.width), "text_projection": (w.width, w.embed_dim),
                 "logit_scale": (), "token_embedding.weight": (w.vocab, w.width), **_norm("ln_final", w.width)}
    for i in range(w.layers):
        p = f"transformer.resblocks.{i}"
        s.update({**_norm(f"{p}.ln_1", w.width), f"{p}.attn.in_proj_weight": (3 * w.width, w.width),
                  f"{p}.attn.in_proj_bias": (3 * w.width,), **_linear(f"{p}.attn.out_proj", w.width, w.width),
                  **_norm(f"{p}.ln_2", w.width), **_linear(f"{p}.mlp.c_fc", w.mlp_width, w.width),
                  **_linear(f"{p}.mlp.c_proj", w.width, w.mlp_width)})
    return s


def schedule_buffers() -> dict[str, torch.Tensor]:
    """The LatentDiffusion buffers stored beside the weights (float32, as VC2 registers them)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    scale_arr = torch.cat([torch.linspace(1, 0.7, 400, dtype=torch.float64), torch.full((1000,), 0.7)])
    prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
    return {name: value.float() for name, value in {
        "betas": betas, "alphas_cumprod": alphas_cumprod, "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
        "scale_arr": scale_arr}.items()}


TINY_UNET = UNetWidths(model_channels=32, channel_mult=(1, 2, 2, 2), head_channels=8, context_dim=32)
TINY_VAE = VAEWidths(ch=32, ch_mult=(1, 1, 2, 2))
TINY_TEXT = TextWidths(width=32, layers=3, mlp_width=64, vocab=514, embed_dim=32)


def original_checkpoint(unet: UNetWidths, vae: VAEWidths, text: TextWidths, *, seed: int = 0,
                        container: str = "state_dict") -> dict:
    """Random float32 tensors in the original layout, in one of model.ckpt's containers."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, shapes in (("model.diffusion_model.", unet_shapes(unet)), ("first_stage_model.", vae_shapes(vae)),
                           ("cond_stage_model.model.", text_shapes(text))):
        state.update({prefix + key: torch.randn(shape, generator=g) * 0.02 for key, shape in shapes.items()})
    state.update(schedule_buffers())
    if container == "state_dict":
        return {"state_dict": state, "epoch": 0}
    if container == "module":
        return {"module": {"_forward_module." + key: value for key, value in state.items()}}
    return state
