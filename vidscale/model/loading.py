"""Where the weights are, which device and dtype run them, and loading them."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import CheckpointError, ModelNotFoundError, SettingsError
from .checkpoint import CONVERT, DOWNLOAD, read_checkpoint
from .configs import TINY_UNET, TINY_VAE, VC2_UNET, VC2_VAE
from .convert import convert_original
from .folder import COMPONENTS, is_model_folder, read_config, read_index, read_weights
from .spec import TINY_COST, VC2_COST, ModelSpec
from .tokenizer import ClipTokenizer, find_vocab
from .videocrafter2 import (
    RANDOM_NAME,
    TINY_NAME,
    VideoCrafter2,
    assemble,
    random_videocrafter2,
    tiny_videocrafter2,
    vc2_spec,
)
from .wan import WAN_DOWNLOAD, WAN_RANDOM, WAN_REPO, WAN_TINY, is_wan_folder, resolve_wan_spec

TINY = "tiny"
RANDOM = "random"  # the full-size architecture with random weights, for speed and memory tests
WAN = "wan"  # the default Wan folder (default_wan_dir)
NAMED = (TINY, RANDOM, WAN_TINY, WAN_RANDOM)  # random test models, chosen by name
ENV = "VIDSCALE_MODEL"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_model_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vidscale" / "videocrafter2"


def default_wan_dir() -> Path:
    return default_model_dir().parent / WAN_REPO.split("/")[1]


def resolve_model_path(path: str | Path | None) -> str | Path:
    """``--model`` if given, then ``$VIDSCALE_MODEL``, then the default cache folder; the random
    test models' names as they are; ``"wan"``: the default Wan folder."""
    chosen = str(path or "") or os.environ.get(ENV, "")
    if chosen in NAMED:
        return chosen
    if chosen == WAN:
        if not is_wan_folder(default_wan_dir()):
            raise ModelNotFoundError(
                f"no Wan weights at {default_wan_dir()} (--model wan). Download {WAN_REPO} from Hugging Face "
                f"({WAN_DOWNLOAD}, 28 GB) into that folder: `hf download {WAN_REPO} --local-dir "
                f"{default_wan_dir()}`, or pass --model FOLDER. `--model wan-tiny` runs a random test model.")
        return default_wan_dir()
    candidate = Path(chosen).expanduser() if chosen else default_model_dir()
    if not candidate.exists():
        where = f"--model {chosen}" if path else (f"${ENV}={chosen}" if chosen else "the default folder")
        raise ModelNotFoundError(
            f"no VideoCrafter2 weights at {candidate} ({where}). Download model.ckpt from {DOWNLOAD}, then "
            f"convert it once: `{CONVERT} {default_model_dir()}` (--trust-pickle: that file holds "
            f"Lightning objects the safe loader refuses; use it on that download only). Or pass --model / "
            f"set ${ENV} to a converted folder or to model.ckpt. `--model tiny` runs a random test model. "
            f"For Wan, download {WAN_REPO} ({WAN_DOWNLOAD}) and pass its folder, or use --model wan.")
    return candidate


def model_family(path: str | Path) -> str:
    """``"wan"`` or ``"videocrafter2"`` for a model name or path (nothing is loaded); "" is the
    default, VideoCrafter2's folder."""
    if not str(path):
        return "videocrafter2"
    if str(path) in (WAN, WAN_TINY, WAN_RANDOM) or is_wan_folder(path):
        return "wan"
    return "videocrafter2"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SettingsError("model.device = 'cuda' but torch sees no CUDA GPU "
                            f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA (VC2 is stable in it, fp16 can overflow in the VAE), fp32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def load_videocrafter2(path: str | Path, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype = torch.float32, vocab: Path | None = None) -> VideoCrafter2:
    """Load a converted folder, an original ``model.ckpt`` (converted in memory), ``"tiny"`` or
    ``"random"`` (both random test models)."""
    if str(path) == TINY:
        return tiny_videocrafter2(device, dtype)
    if str(path) == RANDOM:
        return random_videocrafter2(device, dtype)
    path = Path(path)
    if is_model_folder(path):
        configs = {name: read_config(path, name) for name in COMPONENTS}
        states = {name: read_weights(path, name, device) for name in COMPONENTS}
        model_dir, (name, origin) = path, _folder_origin(path)
    elif path.is_file():
        configs, states = convert_original(read_checkpoint(path))
        model_dir, name, origin = None, f"VideoCrafter2 ({path.name})", {}
    else:
        raise _not_a_model(path)
    vocab_file = find_vocab(model_dir, vocab)
    tokenizer = ClipTokenizer.from_file(vocab_file)
    if tokenizer.vocab_size != configs["text_encoder"]["vocab_size"]:
        raise CheckpointError(f"{vocab_file}: gives {tokenizer.vocab_size} token ids, the text encoder has "
                              f"{configs['text_encoder']['vocab_size']}: not CLIP's vocabulary (or truncated)")
    base = _base_size(configs["unet"])
    return assemble(configs, states, tokenizer=tokenizer, name=name, device=device, dtype=dtype,
                    is_test_model=bool(origin.get("test_model")),  # a saved tiny model stays labelled random
                    base_height=base[0], base_width=base[1])


def resolve_spec(path: str | Path | None) -> ModelSpec:
    """The :class:`ModelSpec` of the model ``--model path`` chooses, read without loading a
    weight (configs only): what ``--dry-run`` plans with, so its plan is the run's plan."""
    chosen = resolve_model_path(path)
    if model_family(chosen) == "wan":
        return resolve_wan_spec(chosen)
    if str(chosen) == TINY:
        return vc2_spec(TINY_NAME, True, _base_size(TINY_UNET), TINY_VAE["block_out_channels"][1], TINY_COST)
    if str(chosen) == RANDOM:
        return vc2_spec(RANDOM_NAME, True, _base_size(VC2_UNET), VC2_VAE["block_out_channels"][1], VC2_COST)
    chosen = Path(chosen)
    if is_model_folder(chosen):
        name, origin = _folder_origin(chosen)
        return vc2_spec(name, bool(origin.get("test_model")), _base_size(read_config(chosen, "unet")),
                        read_config(chosen, "vae")["block_out_channels"][1], VC2_COST)
    if chosen.is_file():  # the original checkpoint: VideoCrafter2 itself (reading its configs means reading 7 GB)
        return vc2_spec(f"VideoCrafter2 ({chosen.name})", False, _base_size(VC2_UNET),
                        VC2_VAE["block_out_channels"][1], VC2_COST)
    raise _not_a_model(chosen)


def _folder_origin(folder: Path) -> tuple[str, dict]:
    """A converted folder's model name and what it was converted from (its model_index.json)."""
    index = read_index(folder)
    origin = index.get("_converted_from") or index.get("converted_from") or {}
    return origin.get("model") or f"VideoCrafter2 ({origin.get('file', folder.name)})", origin


def _base_size(unet_config: dict) -> tuple[int, int]:
    """(height, width) in pixels the UNet was trained at: its ``sample_size`` on the latent grid."""
    sample = unet_config.get("sample_size") or (40, 64)  # format 1 folders: VC2's 320x512
    sample = (sample, sample) if isinstance(sample, int) else sample
    return sample[0] * 8, sample[1] * 8


def _not_a_model(path: Path) -> ModelNotFoundError:
    return ModelNotFoundError(f"{path}: neither a converted model folder (model_index.json) nor a "
                              f"checkpoint file. Download model.ckpt from {DOWNLOAD}")
