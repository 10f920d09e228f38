"""VideoCrafter2's ORIGINAL checkpoint layout, for tests: key names and shapes as a function of widths.

Written module by module from VideoCrafter's own architecture (``lvdm/modules/networks/
openaimodel3d.py``, ``lvdm/modules/attention.py``, ``lvdm/modules/networks/ae_modules.py``,
``lvdm/models/ddpm3d.py``, config ``configs/inference_t2v_512_v2.0.yaml``) and open_clip's CLIP
text tower, NOT from diffusers' names: a wrong rename in vidscale's key map then shows up as missing
or unexpected keys instead of cancelling out. Keys come in the order the original modules register
them, so a state_dict of the original model lists them the same way.

Checked against the original modules built on the meta device (VC2 ``UNetModel`` / ``Encoder`` /
``Decoder``, open_clip 3.3.0 ``CLIP`` without its visual tower), for both the full and the TINY_*
widths: same keys, same order, same shapes. Full size: 1484 UNet keys (1,413,284,420 parameters),
248 VAE keys, 294 text keys, plus the 13 schedule buffers of ``schedule_buffers``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Shapes = dict[str, tuple[int, ...]]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
DEEPSPEED_PREFIX = "_forward_module."


@dataclass(frozen=True)
class UNetWidths:
    """The UNet widths of ``inference_t2v_512_v2.0.yaml``; everything else is fixed by that config
    (use_linear, temporal_conv, temporal_attention, temporal_selfatt_only, no relative position,
    no causal mask, addition_attention, fps_cond, transformer depth 1)."""

    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)  # attention_resolutions 4, 2, 1 = downsampling 2**level
    head_channels: int = 64  # num_head_channels: heads = channels // 64
    context_dim: int = 1024
    in_channels: int = 4
    out_channels: int = 4


@dataclass(frozen=True)
class VAEWidths:
    """The ``first_stage_config`` ddconfig (attn_resolutions is empty: attention only in ``mid``)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    in_channels: int = 3
    out_ch: int = 3


@dataclass(frozen=True)
class TextWidths:
    """open_clip ViT-H-14 text tower. ``heads`` is stored for configs only: no shape depends on it
    (q, k, v are packed into ``in_proj_weight``), so a converter cannot read it from the checkpoint."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_width: int = 4096
    vocab: int = 49408
    context: int = 77
    embed_dim: int = 1024


def _norm(prefix: str, c: int) -> Shapes:
    """GroupNorm or LayerNorm (affine)."""
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _linear(prefix: str, o: int, i: int, bias: bool = True) -> Shapes:
    return {f"{prefix}.weight": (o, i), **({f"{prefix}.bias": (o,)} if bias else {})}


def _conv(prefix: str, o: int, i: int, *kernel: int) -> Shapes:
    return {f"{prefix}.weight": (o, i, *kernel), f"{prefix}.bias": (o,)}


def _resblock(p: str, c_in: int, c_out: int, emb: int) -> Shapes:
    """ResBlock: in_layers (GN, SiLU, conv), emb_layers (SiLU, Linear), out_layers (GN, SiLU, Dropout,
    conv), a 1x1 ``skip_connection`` only when the width changes (use_conv defaults to False), then the
    TemporalConvBlock ``temopral_conv`` (sic): conv1 = GN, SiLU, Conv3d; conv2..4 = GN, SiLU, Dropout,
    Conv3d; kernels (3, 1, 1) since tempspatial_aware is off."""
    s = {**_norm(f"{p}.in_layers.0", c_in), **_conv(f"{p}.in_layers.2", c_out, c_in, 3, 3),
         **_linear(f"{p}.emb_layers.1", c_out, emb), **_norm(f"{p}.out_layers.0", c_out),
         **_conv(f"{p}.out_layers.3", c_out, c_out, 3, 3)}
    if c_in != c_out:
        s.update(_conv(f"{p}.skip_connection", c_out, c_in, 1, 1))
    for k in range(1, 5):
        s.update(_norm(f"{p}.temopral_conv.conv{k}.0", c_out))
        s.update(_conv(f"{p}.temopral_conv.conv{k}.{2 if k == 1 else 3}", c_out, c_out, 3, 1, 1))
    return s


def _attention(p: str, dim: int, kv: int) -> Shapes:
    """CrossAttention: bias-free q/k/v, ``to_out`` = (Linear, Dropout)."""
    return {**_linear(f"{p}.to_q", dim, dim, bias=False), **_linear(f"{p}.to_k", dim, kv, bias=False),
            **_linear(f"{p}.to_v", dim, kv, bias=False), **_linear(f"{p}.to_out.0", dim, dim)}


def _block(p: str, dim: int, context: int) -> Shapes:
    """BasicTransformerBlock in registration order: attn1 (self), ff (GEGLU: proj to 2 x 4 dim, then
    Dropout, Linear), attn2 (keys/values from ``context``), norm1..3 (LayerNorm)."""
    return {**_attention(f"{p}.attn1", dim, dim),
            **_linear(f"{p}.ff.net.0.proj", dim * 8, dim), **_linear(f"{p}.ff.net.2", dim, dim * 4),
            **_attention(f"{p}.attn2", dim, context),
            **_norm(f"{p}.norm1", dim), **_norm(f"{p}.norm2", dim), **_norm(f"{p}.norm3", dim)}


def _transformer(p: str, c: int, inner: int, context: int, conv1d: bool = False) -> Shapes:
    """SpatialTransformer / TemporalTransformer: GroupNorm, proj_in, one block, proj_out. Linear
    projections with use_linear; ``init_attn`` keeps TemporalTransformer's default Conv1d (kernel 1)."""
    kernel = (1,) if conv1d else ()
    return {**_norm(f"{p}.norm", c), **_conv(f"{p}.proj_in", inner, c, *kernel),
            **_block(f"{p}.transformer_blocks.0", inner, context), **_conv(f"{p}.proj_out", c, inner, *kernel)}


