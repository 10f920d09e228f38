"""Checkpoint conversion: the original VideoCrafter2 layout -> the converted folder -> strict loading.

The original layout comes from ``vc2_layout`` (written from VideoCrafter's own module structure,
independently of vidscale's key map), so a wrong rename shows up as missing/unexpected keys.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from vc2_layout import (
    TINY_TEXT,
    TINY_UNET,
    TINY_VAE,
    TextWidths,
    UNetWidths,
    VAEWidths,
    original_checkpoint,
    text_shapes,
    unet_shapes,
    vae_shapes,
)

from vidscale.errors import CheckpointError, ModelNotFoundError, OutputError
from vidscale.model import load_videocrafter2
from vidscale.model.checkpoint import read_checkpoint
from vidscale.model.convert import convert_checkpoint, convert_original
from vidscale.model.folder import COMPONENTS, WEIGHTS
from vidscale.model.keymap import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from vidscale.model.tokenizer import VOCAB_NAME
from vidscale.model.videocrafter2 import build_modules


def meta_checkpoint(unet: UNetWidths, vae: VAEWidths, text: TextWidths) -> dict[str, torch.Tensor]:
    state = {}
    for prefix, shapes in ((UNET_PREFIX, unet_shapes(unet)), (VAE_PREFIX, vae_shapes(vae)),
                           (TEXT_PREFIX, text_shapes(text))):
        state.update({prefix + key: torch.empty(shape, device="meta") for key, shape in shapes.items()})
    return state


def test_full_size_layout_maps_every_key_with_zero_missing_and_zero_unexpected():
    configs, states = convert_original(meta_checkpoint(UNetWidths(), VAEWidths(), TextWidths()))
    with torch.device("meta"):
        modules = dict(zip(COMPONENTS, build_modules(configs)))
    for name, module in modules.items():
        expected = {key: tuple(t.shape) for key, t in module.state_dict().items()}
        got = {key: tuple(t.shape) for key, t in states[name].items()}
        assert sorted(set(expected) - set(got)) == [], f"{name}: missing"
        assert sorted(set(got) - set(expected)) == [], f"{name}: unexpected"
        assert got == expected, f"{name}: shapes differ"
    assert len(states["unet"]) == 1484 and len(states["vae"]) == 248
    assert configs["text_encoder"]["num_hidden_layers"] == 23  # the penultimate of 24 blocks
    assert sum(t.numel() for t in states["unet"].values()) == 1_413_284_420


def test_full_size_configs_are_videocrafter2s():
    configs, _ = convert_original(meta_checkpoint(UNetWidths(), VAEWidths(), TextWidths()))
    unet = configs["unet"]
    assert unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert unet["attention_head_dim"] == 64 and unet["cross_attention_dim"] == 1024
    assert unet["down_block_types"] == ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"]
    assert configs["vae"]["block_out_channels"] == [128, 256, 512, 512]
    text = configs["text_encoder"]
    assert (text["hidden_size"], text["num_attention_heads"], text["intermediate_size"]) == (1024, 16, 4096)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    torch.save(original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=3), path)
    return path


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    """A merges file in CLIP's format without merges: the 514 ids of the tiny text encoder."""
    import gzip
    path = tmp_path_factory.mktemp("vocab") / VOCAB_NAME
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("#version: test\n")
    return path


@pytest.mark.parametrize("container", ["state_dict", "module", "flat"])
def test_reduced_checkpoint_in_every_container_converts_and_loads_strictly(tmp_path, vocab, container):
    original = original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=1, container=container)
    torch.save(original, tmp_path / "model.ckpt")
    convert_checkpoint(tmp_path / "model.ckpt", tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    model = load_videocrafter2(tmp_path / "vc2")
    flat = original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=1, container="flat")
    loaded = {**{UNET_PREFIX + k: v for k, v in model.unet.state_dict().items()},
              **{VAE_PREFIX + k: v for k, v in model.vae.state_dict().items()}}
    # every UNet and VAE value survives: the multiset of tensors is the same, up to 1x1 reshapes
    originals = sorted(round(float(v.double().sum()), 6) for k, v in flat.items()
                       if k.startswith((UNET_PREFIX, VAE_PREFIX)))
    assert sorted(round(float(v.double().sum()), 6) for v in loaded.values()) == originals
    assert torch.equal(model.unet.fps_embedding.linear_1.weight, flat[UNET_PREFIX + "fps_embedding.0.weight"])
    assert torch.equal(model.unet.transformer_in.proj_in.weight,
                       flat[UNET_PREFIX + "init_attn.0.proj_in.weight"][:, :, 0])


