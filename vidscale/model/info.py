"""``vidscale model info``: what a model folder holds, read from the file headers only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from .folder import COMPONENTS, is_model_folder, read_index, weight_summary
from .loading import TINY, load_videocrafter2, model_family, resolve_model_path
from .wan import WAN_RANDOM, WAN_TINY, random_wan, tiny_wan

WAN_COMPONENTS = ("transformer", "vae", "text_encoder")
_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}


def describe_model(path: str | Path | None) -> dict[str, Any]:
    """Components with parameter counts and dtypes; a folder is described without loading it."""
    resolved = resolve_model_path(path)
    if model_family(resolved) == "wan":
        return describe_wan(resolved)
    if resolved != TINY and is_model_folder(Path(resolved)):
        index = read_index(Path(resolved))
        components = {}
        for name in COMPONENTS:
            count, dtype = weight_summary(Path(resolved), name)
            components[name] = {"parameters": count, "dtype": dtype}
        return {"path": str(resolved), "family": "videocrafter2",
                "converted_from": index.get("_converted_from") or index.get("converted_from"),
                "components": components}
    model = load_videocrafter2(resolved)
    modules = {"unet": model.unet, "vae": model.vae, "text_encoder": model.text_encoder}
    return {"path": str(resolved), "family": "videocrafter2", "test_model": model.is_test_model,
            "components": {name: {"parameters": sum(p.numel() for p in module.parameters()),
                                  "dtype": str(model.dtype).removeprefix("torch.")}
                           for name, module in modules.items()}}


def describe_wan(resolved: str | Path) -> dict[str, Any]:
    """A Wan folder from its safetensors headers (sharded or not); ``wan-tiny`` as built, and
    ``wan-random`` counted on the meta device (nothing allocated)."""
    if str(resolved) in (WAN_TINY, WAN_RANDOM):
        model = tiny_wan() if str(resolved) == WAN_TINY else random_wan("meta")
        modules = {"transformer": model.transformer, "vae": model.vae, "text_encoder": model.text_encoder}
        return {"path": str(resolved), "family": "wan", "test_model": True,
                "components": {name: {"parameters": sum(p.numel() for p in module.parameters()),
                                      "dtype": "/".join(sorted({str(p.dtype).removeprefix("torch.")
                                                                for p in module.parameters()}))}
                               for name, module in modules.items()}}
    folder = Path(resolved)
    own = json.loads((folder / "model_index.json").read_text()).get("_vidscale", {})
    return {"path": str(folder), "family": "wan", "test_model": bool(own.get("test_model")),
            "components": {name: _header_summary(folder / name) for name in WAN_COMPONENTS}}


def _header_summary(component: Path) -> dict[str, Any]:
    """Parameters and dtypes of every ``*.safetensors`` file of a component folder (its shards)."""
    files = sorted(component.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{component}: no .safetensors weights; download the folder again")
    count, dtypes = 0, set()
    for file in files:
        try:
            with safe_open(file, framework="pt") as handle:
                for key in handle.keys():
                    piece = handle.get_slice(key)
                    count += int(torch.Size(piece.get_shape()).numel())
                    dtypes.add(_DTYPES.get(piece.get_dtype(), piece.get_dtype()))
        except (OSError, SafetensorError) as exc:
            raise CheckpointError(f"{file}: missing or damaged ({exc})") from None
    return {"parameters": count, "dtype": "/".join(sorted(dtypes))}