def unet_shapes(w: UNetWidths = UNetWidths()) -> Shapes:
    """``UNetModel`` keys without ``model.diffusion_model.``.

    ``input_blocks`` is registered before ``init_attn`` (the list is filled later), so all its keys
    come first. Each attention level appends, after the ResBlock, a SpatialTransformer (cross-attention
    to the text) at index 1 and a TemporalTransformer at index 2, whose attn2 is self-attention
    (temporal_selfatt_only). Downsampling is ``input_blocks.{i}.0.op`` (3x3, stride 2); upsampling is
    ``output_blocks.{i}.{1 or 3}.conv``.
    """
    mc, emb, hc = w.model_channels, 4 * w.model_channels, w.head_channels
    s = {**_linear("time_embed.0", emb, mc), **_linear("time_embed.2", emb, emb),
         **_linear("fps_embedding.0", emb, mc), **_linear("fps_embedding.2", emb, emb),
         **_conv("input_blocks.0.0", mc, w.in_channels, 3, 3)}

    def attention(p: str, ch: int) -> Shapes:
        inner = (ch // hc) * hc
        return {**_transformer(f"{p}.1", ch, inner, w.context_dim), **_transformer(f"{p}.2", ch, inner, inner)}

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
    # init_attn: 8 heads of head_channels, self-attention only, Conv1d projections
    s.update(_transformer("init_attn.0", mc, 8 * hc, 8 * hc, conv1d=True))
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
    """ResnetBlock without time embedding; ``nin_shortcut`` (1x1) only when the width changes."""
    s = {**_norm(f"{p}.norm1", c_in), **_conv(f"{p}.conv1", c_out, c_in, 3, 3),
         **_norm(f"{p}.norm2", c_out), **_conv(f"{p}.conv2", c_out, c_out, 3, 3)}
    if c_in != c_out:
        s.update(_conv(f"{p}.nin_shortcut", c_out, c_in, 1, 1))
    return s


def _vae_mid(p: str, c: int) -> Shapes:
    """block_1, attn_1 (vanilla AttnBlock: GroupNorm, 1x1 Conv2d q/k/v/proj_out), block_2."""
    s = {**_vae_resnet(f"{p}.block_1", c, c), **_norm(f"{p}.attn_1.norm", c)}
    for name in ("q", "k", "v", "proj_out"):
        s.update(_conv(f"{p}.attn_1.{name}", c, c, 1, 1))
    return {**s, **_vae_resnet(f"{p}.block_2", c, c)}


def vae_shapes(w: VAEWidths = VAEWidths()) -> Shapes:
    """``AutoencoderKL`` keys without ``first_stage_model.`` (LDM Encoder / Decoder; the loss is an
    Identity, no ``colorize`` buffer). double_z: the encoder emits 2 x z_channels."""
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
    c = widths[-1]
    s.update(_conv("decoder.conv_in", c, w.z_channels, 3, 3))
    s.update(_vae_mid("decoder.mid", c))
    up: Shapes = {}
    for i in reversed(range(len(widths))):  # built top-down, stored as up.0 .. up.{n-1}
        level = {}
        for j in range(w.num_res_blocks + 1):
            level.update(_vae_resnet(f"decoder.up.{i}.block.{j}", c, widths[i]))
            c = widths[i]
        if i != 0:
            level.update(_conv(f"decoder.up.{i}.upsample.conv", c, c, 3, 3))
        up = {**level, **up}
    s.update(up)
    s.update(_norm("decoder.norm_out", c))
    s.update(_conv("decoder.conv_out", w.out_ch, c, 3, 3))
    s.update(_conv("quant_conv", 2 * w.embed_dim, 2 * w.z_channels, 1, 1))
    s.update(_conv("post_quant_conv", w.z_channels, w.embed_dim, 1, 1))
    return s


def text_shapes(w: TextWidths = TextWidths()) -> Shapes:
    """open_clip ``CLIP`` keys without ``cond_stage_model.model.`` once VC2 deletes ``visual``.

    Direct parameters come first (``positional_embedding``, ``text_projection`` as a plain [width,
    embed_dim] matrix, scalar ``logit_scale``), then submodules. ``attn_mask`` is a non-persistent
    buffer, so it is not in the checkpoint; ViT-H-14 has no ``logit_bias``.
    """
    s: Shapes = {"positional_embedding": (w.context, w.width), "text_projection": (w.width, w.embed_dim),
                 "logit_scale": ()}
    for i in range(w.layers):
        p = f"transformer.resblocks.{i}"
        s.update({**_norm(f"{p}.ln_1", w.width), f"{p}.attn.in_proj_weight": (3 * w.width, w.width),
                  f"{p}.attn.in_proj_bias": (3 * w.width,), **_linear(f"{p}.attn.out_proj", w.width, w.width),
                  **_norm(f"{p}.ln_2", w.width), **_linear(f"{p}.mlp.c_fc", w.mlp_width, w.width),
                  **_linear(f"{p}.mlp.c_proj", w.width, w.mlp_width)})
    s["token_embedding.weight"] = (w.vocab, w.width)
    s.update(_norm("ln_final", w.width))
    return s


def schedule_buffers() -> dict[str, torch.Tensor]:
    """The persistent LatentDiffusion buffers stored beside the weights, float32 as VC2 registers them.

    DDPM.register_schedule with the default beta_schedule "linear" (= sqrt-linear squared, diffusers'
    "scaled_linear") computed in float64, v_posterior 0. Not in the checkpoint: ``lvlb_weights``
    (persistent=False), ``logvar`` (plain tensor: learn_logvar is off), ``scale_factor`` (plain float:
    scale_by_std is off). ``scale_arr`` (use_scale, scale_b 0.7, mid_step 400) has 1400 entries because
    fix_scale_bug is off: linspace(1, 0.7, 400) then 1000 (not 600) times 0.7.
    """
    f64 = torch.float64
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=f64) ** 2
    alphas = 1 - betas
    acp = torch.cumprod(alphas, 0)
    prev = torch.cat([torch.ones(1, dtype=f64), acp[:-1]])
    posterior_variance = betas * (1 - prev) / (1 - acp)
    buffers = {
        "betas": betas, "alphas_cumprod": acp, "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": acp.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - acp).sqrt(),
        "log_one_minus_alphas_cumprod": (1 - acp).log(), "sqrt_recip_alphas_cumprod": (1 / acp).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1 / acp - 1).sqrt(), "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * prev.sqrt() / (1 - acp),
        "posterior_mean_coef2": (1 - prev) * alphas.sqrt() / (1 - acp),
        "scale_arr": torch.cat([torch.linspace(1, 0.7, 400, dtype=f64), torch.full((1000,), 0.7, dtype=f64)]),
    }
    return {name: value.float() for name, value in buffers.items()}


