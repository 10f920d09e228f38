"""The watch folder's layout on disk, and the moves that carry a clip through it.

::

    INBOX/                     clips are dropped here, in subfolders too
      sub/vidscale.toml        settings for sub/ (layered over the watcher's preset; FOLDER_KEYS only)
      .vidscale/processing/    claimed clips (same relative path), while their job runs
      .vidscale/log.jsonl      one JSON event per line, appended
      .vidscale/status.json    queued / running (with progress) / done / failed, written atomically
      done/                    sources of finished clips (same relative path)
      failed/                  sources that failed, each with NAME.error.json beside it
      out/                     outputs (default --out-dir), mirroring the subfolders

Every move is a rename inside INBOX: atomic on one filesystem, so a clip is always in exactly one
place (inbox, processing, done or failed) whatever instant the process dies at, and two watchers
can never both take it (the second rename finds nothing). A move never replaces a file: a name
already taken gets `` (2)``, `` (3)``... appended.

Everything in INBOX but the watcher's own folders is written by others, maybe carelessly or with
ill intent (a shared inbox): names, symlinks, pipes, settings files. So:

* The watcher's own folders (``.vidscale/``, its ``processing/``, ``done/``, ``failed/`` and the
  output folder) are made and checked at the start (real folders, not symlinks) and held open
  for the whole run; every move, state file and error file goes through those open folders,
  walking subfolders one name at a time without following a symlink (``O_NOFOLLOW``). A symlink
  planted anywhere on the way is an error for that clip, never a path out of the folder.
* The scan reads entries without following links and never enters a linked folder; an entry it
  cannot read (a loop, no permission, gone meanwhile) is reported once and passed over.
* What is dropped is judged by its ``lstat``: a symlink is refused unless the watcher was asked
  to follow links, and anything that is not a file (a pipe, a socket, a device) is refused; it is
  never opened (opening a pipe blocks).
* A folder's ``vidscale.toml`` is read only if it is a small regular file (``SETTINGS_LIMIT``), and
  may set only the keys of :data:`vidscale.settings.FOLDER_KEYS`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import check_writable
from ..errors import InputError, OutputError, SettingsError
from ..settings import Settings, parse_folder_settings
from .batch import default_output

STATE_DIR = ".vidscale"
SETTINGS_FILE = "vidscale.toml"
SETTINGS_LIMIT = 64 * 1024  # bytes: a settings file is a few lines; a bigger one is refused unread
# Endings of files that browsers and copy tools are still writing (renamed when complete).
IN_PROGRESS_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".filepart")
FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
AREAS = ("inbox", "state", "processing", "done", "failed", "out")  # the folders held open


@dataclass(frozen=True)
class FolderSettings:
    """The settings for one subfolder, and where they came from (for logs and error files)."""

    settings: Settings
    sources: tuple[str, ...]  # "preset NAME" or "default settings", then each vidscale.toml


@dataclass
class InboxLayout:
    """Where everything of one watch folder lives (absolute paths), with its own folders held open.

    Open it with :meth:`open` and close it with :meth:`close` (or use it as a context manager).
    """

    inbox: Path
    out_dir: Path
    fds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, inbox: Path, out_dir: Path | None) -> "InboxLayout":
        """Resolve the paths once, make the watcher's own folders and hold them open.

        Raises :class:`InputError` (exit 2) naming the folder when one of them is a symlink or a
        file, or cannot be made; :class:`OutputError` (exit 2) when the output folder cannot be
        written.
        """
        inbox = Path(inbox).resolve()
        layout = cls(inbox, Path(out_dir).resolve() if out_dir else inbox / "out")
        if layout.out_dir == inbox or any(folder in (layout.done, layout.failed, layout.state)
                                          for folder in (layout.out_dir, *layout.out_dir.parents)):
            raise InputError(f"{layout.out_dir}: the output folder cannot be the inbox itself or "
                             "inside its done/, failed/ or .vidscale/ folders; choose another --out-dir")
        try:
            layout.fds["inbox"] = _own_folder(inbox, parents=True)
            for area in ("state", "processing", "done", "failed"):
                layout.fds[area] = _own_folder(layout.path(area))
            _refuse_link(layout.out_dir)  # before anything is written there
            check_writable(layout.out_dir)
            layout.fds["out"] = _own_folder(layout.out_dir, parents=True)
        except BaseException:
            layout.close()
            raise
        return layout

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def __enter__(self) -> "InboxLayout":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- where things are ------------------------------------------------------------------

    def path(self, area: str) -> Path:
        """The path of a held folder (``"inbox"``, ``"state"``, ``"processing"``, ``"done"``,
        ``"failed"``, ``"out"``)."""
        return {"inbox": self.inbox, "state": self.state, "processing": self.processing,
                "done": self.done, "failed": self.failed, "out": self.out_dir}[area]

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

    def replaced(self) -> list[str]:
        """The held folders whose path no longer leads to the folder held since the start (renamed
        away, or swapped for a symlink). The watcher goes on writing in the held folders; outputs,
        which the engines write by path, must not be written through the new one."""
        changed = []
        for area, fd in self.fds.items():
            try:
                now = os.lstat(self.path(area))
            except OSError:
                changed.append(area)
                continue
            held = os.fstat(fd)
            if not stat.S_ISDIR(now.st_mode) or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                changed.append(area)
        return changed

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
        return not any(folder in (self.done, self.failed, self.state, self.out_dir)
                       for folder in (path, *path.parents))

    def output_for(self, rel: Path, settings: Settings) -> Path:
        """``out/<same subfolder>/NAME_2x.mov``: the batch command's naming, mirrored."""
        return default_output(rel, settings, self.out_dir / rel.parent)

    # -- reading the inbox -----------------------------------------------------------------

    def scan(self, passed_over: Callable[[Path, str], None]) -> Iterator[tuple[Path, os.stat_result]]:
        """``(relative path, lstat)`` of every entry in the inbox that may be a dropped clip: files,
        and also symlinks, pipes and the like, which are refused when taken (with the reason).

        Hidden entries, folders, symlinked folders (never entered) and the watcher's own folders
        are not listed; an entry or folder that cannot be read is passed to ``passed_over`` with
        the reason, and skipped.
        """
        own = {_identity(os.fstat(fd)) for area, fd in self.fds.items() if area != "inbox"}
        yield from _scan(self.fds["inbox"], Path(), own, passed_over)

    def claimed(self) -> list[Path]:
        """Relative paths of the clips in processing/, in the order they were claimed (the claiming
        rename set their inode change time; nothing else changes them while they are there)."""
        found = _scan(self.fds["processing"], Path(), set(), lambda _rel, _why: None)
        return [rel for _ctime, rel in sorted((st.st_ctime_ns, rel) for rel, st in found)]

    def entry(self, area: str, rel: Path) -> os.stat_result | None:
        """``lstat`` of ``rel`` in a held folder; None when it cannot be reached there any more
        (gone, or a folder on its way replaced by a symlink)."""
        try:
            with self.folder(area, rel.parent) as fd:
                return os.stat(rel.name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return None

    def link_target(self, area: str, rel: Path) -> tuple[str, os.stat_result | None]:
        """Where symlink ``rel`` points ("?" when it cannot be read), and ``stat`` of what it leads
        to (None: nothing readable). Only the link is read, never the file it leads to."""
        try:
            with self.folder(area, rel.parent) as fd:
                target = os.readlink(rel.name, dir_fd=fd)
                try:
                    return target, os.stat(rel.name, dir_fd=fd)
                except OSError:
                    return target, None
        except OSError:
            return "?", None

    def folder_settings(self, rel: Path, base: Settings, base_label: str) -> FolderSettings:
        """``base`` with every ``vidscale.toml`` from the inbox down to ``rel``'s folder layered on."""
        settings, sources = base, [base_label]
        folder = Path()
        for part in ("", *rel.parent.parts):
            folder = folder / part
            try:
                text = self._settings_text(folder)
            except FileNotFoundError:
                break  # the folder is gone: no settings further down either
            if text is not None:
                label = str(folder / SETTINGS_FILE)
                settings = parse_folder_settings(text, label, settings)
                sources.append(label)
        return FolderSettings(settings, tuple(sources))

    def _settings_text(self, folder: Path) -> str | None:
        """The text of ``folder/vidscale.toml`` (None: there is none); refused unread when it is a
        symlink, not a regular file, or bigger than ``SETTINGS_LIMIT``."""
        label = folder / SETTINGS_FILE
        try:
            with self.folder("inbox", folder) as fd:
                try:
                    handle = os.open(SETTINGS_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                                     dir_fd=fd)
                except FileNotFoundError:
                    return None
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SettingsError(f"{label}: cannot read the folder's settings ({_why(exc)}); "
                                "make it a plain file in a plain folder") from None
        with os.fdopen(handle, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SettingsError(f"{label}: is not a plain file; remove it or make it one")
            data = stream.read(SETTINGS_LIMIT + 1) if info.st_size <= SETTINGS_LIMIT else b""
        if info.st_size > SETTINGS_LIMIT or len(data) > SETTINGS_LIMIT:  # or it grew meanwhile
            raise SettingsError(f"{label}: is {max(info.st_size, len(data))} bytes, more than a folder's "
                                f"settings may be ({SETTINGS_LIMIT // 1024} KiB); it was not read: shorten it")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SettingsError(f"{label}: is not UTF-8 text ({exc.reason}); save it as UTF-8") from None

    # -- changing things -------------------------------------------------------------------

    @contextmanager
    def folder(self, area: str, rel: Path, *, create: bool = False) -> Iterator[int]:
        """An fd of subfolder ``rel`` of a held folder, reached one name at a time without following
        a symlink (made when ``create``); closed on the way out. A symlink on the way raises
        ``OSError`` (ELOOP or ENOTDIR)."""
        fd = _walk(self.fds[area], rel, create=create)
        try:
            yield fd
        finally:
            if fd != self.fds[area]:
                os.close(fd)

    def move(self, area: str, rel: Path, to: str, taken: Callable[[Path], bool] = lambda _rel: False) -> Path:
        """Rename ``area/rel`` to ``to/rel``, or, if that name exists or ``taken`` says so, to the
        first free ``NAME (n)`` beside it; returns the new relative path. Raises
        ``FileNotFoundError`` when the source is gone (another watcher took it)."""
        with self.folder(area, rel.parent) as source, self.folder(to, rel.parent, create=True) as target:
            candidate, number = rel, 1
            while _exists(target, candidate.name) or taken(candidate):
                number += 1
                candidate = rel.with_name(f"{Path(rel.name).stem} ({number}){Path(rel.name).suffix}")
            os.rename(rel.name, candidate.name, src_dir_fd=source, dst_dir_fd=target)
        if area == "processing":
            self._prune(rel.parent)
        return candidate

    def _prune(self, rel: Path) -> None:
        """Remove processing/``rel`` and its parents (not processing/ itself) while they are empty."""
        while rel.parts:
            try:
                with self.folder("processing", rel.parent) as fd:
                    os.rmdir(rel.name, dir_fd=fd)
            except OSError:
                return
            rel = rel.parent

    def output_folder(self, rel: Path) -> Path:
        """Make ``out/<rel's subfolder>`` inside the held output folder (no symlink followed) and
        return its path, for the engine, which writes by path: refused (:class:`OutputError`) when
        the output folder's path no longer leads to the held folder."""
        if "out" in self.replaced():
            raise OutputError(f"{self.out_dir}: is not the output folder the watcher started with any "
                              "more (renamed, or replaced by a symlink); nothing is written through it: "
                              "put the folder back and restart the watcher, then drop the clip in again")
        try:
            with self.folder("out", rel.parent, create=True):
                pass
        except OSError as exc:
            raise OutputError(f"{self.out_dir / rel.parent}: cannot create the output folder ({_why(exc)}); "
                              "make it writable, then move the clip back into the inbox") from None
        return self.out_dir / rel.parent

    @contextmanager
    def locked(self, rel: Path, *, follow_symlinks: bool = False) -> Iterator[bool]:
        """Hold an exclusive lock on claimed clip ``rel`` while its job runs; False if another
        watcher has it.

        A ``flock`` belongs to the process: a watcher killed with SIGKILL drops it, so its clip is
        resumed by the next watcher that looks, while a live watcher's clip is never run twice.
        """
        fd = self._open_locked(rel, follow_symlinks)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def _open_locked(self, rel: Path, follow: bool) -> int | None:
        """An fd of the claimed clip holding its lock, or None. The name is checked again after
        locking, because the owner may have moved the clip on (to done/) and released it."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
        try:
            with self.folder("processing", rel.parent) as folder:
                fd = os.open(rel.name, flags, dir_fd=folder)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held = os.fstat(fd)
                    if stat.S_ISREG(held.st_mode) and \
                            _identity(os.stat(rel.name, dir_fd=folder, follow_symlinks=follow)) == _identity(held):
                        return fd
                except OSError:
                    pass
                os.close(fd)
        except OSError:
            pass
        return None


def _own_folder(path: Path, *, parents: bool = False) -> int:
    """Make ``path`` if missing and open it; exit 2, naming it, when it is a symlink or a file."""
    try:
        path.mkdir(parents=parents)
    except FileExistsError:
        pass  # a folder, or a link or file that _refuse_link names
    except OSError as exc:
        raise InputError(f"{path}: cannot make the watcher's folder ({_why(exc)}); give a folder "
                         "vidscale can write in") from None
    _refuse_link(path)
    try:
        return os.open(path, FOLDER)
    except OSError as exc:
        raise InputError(f"{path}: cannot open the watcher's folder ({_why(exc)}); give a folder vidscale "
                         "can read and write") from None


def _refuse_link(path: Path) -> None:
    """Exit 2 when ``path`` is a symlink or a file where the watcher keeps a folder."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise InputError(f"{path}: is a symbolic link; the watcher writes only in real folders (a link "
                         f"could lead its files anywhere): remove the link, then start again")
    if not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a file, where the watcher keeps a folder; move it away, then start again")


def _walk(root: int, rel: Path, *, create: bool) -> int:
    """An fd of ``rel`` under open folder ``root`` (``root`` itself for ``.``), one name at a time,
    never following a symlink."""
    fd = root
    try:
        for part in rel.parts:
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
            following = os.open(part, FOLDER, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = following
    except BaseException:
        if fd != root:
            os.close(fd)
        raise
    return fd


def _scan(root: int, rel: Path, skip: set[tuple[int, int]],
          passed_over: Callable[[Path, str], None]) -> Iterator[tuple[Path, os.stat_result]]:
    """Entries under ``rel`` of open folder ``root``, depth first in name order (see ``scan``)."""
    try:
        with _opened(root, rel) as fd:
            names = sorted(entry.name for entry in os.scandir(fd) if not entry.name.startswith("."))
            entries = [(name, info) for name in names if (info := _lstat(fd, rel / name, passed_over))]
    except FileNotFoundError:
        return
    except OSError as exc:
        passed_over(rel, f"cannot read this folder ({_why(exc)}); its clips are not taken")
        return
    for name, info in entries:
        if stat.S_ISDIR(info.st_mode):
            if _identity(info) not in skip:
                yield from _scan(root, rel / name, skip, passed_over)
        elif _candidate_name(name):
            yield rel / name, info


def _lstat(folder: int, rel: Path, passed_over: Callable[[Path, str], None]) -> os.stat_result | None:
    try:
        return os.stat(rel.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None  # gone meanwhile: taken by another watcher, renamed
    except OSError as exc:
        passed_over(rel, f"cannot read it ({_why(exc)})")
        return None


@contextmanager
def _opened(root: int, rel: Path) -> Iterator[int]:
    fd = _walk(root, rel, create=False)
    try:
        yield fd
    finally:
        if fd != root:
            os.close(fd)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _candidate_name(name: str) -> bool:
    return (not name.startswith(".") and name != SETTINGS_FILE
            and not name.lower().endswith(IN_PROGRESS_SUFFIXES))


def _why(exc: OSError) -> str:
    """An OSError's reason in words; a symlink met where a folder must be says so."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink (or a file) on the way
        return "a symbolic link or a file is in the way"
    return exc.strerror or str(exc)


def kind_of(info: os.stat_result) -> str:
    """What a non-file entry is, in words: "a named pipe", "a socket", "a device", ..."""
    mode = info.st_mode
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "a file" if stat.S_ISREG(mode) else "not a file"
