"""``vidscale model info``: what a model folder holds, read from the file headers only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .folder import COMPONENTS, is_model_folder, read_index, weight_summary
from .loading import TINY, load_videocrafter2, resolve_model_path


def describe_model(path: str | Path | None) -> dict[str, Any]:
    """Components with parameter counts and dtypes; a folder is described without loading it."""
    resolved = resolve_model_path(path)
    if resolved != TINY and is_model_folder(Path(resolved)):
        index = read_index(Path(resolved))
        components = {}
        for name in COMPONENTS:
            count, dtype = weight_summary(Path(resolved), name)
            components[name] = {"parameters": count, "dtype": dtype}
        return {"path": str(resolved), "converted_from": index.get("_converted_from") or index.get("converted_from"), "components": components}
    model = load_videocrafter2(resolved)
    modules = {"unet": model.unet, "vae": model.vae, "text_encoder": model.text_encoder}
    return {"path": str(resolved), "test_model": model.is_test_model,
            "components": {name: {"parameters": sum(p.numel() for p in module.parameters()),
                                  "dtype": str(model.dtype).removeprefix("torch.")}
                           for name, module in modules.items()}}
