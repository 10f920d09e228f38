"""The watch folder's layout on disk, and the moves that carry a clip through it.

::

    INBOX/                     clips are dropped here, in subfolders too
      sub/vidscale.toml        settings for sub/ (layered over the watcher's preset)
      .vidscale/processing/    claimed clips (same relative path), while their job runs
      .vidscale/log.jsonl      one JSON event per line, appended
      .vidscale/status.json    queued / running (with progress) / done / failed, written atomically
      done/                    sources of finished clips (same relative path)
      failed/                  sources that failed, each with NAME.error.json beside it
      out/                     outputs (default --out-dir), mirroring the subfolders

Every move is an ``os.rename`` inside INBOX: atomic on one filesystem, so a clip is always in
exactly one place (inbox, processing, done or failed) whatever instant the process dies at, and
two watchers can never both take it (the second rename finds nothing). A move never replaces a
file: a name already taken gets `` (2)``, `` (3)``... appended.
"""

from __future__ import annotations

import fcntl
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import InputError, SettingsError
from ..settings import Settings, parse_settings
from .batch import default_output

STATE_DIR = ".vidscale"
SETTINGS_FILE = "vidscale.toml"
# Endings of files that browsers and copy tools are still writing (renamed when complete).
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".filepart")


@dataclass(frozen=True)
class FolderSettings:
    """The settings for one subfolder, and where they came from (for logs and error files)."""

    settings: Settings
    sources: tuple[str, ...]  # "preset NAME" or "default settings", then each vidscale.toml


@dataclass(frozen=True)
class InboxLayout:
    """Where everything of one watch folder lives. Paths are absolute."""

    inbox: Path
    out_dir: Path

    @classmethod
    def create(cls, inbox: Path, out_dir: Path | None) -> "InboxLayout":
        """Resolve the paths and make the inbox's own folders (not the output folder: see below).

        The output folder is made per clip, so that a read-only or missing output location fails
        that clip (into failed/, with the reason) instead of stopping the watcher.
        """
        inbox = Path(inbox).resolve()
        layout = cls(inbox, Path(out_dir).resolve() if out_dir else inbox / "out")
        if layout.out_dir == inbox or any(
                layout._excluded_dir(folder) for folder in layout.out_dir.parents):
            raise InputError(f"{layout.out_dir}: the output folder cannot be the inbox itself or "
                             "inside its done/, failed/ or .vidscale/ folders; choose another --out-dir")
        try:
            for folder in (layout.processing, layout.done, layout.failed):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{inbox}: cannot use it as a watch folder ({exc.strerror}); "
                             "give a folder vidscale can write in") from None
        return layout

    @property
    def state(self) -> Path:
        return self.inbox / STATE_DIR

    @property
    def processing(self) -> Path:
        return self.state / "processing"

    @property
    def done(self) -> Path:
        return self.inbox / "done"

    @property
    def failed(self) -> Path:
        return self.inbox / "failed"

    @property
    def log_file(self) -> Path:
        return self.state / "log.jsonl"

    @property
    def status_file(self) -> Path:
        return self.state / "status.json"

    def is_watched(self, path: Path) -> bool:
        """True for a path where a dropped clip may appear (not vidscale's own folders or files).

        File events for everything else (our status file, outputs, moves into done/) must not
        wake the loop: each wake-up would otherwise cause the next one.
        """
        path = Path(path)
        try:
            rel = path.relative_to(self.inbox)
        except ValueError:
            return False
        if not rel.parts or any(part.startswith(".") for part in rel.parts):
            return False
        return not any(self._excluded_dir(folder) for folder in (path, *path.parents))

    def _excluded_dir(self, folder: Path) -> bool:
        return folder in (self.done, self.failed, self.state, self.out_dir)

    def scan(self) -> Iterator[tuple[Path, os.stat_result]]:
        """``(relative path, stat)`` of every file in the inbox that may be a dropped clip."""
        for root, dirs, files in os.walk(self.inbox):
            folder = Path(root)
            dirs[:] = sorted(d for d in dirs
                             if not d.startswith(".") and not self._excluded_dir(folder / d))
            for name in sorted(files):
                if _candidate_name(name):
                    stat = _stat(folder / name)
                    if stat is not None:
                        yield (folder / name).relative_to(self.inbox), stat

    def claimed(self) -> list[Path]:
        """Relative paths of the clips in processing/, in the order they were claimed (the claiming
        rename set their inode change time; nothing else changes them while they are there)."""
        found = []
        for root, _dirs, files in os.walk(self.processing):
            for name in files:
                stat = _stat(Path(root) / name)
                if stat is not None:
                    found.append((stat.st_ctime_ns, (Path(root) / name).relative_to(self.processing)))
        return [rel for _mtime, rel in sorted(found)]

    def folder_settings(self, rel: Path, base: Settings, base_label: str) -> FolderSettings:
        """``base`` with every ``vidscale.toml`` from the inbox down to ``rel``'s folder layered on."""
        settings, sources = base, [base_label]
        for folder in reversed([rel.parent, *rel.parent.parents]):
            path = self.inbox / folder / SETTINGS_FILE
            if path.is_file():
                settings = parse_settings(_read_text(path), str(path), base=settings)
                sources.append(str(path.relative_to(self.inbox)))
        return FolderSettings(settings, tuple(sources))

    def output_for(self, rel: Path, settings: Settings) -> Path:
        """``out/<same subfolder>/NAME_2x.mov``: the batch command's naming, mirrored."""
        return default_output(rel, settings, self.out_dir / rel.parent)


def _candidate_name(name: str) -> bool:
    return (not name.startswith(".") and name != SETTINGS_FILE
            and not name.lower().endswith(IN_PROGRESS_SUFFIXES))


def _stat(path: Path) -> os.stat_result | None:
    """The file's stat, or None when it vanished meanwhile (taken by another watcher, renamed)."""
    try:
        result = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return result if stat.S_ISREG(result.st_mode) else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the folder's settings: {exc}") from None


def free_name(target: Path, taken=lambda path: path.exists()) -> Path:
    """``target``, or ``NAME (2).ext``, ``NAME (3).ext``... : the first name ``taken`` says is free."""
    candidate, number = target, 1
    while taken(candidate):
        number += 1
        candidate = target.with_name(f"{target.stem} ({number}){target.suffix}")
    return candidate


def move(source: Path, target: Path, taken=lambda path: path.exists()) -> Path:
    """Rename ``source`` to ``target`` or, if ``taken``, to the first free ``NAME (n)`` beside it.

    Raises ``FileNotFoundError`` when ``source`` is gone (another watcher took it).
    """
    target = free_name(target, taken)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, target)
    return target


def prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


@contextmanager
def owned(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on a claimed clip while its job runs; False if another watcher has it.

    A ``flock`` belongs to the process: a watcher killed with SIGKILL drops it, so its clip is
    resumed by the next watcher that looks, while a live watcher's clip is never run twice.
    """
    fd = _open_locked(path)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


def _open_locked(path: Path) -> int | None:
    """An fd of ``path`` holding its lock, or None. The path is checked again after locking,
    because the owner may have moved the clip on (to done/) and released it in between."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        now, held = os.stat(path), os.fstat(fd)
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None
