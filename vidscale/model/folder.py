"""The converted model folder: one safetensors file and one config per component.

```
DEST/model_index.json            format version, what it was converted from
DEST/unet/config.json            VC2UNet config (UNet3DConditionModel + fps embedding)
DEST/unet/model.safetensors
DEST/vae/...                     AutoencoderKL
DEST/text_encoder/...            CLIPTextModel (23 layers for VC2)
DEST/tokenizer/bpe_simple_vocab_16e6.txt.gz   the CLIP vocabulary, when it was available
```
safetensors loads by memory-mapping, without unpickling, in seconds. The folder is written
under a temporary name and renamed when complete, so an interrupted conversion never leaves a
folder that looks finished. Tensors and JSON are written in a fixed order: converting the same
checkpoint twice gives identical files.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, ModelNotFoundError, OutputError
from .tokenizer import VOCAB_NAME

FORMAT = 1
COMPONENTS = ("unet", "vae", "text_encoder")
WEIGHTS = "model.safetensors"


def is_model_folder(path: Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def save_folder(dest: Path, configs: Mapping[str, dict], states: Mapping[str, Mapping[str, torch.Tensor]],
                index: dict[str, Any], vocab: Path | None) -> None:
    """Write the folder atomically; refuse to touch an existing ``dest``."""
    dest = Path(dest)
    if dest.exists():
        raise OutputError(f"{dest}: already exists; remove it or choose another folder", exit_code=2)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
        partial.mkdir()  # the umask's usual mode (mkdtemp's 0o700 would follow the rename)
    except OSError as exc:
        raise OutputError(f"{dest.parent}: cannot write the model folder there ({exc.strerror})", exit_code=2) from None
    try:
        for name in COMPONENTS:
            (partial / name).mkdir()
            _write_text(partial / name / "config.json", configs[name])
            save_file({key: states[name][key] for key in sorted(states[name])}, partial / name / WEIGHTS,
                      metadata={"format": "pt"})
        if vocab is not None:
            (partial / "tokenizer").mkdir()
            shutil.copyfile(vocab, partial / "tokenizer" / VOCAB_NAME)
        _write_text(partial / "model_index.json", {"format": FORMAT, **index})
        os.replace(partial, dest)
    except OSError as exc:
        raise OutputError(f"{dest}: writing the model folder failed ({exc.strerror or exc}); nothing was kept") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _write_text(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads((Path(path) / "model_index.json").read_text())
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path}: not a converted model folder (no model_index.json); convert "
                                 "model.ckpt with `vidscale model convert model.ckpt FOLDER`") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}/model_index.json: unreadable ({exc})") from None
    if index.get("format") != FORMAT:
        raise CheckpointError(f"{path}: model folder format {index.get('format')!r}, this vidscale reads "
                              f"{FORMAT}: convert the checkpoint again")
    return index


def read_config(path: Path, component: str) -> dict[str, Any]:
    try:
        return json.loads((Path(path) / component / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}/{component}/config.json: missing or unreadable ({exc}); "
                              "convert the checkpoint again") from None


def read_weights(path: Path, component: str, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors, memory-mapped and read straight onto ``device`` (no CPU copy for CUDA)."""
    file = Path(path) / component / WEIGHTS
    try:
        return load_file(file, device=str(device))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{file}: missing or damaged ({exc}); convert the checkpoint again") from None


def weight_summary(path: Path, component: str) -> tuple[int, str]:
    """Parameter count and dtype(s) from the safetensors header, without reading the tensors."""
    file = Path(path) / component / WEIGHTS
    try:
        with safe_open(file, framework="pt") as handle:
            slices = [handle.get_slice(key) for key in handle.keys()]
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{file}: missing or damaged ({exc})") from None
    count = sum(int(torch.Size(s.get_shape()).numel()) for s in slices)
    dtypes = sorted({_DTYPES.get(s.get_dtype(), s.get_dtype()) for s in slices})
    return count, "/".join(dtypes)


_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
