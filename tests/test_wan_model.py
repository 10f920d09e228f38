"""The Wan model layer: the test models, the full-size architecture on meta, the tokenizer,
folders and names, the latent grid's checks, and what loading refuses."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import AutoTokenizer

from vidscale.backends import WanBackend, as_backend
from vidscale.errors import CheckpointError, ModelNotFoundError, SettingsError
from vidscale.model.info import describe_model
from vidscale.model.loading import default_wan_dir, model_family, resolve_model_path
from vidscale.model.schedule import VC2Schedule
from vidscale.model.solvers import DDIMSolver
from vidscale.model.wan import (
    compile_transformer,
    load_wan,
    random_wan,
    resolve_wan_spec,
    save_wan,
    set_attention_backend,
    tiny_wan,
)
from vidscale.model.wan_configs import WAN_1_3B_TRANSFORMER
from vidscale.model.wan_tokenizer import byte_level_tokenizer
from vidscale.pipeline.loading import load_model
from vidscale.settings import FreeScaleSettings, ModelSettings, SamplingSettings


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_tiny_is_the_same_model_whatever_the_global_seed():
    torch.manual_seed(1)
    first = tiny_wan()
    torch.manual_seed(2)
    second = tiny_wan()
    for part in ("transformer", "vae", "text_encoder"):
        a, b = getattr(first, part).state_dict(), getattr(second, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    assert first.is_test_model and "random test model" in first.name


def test_random_is_wan_2_1_1_3b_and_umt5_xxl_on_meta():
    """Counted on the meta device (nothing allocated): the 1.3B transformer (30 blocks of width
    1536 = 12 heads x 128, FFN 8960, text width 4096), Wan 2.1's VAE and UMT5-XXL's encoder."""
    model = random_wan("meta")
    config = model.transformer.config
    assert (config.num_layers, config.num_attention_heads * config.attention_head_dim, config.ffn_dim,
            config.text_dim, tuple(config.patch_size)) == (30, 1536, 8960, 4096, (1, 2, 2))
    assert _count(model.transformer) == 1_418_996_800
    assert _count(model.vae) == 126_892_531
    assert _count(model.text_encoder) == 5_680_910_336  # "about 5.7 B"
    assert model.grid.channels == 16 and model.grid.spatial == 8 and model.grid.temporal == 4
    assert (model.base_height, model.base_width) == (480, 832)


def test_random_on_cpu_fills_every_weight_and_the_rotary_tables():
    reduced = {"transformer": {**WAN_1_3B_TRANSFORMER, "num_layers": 1, "num_attention_heads": 2,
                               "attention_head_dim": 16, "ffn_dim": 32, "text_dim": 32, "rope_max_seq_len": 32},
               "vae": {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
                       "temperal_downsample": [False, True, True]},
               "text_encoder": {"vocab_size": 259, "d_model": 32, "d_kv": 8, "d_ff": 37, "num_layers": 1,
                                "num_heads": 4, "feed_forward_proj": "gated-gelu", "dropout_rate": 0.0}}
    model = random_wan("cpu", configs=reduced)
    backend = WanBackend(model)
    velocity = backend.predictor(SamplingSettings(prompt="x", guidance_scale=1.0), fps=16)
    noise = backend.initial_noise(5, (4, 4), torch.Generator().manual_seed(0), FreeScaleSettings())
    assert torch.isfinite(velocity(noise, 900.0)).all()
    assert torch.isfinite(model.transformer.rope.freqs_cos).all() and model.transformer.rope.freqs_cos.abs().max() > 0
    assert model.transformer.patch_embedding.weight.std() > 0


def test_byte_level_tokenizer_is_t5_shaped_and_saves():
    tokenizer = byte_level_tokenizer()
    ids = tokenizer(["a kite é"], padding="max_length", max_length=12, truncation=True).input_ids[0]
    assert ids[len("a kite é".encode()):] == [1] + [0] * (12 - len("a kite é".encode()) - 1)  # </s>, then <pad>
    assert len(set(ids)) > 5 and max(ids) < 259


def test_folder_round_trip_keeps_name_base_size_and_the_test_label(tmp_path):
    save_wan(tiny_wan(), tmp_path / "w")
    index = json.loads((tmp_path / "w" / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["_vidscale"]["test_model"] is True
    assert model_family(tmp_path / "w") == "wan" and model_family("wan-tiny") == "wan"
    assert model_family("tiny") == "videocrafter2" and model_family("") == "videocrafter2"
    loaded = load_wan(tmp_path / "w", flow_shift=5.0)
    assert loaded.is_test_model and (loaded.base_height, loaded.base_width) == (32, 32)
    assert loaded.schedule.shift == 5.0  # model.flow_shift replaces the folder's 3.0
    saved = AutoTokenizer.from_pretrained(tmp_path / "w", subfolder="tokenizer")
    assert saved("a kite é").input_ids == byte_level_tokenizer()("a kite é").input_ids
    info = describe_model(str(tmp_path / "w"))
    assert info["family"] == "wan" and info["components"]["transformer"]["parameters"] == _count(loaded.transformer)


def test_missing_and_incomplete_wan_folders_say_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError, match="Wan-AI/Wan2.1-T2V-1.3B-Diffusers") as error:
        resolve_model_path("wan")
    assert str(default_wan_dir()) in str(error.value)
    save_wan(tiny_wan(), tmp_path / "w")
    for part in (tmp_path / "w" / "vae").iterdir():
        part.unlink()
    (tmp_path / "w" / "vae").rmdir()
    with pytest.raises(ModelNotFoundError, match="no vae/ folder.*Wan-AI/Wan2.1-T2V-1.3B-Diffusers"):
        load_wan(tmp_path / "w")


def test_two_expert_wan_2_2_folders_are_refused(tmp_path):
    save_wan(tiny_wan(), tmp_path / "w")
    index_file = tmp_path / "w" / "model_index.json"
    index = json.loads(index_file.read_text())
    index["transformer_2"] = ["diffusers", "WanTransformer3DModel"]
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="two-expert"):
        load_wan(tmp_path / "w")


def test_clips_must_fit_the_causal_grid():
    backend = as_backend(tiny_wan())
    with pytest.raises(SettingsError, match="1 \\+ 4k frames; use 13 or 17"):
        backend.initial_noise(16, (4, 4), torch.Generator(), FreeScaleSettings())
    with pytest.raises(SettingsError, match="multiples of 16"):
        backend.initial_noise(17, (3, 4), torch.Generator(), FreeScaleSettings())
    assert backend.initial_noise(17, (4, 6), torch.Generator(), FreeScaleSettings()).shape == (1, 16, 5, 4, 6)
    with pytest.raises(ValueError, match="1 \\+ 4k frames, got 8"):
        backend.encode_frames(torch.zeros(8, 3, 32, 32))


def test_each_prompt_is_encoded_once():
    model = tiny_wan()
    calls = []
    model.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    first = model.encode_prompt("a kite")
    again = model.encode_prompt("a kite")
    assert len(calls) == 1 and torch.equal(first, again)
    model.encode_prompt("a boat")
    assert len(calls) == 2


def test_wan_only_model_settings_are_refused_for_videocrafter2():
    with pytest.raises(SettingsError, match="model.flow_shift.*Wan models only"):
        load_model(ModelSettings(path="tiny", flow_shift=5.0))
    with pytest.raises(SettingsError, match="model.attention_backend.*Wan models only"):
        load_model(ModelSettings(path="tiny", attention_backend="native"))


def test_auto_sampler_is_each_familys_own():
    assert isinstance(VC2Schedule().solver("auto"), DDIMSolver)
    assert type(as_backend(tiny_wan()).schedule.solver("auto")).__name__ == "FlowUniPC"


def test_the_spec_read_from_configs_is_the_loaded_models(tmp_path):
    """What --dry-run can plan with (configs only, no weight read) equals the loaded model's spec."""
    save_wan(tiny_wan(), tmp_path / "w")
    assert resolve_wan_spec(tmp_path / "w") == as_backend(load_wan(tmp_path / "w")).spec
    assert resolve_wan_spec("wan-tiny") == as_backend(tiny_wan()).spec
    assert resolve_wan_spec("wan-random") == random_wan("meta").spec
    spec = resolve_wan_spec("wan-random")
    assert (spec.family, spec.base_latent, spec.grid.latent_frames(81), spec.fps) == ("wan", (60, 104), 21, 16)


