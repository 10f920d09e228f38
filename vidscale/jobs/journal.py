"""What a watch folder tells the outside: ``log.jsonl`` (history) and ``status.json`` (now).

``log.jsonl`` is appended one JSON object per line (``{"time", "t", "event", "file", ...}``), one
``write`` per line so lines of two watchers never interleave. ``status.json`` is rewritten
atomically (temporary name, rename) whenever the state changes, so a reader (a dashboard, a
script, ``cat``) never sees a torn file; progress updates are throttled to a few per second.

Both are a record, not the truth: the truth is where the files are (inbox, processing/, done/,
failed/). A write that fails (a full disk) is reported once and does not stop the watcher,
because the clips themselves are still safe.

Both are written in the state folder the watcher holds open, never through a symlink (a link
planted as ``log.jsonl`` is not followed: the append fails and says so). File names are written
as :func:`~vidscale.progress.shown` makes them: anyone may drop a file named with bytes that are not UTF-8, or with
a newline that would forge a line of the log.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..atomic import write_json
from ..progress import Bar, Log, Progress

PROGRESS_INTERVAL = 0.5  # seconds between status.json rewrites for progress alone
RECENT = 20  # finished clips listed in status.json (the log keeps them all)


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


@dataclass
class RunningJob:
    """The clip being upscaled and how far each stage (bar) has come."""

    file: str
    output: str
    started: str
    settings: list[str]
    progress: dict[str, list[int | None]] = field(default_factory=dict)  # stage -> [done, total]


@dataclass
class WatchStatus:
    """The content of ``status.json``."""

    pid: int
    inbox: str
    out_dir: str
    state: str = "starting"  # starting | watching | stopped
    queued: list[str] = field(default_factory=list)
    running: RunningJob | None = None
    done: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    failed: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["done"], data["failed"] = list(self.done), list(self.failed)
        return data


class Journal:
    """Appends events to ``log.jsonl`` and keeps ``status.json`` current."""

    def __init__(self, log_file: Path, status_file: Path, status: WatchStatus, warn: Log,
                 folder_fd: int | None = None):
        self.log_file = log_file
        self.status_file = status_file
        self.folder_fd = folder_fd  # the held state folder that both files are in (None: by path)
        self.status = status
        self._warn = warn
        self._warned: set[str] = set()
        self._written: dict[str, Any] | None = None
        self._last_progress = 0.0

    def event(self, kind: str, file: str | None = None, **fields: Any) -> None:
        """Append one event line: ``{"time", "t", "event": kind, "file": file, **fields}``."""
        record = {"time": now_iso(), "t": time.time(), "event": kind, "file": file, **fields}
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
        try:
            fd = os.open(self.log_file.name if self.folder_fd is not None else self.log_file,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=self.folder_fd)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            self._warn_once("log", f"warning: cannot append to {self.log_file} ({exc.strerror})")

    def save(self) -> None:
        """Rewrite ``status.json`` if anything in it changed."""
        data = self.status.to_dict()
        if data == self._written:
            return
        try:
            write_json(self.status_file, {"updated": now_iso(), **data}, folder_fd=self.folder_fd)
        except OSError as exc:
            self._warn_once("status", f"warning: cannot write {self.status_file} ({exc})")
            return
        self._written = data

    def progress(self, stage: str, done: int, total: int | None) -> None:
        """Record a stage's progress; written at most every PROGRESS_INTERVAL seconds."""
        running = self.status.running
        if running is None:
            return
        running.progress[stage] = [done, total]
        moment = time.monotonic()
        if moment - self._last_progress >= PROGRESS_INTERVAL or done == total:
            self._last_progress = moment
            self.save()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._warn(message)


class _ReportingBar:
    """A progress bar that also tells the journal how far it is."""

    def __init__(self, bar: Bar, stage: str, total: int | None, journal: Journal):
        self._bar, self._stage, self._total, self._journal = bar, stage, total, journal
        self._done = 0

    def update(self, n: int = 1) -> object:
        self._done += n
        self._journal.progress(self._stage, self._done, self._total)
        return self._bar.update(n)

    def set_postfix_str(self, s: str) -> object:
        return self._bar.set_postfix_str(s)


class ReportingProgress(Progress):
    """Draws bars like ``inner`` (or not, when it is disabled) and reports them to status.json.

    The library reports progress through :class:`Progress`; this is the watch folder's way of
    listening without the engines knowing about it.
    """

    def __init__(self, inner: Progress, journal: Journal):
        super().__init__(enabled=inner.enabled, stream=inner.stream)
        self._journal = journal

    @contextmanager
    def bar(self, desc: str, total: int | None, unit: str = "it") -> Iterator[Bar]:
        with super().bar(desc, total, unit) as bar:
            self._journal.progress(desc, 0, total)
            yield _ReportingBar(bar, desc, total, self._journal)
