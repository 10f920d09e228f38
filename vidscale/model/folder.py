"""The converted model folder: a diffusers pipeline folder that vidscale's own loader also reads.

```
DEST/model_index.json                    the components and their classes (diffusers' format),
                                         plus what it was converted from
DEST/vidscale_pipeline.py                one import line: names vidscale's pipeline class for
                                         DiffusionPipeline.from_pretrained(DEST, trust_remote_code=True)
DEST/unet/config.json                    VC2UNet (UNet3DConditionModel + fps embedding)
DEST/unet/diffusion_pytorch_model.safetensors
DEST/vae/...                             AutoencoderKL, same two files
DEST/text_encoder/config.json, model.safetensors    CLIPTextModel (23 layers for VC2)
DEST/tokenizer/bpe_simple_vocab_16e6.txt.gz         the CLIP merges, when they were available
DEST/tokenizer/clip_tokenizer.py         one import line: vidscale's exact open_clip tokenizer
DEST/scheduler/scheduler_config.json     VC2Schedule (signal-scaled DDIM)
```
Why the two one-line modules: diffusers 0.42 looks a pipeline class named in ``model_index.json``
up inside the diffusers package only, and imports a component library only when it is already
imported or ships as a file in the folder (run only with ``trust_remote_code=True``). The files
import the installed vidscale, nothing else; vidscale's own pipeline classes trust exactly these
lines and no other code (:func:`is_vidscale_code`).

safetensors loads by memory-mapping, without unpickling, in seconds. The folder is written
under a temporary name and renamed when complete, so an interrupted conversion never leaves a
folder that looks finished. Tensors and JSON are written in a fixed order: converting the same
checkpoint twice gives identical files. Folders of the first format (every component's weights in
``model.safetensors``, ``"format": 1``) are still read.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Mapping

import diffusers
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig

from ..errors import CheckpointError, ModelNotFoundError, OutputError
from .schedule import VC2Schedule
from .tokenizer import ClipTokenizer

FORMAT = 2
FORMATS = (1, 2)  # format 1: no diffusers layout (weights in model.safetensors, "format": 1)
COMPONENTS = ("unet", "vae", "text_encoder")  # the components with weights
WEIGHTS = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
           "text_encoder": "model.safetensors"}
FORMAT1_WEIGHTS = "model.safetensors"
LIBRARIES = {"unet": ["vidscale.model.unet", "VC2UNet"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["clip_tokenizer", "ClipTokenizer"],
             "scheduler": ["vidscale.model.schedule", "VC2Schedule"]}
PIPELINE_CLASS = ["vidscale_pipeline", "VideoCrafter2Pipeline"]
CODE = {  # file in the folder -> its whole text
    "vidscale_pipeline.py": ("from vidscale.pipeline.diffusers_pipelines import (FreeScalePipeline, "
                             "VideoCrafter2Pipeline,\n"
                             "                                               VideoCrafter2UpscalePipeline)\n"),
    "tokenizer/clip_tokenizer.py": "from vidscale.model.tokenizer import ClipTokenizer\n",
}


def is_model_folder(path: Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def is_vidscale_code(path: Path) -> bool:
    """Whether every Python file in the folder (top and component level) is one vidscale wrote."""
    files = [*Path(path).glob("*.py"), *Path(path).glob("*/*.py")]
    return all(str(file.relative_to(path)) in CODE and file.read_text() == CODE[str(file.relative_to(path))]
               for file in files)


def save_folder(dest: Path, configs: Mapping[str, dict], states: Mapping[str, Mapping[str, torch.Tensor]],
                tokenizer: ClipTokenizer | None, converted_from: dict[str, Any] | None = None) -> None:
    """Write the folder atomically; refuse to touch an existing ``dest``.

    ``configs`` are the constructor arguments of each component (``VC2UNet``, ``AutoencoderKL``,
    ``CLIPTextConfig``); the config files are written the way each library writes them.
    """
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
            _write_text(partial / name / "config.json", _library_config(name, configs[name]))
            save_file({key: states[name][key].contiguous() for key in sorted(states[name])},
                      partial / name / WEIGHTS[name], metadata={"format": "pt"})
        VC2Schedule().save_pretrained(partial / "scheduler")
        if tokenizer is not None:
            tokenizer.save_pretrained(partial / "tokenizer")
        for relative, text in CODE.items():
            (partial / relative).parent.mkdir(exist_ok=True)
            (partial / relative).write_text(text)
        index = {"_class_name": PIPELINE_CLASS, "_diffusers_version": diffusers.__version__, **LIBRARIES,
                 "_vidscale_format": FORMAT, "_converted_from": converted_from}
        _write_text(partial / "model_index.json", index)
        os.replace(partial, dest)
    except OSError as exc:
        raise OutputError(f"{dest}: writing the model folder failed ({exc.strerror or exc}); "
                          "nothing was kept") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def save_model(model: Any, dest: Path) -> None:
    """Write a loaded :class:`~vidscale.model.VideoCrafter2` (the tiny test model too) as a model folder."""
    configs = {"unet": _public(model.unet.config), "vae": _public(model.vae.config),
               "text_encoder": model.text_encoder.config.to_dict()}
    states = {"unet": model.unet.state_dict(), "vae": model.vae.state_dict(),
              "text_encoder": model.text_encoder.state_dict()}
    save_folder(dest, configs, states, model.tokenizer, {"model": model.name, "test_model": model.is_test_model})


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _library_config(component: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A component's config.json as its library writes it (and reads it back)."""
    if component == "text_encoder":
        text = CLIPTextConfig(**config)
        text.architectures = ["CLIPTextModel"]
        return text.to_dict()
    classes = {"unet": "VC2UNet", "vae": "AutoencoderKL"}
    return {"_class_name": classes[component], "_diffusers_version": diffusers.__version__, **config}


