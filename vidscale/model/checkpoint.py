"""Reading VideoCrafter2's original ``model.ckpt``: containers, safe loading and layout checks.

The file is a PyTorch Lightning checkpoint. Its structure is checked first, from its first bytes:
a zip archive holding ``*/data.pkl`` (``torch.save``'s format), a pickle (the legacy format, or
any pickle), or a safetensors file; anything else (an HTML error page saved as model.ckpt, a
wrong file) is named as such, without a word about unpickling. ``torch.load(weights_only=True)``
only rebuilds tensors and plain containers, so it cannot run code hidden in a pickle; when it
refuses a real pickle (Lightning may store objects besides tensors), loading it anyway is the
user's explicit choice (``--trust-pickle``), because unpickling a file can run arbitrary code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import CheckpointError, ModelNotFoundError
from .keymap import TEXT_PREFIX, UNET_PREFIX, VAE_PREFIX
from .schedule import VC2Schedule

DOWNLOAD = "https://huggingface.co/VideoCrafter/VideoCrafter2/resolve/main/model.ckpt (7.4 GB)"
DEEPSPEED_PREFIX = "_forward_module."
# VideoCrafter2's model.ckpt holds Lightning objects besides tensors: the safe loader refuses it
CONVERT = "vidscale model convert --trust-pickle model.ckpt"
_ZIP_MAGIC = b"PK\x03\x04"


def read_checkpoint(path: Path, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The flat state dict of an original VC2 checkpoint in any of its containers, checked."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such file. Download VideoCrafter2's model.ckpt from {DOWNLOAD}")
    state = unwrap(_load(path, trust_pickle), path)
    check_layout(state, path)
    return state


def checkpoint_format(path: Path) -> str:
    """``"zip"``, ``"pickle"`` or ``"safetensors"``, from the file's structure; a file that is none
    of them (or a torn zip) is a :class:`CheckpointError` that does not suggest unpickling."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    size = path.stat().st_size
    if head.startswith(_ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path}: a zip archive without its end (truncated at {size:,} bytes): "
                                  f"is the download complete? (VideoCrafter2's model.ckpt is {DOWNLOAD})")
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                raise _not_a_checkpoint(path, "a zip archive without data.pkl")
        return "zip"
    if len(head) >= 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return "safetensors"
    what = "empty" if not size else f"{size:,} bytes starting {head[:12]!r}"
    raise _not_a_checkpoint(path, f"neither a zip archive nor a pickle: {what}")


def _not_a_checkpoint(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a PyTorch checkpoint ({what}); is it the right file? "
                           f"expected model.ckpt from {DOWNLOAD}")


def _load(path: Path, trust_pickle: bool) -> Any:
    kind = checkpoint_format(path)
    if kind == "safetensors":
        try:
            return load_file(path)
        except SafetensorError as exc:
            raise _unreadable(path, exc) from None
    is_zip = kind == "zip"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: the safe loader refused it: it holds Python objects besides tensors "
                f"({_first_line(exc)}). If the file is VideoCrafter2's model.ckpt from {DOWNLOAD}, "
                "rerun with --trust-pickle (unpickling runs code from the file: only for files you trust)"
            ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=is_zip)
    except Exception as exc:  # an untrusted pickle can raise anything
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({_first_line(exc)}); "
                           f"is the download complete? ({path.stat().st_size:,} bytes here; VideoCrafter2's "
                           f"model.ckpt is {DOWNLOAD})")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """``{"state_dict": sd}`` (Lightning), ``{"module": sd}`` (DeepSpeed) or a flat dict -> flat dict."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("module"), Mapping):
        obj = {key.removeprefix(DEEPSPEED_PREFIX): value for key, value in obj["module"].items()}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict: not a model checkpoint")
    return {key: value for key, value in obj.items() if isinstance(value, torch.Tensor)}


def check_layout(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Name what is wrong when the tensors are not VideoCrafter2's."""
    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in state)

    found = ", ".join(sorted(state)[:3]) or "no tensors at all"
    if not has(UNET_PREFIX):
        raise CheckpointError(f"{path}: no {UNET_PREFIX}* keys (found {found}): is this a VideoCrafter2 checkpoint?")
    if UNET_PREFIX + "init_attn.0.proj_in.weight" not in state or UNET_PREFIX + "fps_embedding.0.weight" not in state:
        raise CheckpointError(f"{path}: the UNet has no temporal layers or no fps embedding: an image model "
                              "(Stable Diffusion?) or VideoCrafter1, not VideoCrafter2")
    for prefix, what in ((VAE_PREFIX, "VAE"), (TEXT_PREFIX, "OpenCLIP text encoder")):
        if not has(prefix):
            raise CheckpointError(f"{path}: no {prefix}* keys: the {what} is missing from the checkpoint")
    _check_schedule(state, path)


def _check_schedule(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A checkpoint trained with another noise schedule would sample wrongly with ours: refuse it."""
    schedule = VC2Schedule()
    for name, ours in (("alphas_cumprod", schedule.alphas_cumprod), ("scale_arr", schedule.scale_arr)):
        theirs = state.get(name)
        if theirs is not None and (theirs.shape != ours.shape
                                   or not torch.allclose(theirs.double(), ours, atol=1e-5)):
            raise CheckpointError(f"{path}: its {name} differs from VideoCrafter2's schedule "
                                  "(scaled_linear 0.00085-0.012, scale_arr 1 -> 0.7): another model")