def test_text_tower_keeps_the_penultimate_blocks_and_splits_qkv(tmp_path, tiny_ckpt, vocab):
    convert_checkpoint(tiny_ckpt, tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    text = load_videocrafter2(tmp_path / "vc2").text_encoder
    state = read_checkpoint(tiny_ckpt)
    layers = TINY_TEXT.layers - 1
    assert len(text.encoder.layers) == layers
    fused = state[TEXT_PREFIX + f"transformer.resblocks.{layers - 1}.attn.in_proj_weight"]
    attention = text.encoder.layers[layers - 1].self_attn
    assert torch.equal(torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]), fused)
    assert torch.equal(text.embeddings.position_embedding.weight, state[TEXT_PREFIX + "positional_embedding"])
    assert torch.equal(text.final_layer_norm.weight, state[TEXT_PREFIX + "ln_final.weight"])


def test_converting_twice_gives_identical_files(tmp_path, tiny_ckpt, vocab):
    for dest in ("a", "b"):
        convert_checkpoint(tiny_ckpt, tmp_path / dest, vocab=vocab, log=lambda _m: None)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    # index, pipeline code line, 3 configs, 3 weights, vocabulary, tokenizer code line, scheduler config
    assert len(files) == 11
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_existing_destination_is_refused_and_left_alone(tmp_path, tiny_ckpt, vocab):
    (tmp_path / "vc2").mkdir()
    (tmp_path / "vc2" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="already exists"):
        convert_checkpoint(tiny_ckpt, tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    assert (tmp_path / "vc2" / "keep.txt").read_text() == "mine"


def test_original_checkpoint_loads_directly(tmp_path, tiny_ckpt, vocab):
    direct = load_videocrafter2(tiny_ckpt, vocab=vocab)
    convert_checkpoint(tiny_ckpt, tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    folder = load_videocrafter2(tmp_path / "vc2")
    for a, b in zip(direct.unet.state_dict().values(), folder.unet.state_dict().values()):
        assert torch.equal(a, b)


def test_a_folder_with_a_missing_tensor_fails_strictly(tmp_path, tiny_ckpt, vocab):
    from safetensors.torch import load_file, save_file
    convert_checkpoint(tiny_ckpt, tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    weights = tmp_path / "vc2" / "unet" / WEIGHTS["unet"]
    state = load_file(weights)
    state.pop("conv_in.bias")
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=r"unet: 1 missing .*conv_in.bias"):
        load_videocrafter2(tmp_path / "vc2")


class NotATensor:
    pass


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "not a PyTorch checkpoint .neither a zip archive nor a pickle: empty"),
    (lambda p: p.write_bytes(pickle.dumps({"x": NotATensor()}, protocol=2)), "--trust-pickle"),
    (lambda p: torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}}, p),
     "image model"),
    (lambda p: torch.save({"encoder.weight": torch.zeros(2)}, p), r"no model\.diffusion_model\.\* keys"),
])
def test_bad_checkpoints_name_the_problem(tmp_path, make, message):
    path = tmp_path / "model.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_checkpoint(path)
    assert caught.value.exit_code == 2


def test_a_truncated_checkpoint_is_reported_as_incomplete(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    (tmp_path / "model.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is the download complete") as caught:
        read_checkpoint(tmp_path / "model.ckpt")
    assert "--trust-pickle" not in str(caught.value)


def _zip_without_data_pkl(path):
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "not a checkpoint")


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(os.urandom(4096)), "neither a zip archive nor a pickle: 4,096 bytes"),
    (lambda p: p.write_text("<!DOCTYPE html><html>Sign in to continue</html>"), "starting b'<!DOCTYPE ht'"),
    (lambda p: p.write_bytes(b""), "neither a zip archive nor a pickle: empty"),
    (_zip_without_data_pkl, "a zip archive without data.pkl"),
])
def test_a_file_that_is_not_a_checkpoint_never_suggests_unpickling(tmp_path, make, message):
    path = tmp_path / "model.ckpt"
    make(path)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_checkpoint(path)
    text = str(caught.value)
    assert "not a PyTorch checkpoint" in text and "is it the right file" in text
    assert "huggingface.co/VideoCrafter/VideoCrafter2" in text and "--trust-pickle" not in text


