"""Writing files so that a crash never leaves a half-written file under its final name.

Everything vidscale writes (outputs, converted weights, chunk results, manifests) goes to a
temporary name in the destination folder and is renamed into place with :func:`os.replace` only
once complete; the rename is atomic on one filesystem. On any error the temporary file is removed.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError


def temp_name(final: Path) -> Path:
    """A fresh, unused temporary path beside ``final`` that keeps its suffix (muxers read it).

    Created with mode 0o666 filtered by the umask, like any file the user writes (``mkstemp``'s
    0o600 would follow the rename and lock colleagues on shared storage out of the output).
    """
    final = Path(final)
    while True:
        candidate = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.partial{final.suffix}")  # 8 hex digits
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def remove_stale_temps(final: Path) -> None:
    """Remove temporary files of ``final`` left by a killed run (a resumed job writes it anew)."""
    final = Path(final)
    for temp in final.parent.glob(f".{glob.escape(final.stem)}.{'?' * 8}.partial{glob.escape(final.suffix)}"):
        temp.unlink(missing_ok=True)


def check_target(final: Path, *, overwrite: bool) -> None:
    """Fail early (exit 2), before any long work, if ``final`` exists and may not be replaced."""
    if Path(final).exists() and not overwrite:
        raise OutputError(f"{final}: already exists (pass --overwrite to replace it)", exit_code=2)


def make_folder(folder: Path, *, hint: str = "", exit_code: int = 1) -> None:
    """Create an output folder (and its parents), or raise :class:`OutputError` saying why."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror}){hint}",
                          exit_code=exit_code) from None


@contextmanager
def atomic_path(final: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``final``, on error it is removed.

    Raises :class:`OutputError` (exit 2) before anything is written when the folder is missing or
    unwritable, or when ``final`` exists and ``overwrite`` is false.
    """
    final = Path(final)
    check_target(final, overwrite=overwrite)
    try:
        temp = temp_name(final)
    except FileNotFoundError:
        raise OutputError(f"{final.parent}: output folder does not exist", exit_code=2) from None
    except OSError as exc:
        raise OutputError(f"{final.parent}: cannot write in the output folder ({exc.strerror})",
                          exit_code=2) from None
    try:
        yield temp
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically (fsync'd, so a power cut keeps old or new)."""
    with atomic_path(final) as temp:
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:  # a full disk: the old file, if any, is untouched
            raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None


def write_json(final: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``final`` atomically."""
    write_bytes(final, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def check_writable(folder: Path, *, exit_code: int = 2) -> None:
    """Fail early (before any long work) if no file can be created in ``folder``, or, when it does
    not exist yet, in the nearest folder above it, where it would be made.

    It creates and removes a real hidden file: permission bits say nothing about read-only mounts
    or network shares, and root ignores them.
    """
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{folder}: cannot be an output folder ({existing} is a file); "
                          "choose another folder", exit_code=exit_code)
    try:
        os.unlink(temp_name(existing / ".vidscale-write-check"))
    except OSError as exc:
        where = "the output folder" if existing == folder else f"{existing}, where it would be made"
        raise OutputError(f"{folder}: cannot write in {where} ({exc.strerror or exc}); "
                          "make it writable or choose another folder", exit_code=exit_code) from None
