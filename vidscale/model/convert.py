"""``vidscale model convert``: VideoCrafter2's ``model.ckpt`` -> a safetensors model folder, once."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import torch

from ..errors import ModelNotFoundError
from .checkpoint import read_checkpoint
from .configs import text_config, unet_config, vae_config
from .folder import save_folder
from .keymap import convert_state, split_components, text_key, unet_key, vae_key
from .tokenizer import ClipTokenizer, find_vocab


def convert_original(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, dict], dict[str, dict[str, torch.Tensor]]]:
    """Configs and renamed tensors of the three components of a (checked) original state dict."""
    parts = split_components(state)
    configs = {"unet": unet_config(parts["unet"]), "vae": vae_config(parts["vae"]),
               "text_encoder": text_config(parts["text"])}
    mappings = {
        "unet": partial(unet_key, layers=configs["unet"]["layers_per_block"]),
        "vae": partial(vae_key, levels=len(configs["vae"]["block_out_channels"])),
        "text_encoder": partial(text_key, layers=configs["text_encoder"]["num_hidden_layers"]),
    }
    sources = {"unet": parts["unet"], "vae": parts["vae"], "text_encoder": parts["text"]}
    states = {name: convert_state(sources[name], mappings[name], name.replace("_", " ")) for name in mappings}
    return configs, states


def convert_checkpoint(checkpoint: Path, dest: Path, *, trust_pickle: bool = False, vocab: Path | None = None,
                       log: Callable[[str], object] = print) -> None:
    """Convert ``checkpoint`` into the folder ``dest`` (which must not exist yet).

    Every tensor is kept at its stored dtype; the keys are checked strictly when the folder is
    loaded. The CLIP vocabulary is copied in when found (``vocab``, or an installed
    ``open_clip_torch``), so the folder is then complete on its own.
    """
    checkpoint = Path(checkpoint)
    state = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    configs, states = convert_original(state)
    try:
        tokenizer = ClipTokenizer.from_file(find_vocab(explicit=vocab))
    except ModelNotFoundError as exc:
        if vocab is not None:
            raise
        tokenizer = None
        log(f"note: {exc}\nThe folder is written without it; it is needed before generating.")
    save_folder(dest, configs, states, tokenizer, {"file": checkpoint.name, "bytes": checkpoint.stat().st_size})
    for name in configs:
        count = sum(t.numel() for t in states[name].values())
        log(f"{name:14} {len(states[name]):5d} tensors {count:>14,d} params")