def test_compiled_blocks_give_the_eager_velocity():
    """``--compile``: diffusers' compile_repeated_blocks on each transformer block (traced with
    dynamo's eager backend here: the graphs and guards, without generating code)."""
    model = tiny_wan()
    velocity = as_backend(model).predictor(SamplingSettings(prompt="a kite", guidance_scale=5.0), fps=16)
    x = as_backend(model).initial_noise(5, (4, 4), torch.Generator().manual_seed(0), FreeScaleSettings())
    eager = velocity(x, 900.0)
    compile_transformer(model.transformer, backend="eager")
    assert all(getattr(block, "_compiled_call_impl", None) is not None for block in model.transformer.blocks)
    torch.testing.assert_close(velocity(x, 900.0), eager, rtol=0, atol=0)


def test_attention_backends_by_name():
    model = tiny_wan()
    set_attention_backend(model.transformer, "native")
    if importlib.util.find_spec("flash_attn"):
        pytest.skip("flash-attn is installed here: the missing-package error cannot be shown")
    with pytest.raises(SettingsError, match="model.attention_backend = 'flash' cannot run here"):
        set_attention_backend(model.transformer, "flash")


def test_the_wan_cost_model_matches_flops_counted_on_the_meta_device():
    """The plan's cost of a Wan 1.3B call (its 3-D attention spans every frame) against torch's FLOP
    counter on the full architecture at 480x832 x 21 latent frames: no memory, exact integer counts.
    The cost model leaves out the text's own keys and values (once per call) and the non-matrix
    work: within 1 % here."""
    from diffusers import WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from vidscale.model.wan import wan_cost
    from vidscale.model.wan_configs import WAN_1_3B_TRANSFORMER, WAN_2_1_VAE
    from vidscale.work.plan import unet_tflops

    frames, size = 21, (60, 104)
    with torch.device("meta"):
        transformer = WanTransformer3DModel(**WAN_1_3B_TRANSFORMER)
        latents = torch.empty(1, 16, frames, *size)
        text = torch.empty(1, 512, WAN_1_3B_TRANSFORMER["text_dim"])
        with FlopCounterMode(display=False) as counter:
            transformer(latents, torch.tensor([500.0]), text)
    cells = size[0] * size[1]
    planned = unet_tflops(frames, cells, cells, cost=wan_cost(WAN_1_3B_TRANSFORMER, WAN_2_1_VAE))
    assert planned == pytest.approx(counter.get_total_flops() / 1e12, rel=0.01)
