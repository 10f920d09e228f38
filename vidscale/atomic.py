"""Writing files so that a crash or a power cut never leaves a half-written file under its final name.

Everything vidscale writes (outputs, converted weights, chunk results, manifests) goes to a
temporary name in the destination folder and is renamed into place with :func:`os.replace` only
once complete; the rename is atomic on one filesystem. On any error the temporary file is removed.

A rename alone is atomic for a crash of the process, not for a power cut: the filesystem may
commit the rename before the file's data, and after the reboot the final name holds an empty
file. So the file is fsync'd before the rename and its folder after it (the rename itself is
then on disk too): a final name holds the old content or the complete new one.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import secrets
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

from .errors import OutputError


def temp_name(final: Path) -> Path:
    """A fresh, unused temporary path beside ``final`` that keeps its suffix (muxers read it).

    Created with mode 0o666 filtered by the umask, like any file the user writes (``mkstemp``'s
    0o600 would follow the rename and lock colleagues on shared storage out of the output).
    """
    final = Path(final)
    name, handle = _new_temp(final.name, None, final.parent)
    os.close(handle)
    return final.with_name(name)


def _new_temp(name: str, folder_fd: int | None, folder: Path = Path()) -> tuple[str, int]:
    """Create ``.STEM.XXXXXXXX.partial.SUFFIX`` (8 hex digits) beside ``name``; (its name, an fd open
    for writing). ``O_EXCL`` never opens an existing file, nor follows a symlink planted there."""
    final = Path(name)
    while True:
        candidate = f".{final.stem}.{secrets.token_hex(4)}.partial{final.suffix}"
        try:
            return candidate, os.open(folder / candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666,
                                      dir_fd=folder_fd)
        except FileExistsError:
            continue


def sync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk (before it is renamed into place)."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def sync_folder(folder: Path | int) -> None:
    """Flush a folder's entries (a rename in it) to the disk; ``folder`` is a path or an open fd.

    Some network and FUSE filesystems cannot fsync a folder (EINVAL): they commit renames
    themselves, so that is not an error.
    """
    handle = folder if isinstance(folder, int) else os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        if not isinstance(folder, int):
            os.close(handle)


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
def output_folder_errors(final: Path) -> Iterator[None]:
    """An ``OSError`` opening ``final``'s folder as the one-line error it is for a user (exit 2)."""
    try:
        yield
    except FileNotFoundError:
        raise OutputError(f"{final.parent}: output folder does not exist", exit_code=2) from None
    except OSError as exc:
        raise OutputError(f"{final.parent}: cannot write in the output folder ({exc.strerror})",
                          exit_code=2) from None


@contextmanager
def atomic_path(final: Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``final``, on error it is removed.

    Raises :class:`OutputError` (exit 2) before anything is written when the folder is missing or
    unwritable, or when ``final`` exists and ``overwrite`` is false.
    """
    final = Path(final)
    check_target(final, overwrite=overwrite)
    with output_folder_errors(final):
        temp = temp_name(final)
    try:
        yield temp
        sync_file(temp)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(final.parent)


def write_bytes(final: Path, data: bytes, *, folder_fd: int | None = None) -> None:
    """Write ``data`` to ``final`` atomically (fsync'd, so a power cut keeps old or new).

    ``folder_fd``: an open folder that ``final`` (then a bare name) is written in, whatever its
    path has become meanwhile; no symlink is followed there (the watch folder's state files).
    """
    final = Path(final)
    with output_folder_errors(final):
        folder = folder_fd if folder_fd is not None else os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _write_in(folder, final, data)
    finally:
        if folder_fd is None:
            os.close(folder)


def _write_in(folder: int, final: Path, data: bytes) -> None:
    try:
        temp, handle = _new_temp(final.name, folder)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})", exit_code=2) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, final.name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException as error:
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder)
        if isinstance(error, OSError):  # a full disk: the old file, if any, is untouched
            raise OutputError(f"{final}: cannot write ({error.strerror or error})") from None
        raise
    sync_folder(folder)


def write_json(final: Path, data: Any, *, folder_fd: int | None = None) -> None:
    """Write ``data`` as indented JSON to ``final`` atomically (``folder_fd``: see :func:`write_bytes`)."""
    write_bytes(final, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode(),
                folder_fd=folder_fd)


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