def test_only_a_real_pickle_the_safe_loader_refuses_suggests_trusting_it(tmp_path):
    legacy = tmp_path / "legacy.ckpt"  # torch's pre-zip format: a pickle stream with a magic number
    torch.save({"state_dict": {"x": NotATensor()}}, legacy, _use_new_zipfile_serialization=False)
    current = tmp_path / "current.ckpt"
    torch.save({"state_dict": {"x": NotATensor()}}, current)
    for path in (legacy, current):
        with pytest.raises(CheckpointError, match="the safe loader refused it.*--trust-pickle"):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no model.diffusion_model"):
        read_checkpoint(legacy, trust_pickle=True)


def test_a_safetensors_file_is_read_without_unpickling(tmp_path):
    from safetensors.torch import save_file
    state = original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, seed=2, container="flat")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    loaded = read_checkpoint(tmp_path / "model.safetensors")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_the_missing_weights_message_gives_the_convert_line_the_real_file_needs(tmp_path):
    from vidscale.model.loading import resolve_model_path
    with pytest.raises(ModelNotFoundError) as caught:
        resolve_model_path(tmp_path / "nowhere")
    assert "`vidscale model convert --trust-pickle model.ckpt " in str(caught.value)


def test_trusting_a_pickle_still_checks_what_it_holds(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save([NotATensor()], path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        read_checkpoint(path, trust_pickle=True)


def test_a_foreign_noise_schedule_is_refused(tmp_path):
    state = original_checkpoint(TINY_UNET, TINY_VAE, TINY_TEXT, container="flat")
    state["scale_arr"] = torch.ones(1400)
    torch.save(state, tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="scale_arr differs"):
        read_checkpoint(tmp_path / "model.ckpt")


def test_a_missing_checkpoint_says_where_to_download(tmp_path):
    with pytest.raises(ModelNotFoundError, match="huggingface.co/VideoCrafter/VideoCrafter2"):
        read_checkpoint(tmp_path / "model.ckpt")


def test_convert_and_info_commands(tmp_path, tiny_ckpt, vocab):
    from click.testing import CliRunner

    from vidscale.cli import main
    runner = CliRunner()
    done = runner.invoke(main, ["model", "convert", str(tiny_ckpt), str(tmp_path / "vc2"), "--vocab", str(vocab)])
    assert done.exit_code == 0, done.output
    info = runner.invoke(main, ["model", "info", str(tmp_path / "vc2"), "--json"])
    assert info.exit_code == 0, info.output
    components = json.loads(info.output)["components"]
    model = load_videocrafter2(tmp_path / "vc2")
    assert components["unet"] == {"parameters": sum(p.numel() for p in model.unet.parameters()), "dtype": "float32"}
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(tiny_ckpt.read_bytes()[:1000])
    failed = runner.invoke(main, ["model", "convert", str(bad), str(tmp_path / "other")])
    assert failed.exit_code == 2 and "is the download complete" in failed.output
    assert not (tmp_path / "other").exists()


def test_a_vocabulary_that_does_not_fit_the_text_encoder_is_refused(tmp_path, tiny_ckpt):
    import gzip
    wrong = tmp_path / "merges.txt.gz"
    with gzip.open(wrong, "wt", encoding="utf-8") as handle:
        handle.write("#version: test\nt h\n")  # one merge: 515 ids, the tiny text encoder has 514
    with pytest.raises(CheckpointError, match="515 token ids, the text encoder has 514"):
        load_videocrafter2(tiny_ckpt, vocab=wrong)


def test_the_model_folder_gets_the_usual_permissions(tmp_path, tiny_ckpt, vocab):
    umask = os.umask(0o022)
    try:
        convert_checkpoint(tiny_ckpt, tmp_path / "vc2", vocab=vocab, log=lambda _m: None)
    finally:
        os.umask(umask)
    assert (tmp_path / "vc2").stat().st_mode & 0o777 == 0o755  # not a temporary folder's 0o700
