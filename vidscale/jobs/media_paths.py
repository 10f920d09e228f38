"""Where an edit's media is on this machine: its recorded path, else found under ``--media``.

Edits travel: an EDL or XML exported on an editor's workstation names media by that machine's
paths (``S:\\path\\to\\take_1.mov``, ``file://localhost/D%3a/media/shot.mov``), which exist nowhere
on a render box. A recorded path is read as the machine that wrote it meant it (URL-decoded,
Windows drive letters and separators understood); when it does not exist here, the file is looked
up by its name under the ``--media`` folders, and a clip whose edit names no file (an EDL without
``FROM CLIP`` comments) by its clip name, then its reel name (a file named so, with or without
its suffix). Two files that match are an error naming both: guessing would relink a cut to the
wrong take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from urllib.parse import unquote, urlparse

from ..errors import InputError
from .batch import VIDEO_SUFFIXES, files_under

_DRIVE = re.compile(r"^/?[A-Za-z]:[\\/]")


def recorded_path(url: str) -> PurePath:
    """The path an edit names, as the machine that wrote it meant it.

    ``file://`` URLs are decoded (``%3a`` is ``:``); ``D:/...``, ``S:\\...`` and ``\\\\server\\...``
    are Windows paths, whatever machine reads them.
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
        if parsed.netloc not in ("", "localhost"):
            return PureWindowsPath(f"//{parsed.netloc}{path}")  # a UNC share: //server/share/...
        return PureWindowsPath(path.lstrip("/")) if _DRIVE.match(path) else PurePosixPath(path)
    if _DRIVE.match(url) or url.startswith("\\\\") or "\\" in url:
        return PureWindowsPath(url)
    return PurePosixPath(url)


def local_path(url: str, folder: Path) -> Path | None:
    """The recorded path as a path of this machine (relative ones from the edit's folder), or
    None when it is another system's (a Windows path read here)."""
    path = recorded_path(url)
    if isinstance(path, PureWindowsPath):
        return None
    return (folder / Path(path)).resolve()  # an absolute path stays itself


@dataclass(frozen=True)
class Found:
    """A media file and how it was found (the report says it)."""

    path: Path
    how: str  # "recorded path" | "file name" | "clip name" | "reel name"
    wanted: str = ""  # the name it was found by


@dataclass
class MediaFinder:
    """Looks media up by name under the ``--media`` folders (each walked once, on first use)."""

    folders: list[Path]
    _by_name: dict[str, list[Path]] | None = field(default=None, repr=False)

    def by_name(self, name: str) -> list[Path]:
        """Files under the folders named ``name`` (case-insensitive: Windows names are)."""
        if self._by_name is None:
            self._by_name = {}
            for folder in self.folders:
                for path in files_under(folder):
                    self._by_name.setdefault(path.name.lower(), []).append(path)
        return sorted(set(self._by_name.get(name.lower(), [])))

    def by_title(self, title: str) -> list[Path]:
        """Files named ``title``, or videos named ``title`` plus a suffix (``shot010`` is
        ``shot010.mov``)."""
        exact = self.by_name(title)
        if exact:
            return exact
        return sorted({path for suffix in VIDEO_SUFFIXES for path in self.by_name(title + suffix)})

    def find(self, url: str | None, titles: list[tuple[str, str]], edit_folder: Path) -> Found | None:
        """The media a clip uses: its recorded path if it exists here, else by the path's file
        name under the folders, else (no path recorded) by each ``(how, title)`` in turn."""
        if url:
            here = local_path(url, edit_folder)
            if here is not None and here.exists():
                return Found(here, "recorded path")
            return self._one(self.by_name(recorded_path(url).name), "file name", recorded_path(url).name)
        for how, title in titles:
            found = self._one(self.by_title(title), how, title) if title else None
            if found is not None:
                return found
        return None

    def _one(self, candidates: list[Path], how: str, wanted: str) -> Found | None:
        if len(candidates) > 1:
            raise InputError(f"{wanted!r}: {len(candidates)} files under --media match its {how}: "
                             f"{', '.join(map(str, candidates))}; keep one of them in the --media "
                             "folders, or give the folder that holds the right one")
        return Found(candidates[0], how, wanted) if candidates else None

    def missing(self, url: str | None, titles: list[tuple[str, str]]) -> str:
        """Why nothing was found, and the fix."""
        if url:
            wanted, what = f"named {recorded_path(url).name!r}", "offline: not on this machine"
        else:
            names = " or ".join(f"{how} {title!r}" for how, title in titles if title)
            wanted = f"matching its {names or 'name'}"
            what = "offline: the edit names no media file for it"
        if not self.folders:
            return f"{what}; pass --media DIR, the folder that holds a file {wanted}"
        return (f"{what}, and no file {wanted} is under {', '.join(map(str, self.folders))}; "
                "pass --media DIR, the folder that holds it")
