"""Wan 2.1's component configurations: the real 1.3B text-to-video model and a tiny one for tests.

The real values are those of the ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` folder (diffusers' Wan
conversion script): a 30-block transformer of width 1536 (12 heads of 128, FFN 8960) reading
4096-wide UMT5-XXL features, patch (1, 2, 2); a causal 3-D VAE compressing 4x in time (1 + 4k
frames) and 8x in space to 16 channels; UniPC with flow shift 3.0 (480p). The tiny ones follow
diffusers' own Wan tests (2 layers, 2 heads of 12, FFN 32, text width 32; a VAE with base_dim 3)
so the same classes run in seconds on a CPU.
"""

from __future__ import annotations

from typing import Any

WAN_1_3B_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
    text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
)
WAN_2_1_VAE: dict[str, Any] = dict(  # AutoencoderKLWan's defaults are Wan 2.1's VAE (latents_mean/std too)
    base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0,
)
UMT5_XXL: dict[str, Any] = dict(  # google/umt5-xxl's encoder: about 5.7 B parameters
    vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.1,
    layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
)
# UniPCMultistepScheduler as the Wan 2.1 folder configures it: flow matching, shift 3.0 (480p)
WAN_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
    solver_order=2, solver_type="bh2", lower_order_final=True, final_sigmas_type="zero",
)

TINY_TRANSFORMER: dict[str, Any] = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
    text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
    rope_max_seq_len=32,
)
TINY_VAE: dict[str, Any] = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                temperal_downsample=[False, True, True])
TINY_TEXT: dict[str, Any] = dict(  # vocab: the byte-level tokenizer's 259 ids (wan_tokenizer)
    vocab_size=259, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
    relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
    feed_forward_proj="gated-gelu", tie_word_embeddings=False,
)

# (height, width) each released Wan model was trained at, by transformer width; the folder does
# not say, and FreeScale's base stage (and its fusion windows) must be the model's own size.
BASE_SIZES = {1536: (480, 832), 3072: (704, 1280), 5120: (720, 1280)}  # 1.3B, TI2V-5B, 14B
TINY_BASE_SIZE = (32, 32)
WAN_FPS = 16  # Wan 2.x generates 16 fps (TI2V-5B: 24)