def _write_text(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_index(path: Path) -> dict[str, Any]:
    try:
        index = json.loads((Path(path) / "model_index.json").read_text())
    except FileNotFoundError:
        raise ModelNotFoundError(f"{path}: not a converted model folder (no model_index.json); convert "
                                 "model.ckpt with `vidscale model convert --trust-pickle model.ckpt FOLDER`") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}/model_index.json: unreadable ({exc})") from None
    found = index.get("_vidscale_format", index.get("format"))
    if found not in FORMATS:
        raise CheckpointError(f"{path}: model folder format {found!r}, this vidscale reads "
                              f"{' and '.join(map(str, FORMATS))}: convert the checkpoint again")
    return index


def read_config(path: Path, component: str) -> dict[str, Any]:
    """The constructor arguments (the libraries' bookkeeping keys, ``_class_name`` etc., left out)."""
    try:
        return _public(json.loads((Path(path) / component / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}/{component}/config.json: missing or unreadable ({exc}); "
                              "convert the checkpoint again") from None


def read_weights(path: Path, component: str, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors, memory-mapped and read straight onto ``device`` (no CPU copy for CUDA)."""
    file = weights_file(path, component)
    try:
        return load_file(file, device=str(device))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{file}: missing or damaged ({exc}); convert the checkpoint again") from None


def weights_file(path: Path, component: str) -> Path:
    """The component's safetensors file: diffusers' name, or format 1's ``model.safetensors``."""
    folder = Path(path) / component
    return folder / WEIGHTS[component] if (folder / WEIGHTS[component]).is_file() else folder / FORMAT1_WEIGHTS


def weight_summary(path: Path, component: str) -> tuple[int, str]:
    """Parameter count and dtype(s) from the safetensors header, without reading the tensors."""
    file = weights_file(path, component)
    try:
        with safe_open(file, framework="pt") as handle:
            slices = [handle.get_slice(key) for key in handle.keys()]
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{file}: missing or damaged ({exc})") from None
    count = sum(int(torch.Size(s.get_shape()).numel()) for s in slices)
    dtypes = sorted({_DTYPES.get(s.get_dtype(), s.get_dtype()) for s in slices})
    return count, "/".join(dtypes)


_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