TINY_UNET = UNetWidths(model_channels=32, channel_mult=(1, 2, 2, 2), head_channels=8, context_dim=32)
TINY_VAE = VAEWidths(ch=32, ch_mult=(1, 1, 2, 2))
TINY_TEXT = TextWidths(width=32, layers=3, heads=1, mlp_width=64, vocab=514, context=77, embed_dim=32)


def original_checkpoint(unet: UNetWidths, vae: VAEWidths, text: TextWidths, *, seed: int = 0,
                        container: str = "state_dict") -> dict:
    """Random float32 tensors (std 0.02, seeded) in the original layout, in one of model.ckpt's containers:
    ``"state_dict"`` (Lightning), ``"module"`` (DeepSpeed, keys prefixed ``_forward_module.``) or ``"flat"``.
    Buffers first, then UNet, VAE and text keys, as LatentDiffusion.state_dict() orders them."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = dict(schedule_buffers())
    for prefix, shapes in ((UNET_PREFIX, unet_shapes(unet)), (VAE_PREFIX, vae_shapes(vae)),
                           (TEXT_PREFIX, text_shapes(text))):
        state.update({prefix + key: torch.randn(shape, generator=g) * 0.02 for key, shape in shapes.items()})
    if container == "state_dict":
        return {"state_dict": state, "epoch": 0}
    if container == "module":
        return {"module": {DEEPSPEED_PREFIX + key: value for key, value in state.items()}}
    if container == "flat":
        return state
    raise ValueError(f"unknown container {container!r}")
