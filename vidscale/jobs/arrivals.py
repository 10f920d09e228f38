"""Which files dropped into a watch folder are complete, and in what order they arrived.

Copying a clip into the folder takes time, and nothing on a plain or network filesystem says when
the writer is done. The rule here: a file is complete when its size and modification time have
stayed the same for ``settle`` seconds *of our own observations*. The file's mtime is only ever
compared with itself, never with this machine's clock, because a network share's clock may differ.

Arrival order is the order files were first seen. File events (when the caller has them) give an
exact order even for files that arrive while a long job keeps the watcher from scanning; files
without an event (there before the watcher started, or missed) are ordered by their mtime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping


@dataclass
class Sighting:
    """What was last seen of one file, and since when it has looked like that."""

    scan: int  # number of the scan that first saw it
    first_mtime_ns: int
    size: int
    mtime_ns: int
    since: float  # monotonic seconds when this size and mtime were first seen
    event: int | None = None  # number of its creation/move-in event, when one was seen
    held: bool = False  # could not be taken as it is; tried again once it changes

    def arrival(self, name: str) -> tuple:
        """Sort key: first seen earlier wins; within one scan, files without an event (they were
        there before) by mtime, then files with an event, in event order."""
        if self.event is None:
            return (self.scan, 0, self.first_mtime_ns, name)
        return (self.scan, 1, self.event, name)


class ArrivalQueue:
    """Files in the inbox in arrival order, with how long each has stayed unchanged."""

    def __init__(self, settle_seconds: float):
        self.settle_seconds = settle_seconds
        self._files: dict[Path, Sighting] = {}
        self._scans = 0

    def update(self, found: Iterable[tuple[Path, os.stat_result]], now: float,
               events: Mapping[Path, int] | None = None) -> list[Path]:
        """Record one scan (and the arrival events noted since the last one): new files join
        (returned, in arrival order), changed ones settle again, vanished ones leave.

        An event may be handled a moment after the scan that first sees its file; it still
        counts, as long as it comes before the file is taken.
        """
        self._scans += 1
        current = dict(found)
        for rel in [rel for rel in self._files if rel not in current]:
            del self._files[rel]
        new = [rel for rel in current if rel not in self._files]
        for rel in new:
            stat = current[rel]
            self._files[rel] = Sighting(self._scans, stat.st_mtime_ns, stat.st_size, stat.st_mtime_ns, now)
        for rel, stat in current.items():
            self._observe(self._files[rel], stat, now, (events or {}).get(rel))
        return sorted(new, key=self._key)

    def _key(self, rel: Path) -> tuple:
        return self._files[rel].arrival(str(rel))

    def _observe(self, sighting: Sighting, stat: os.stat_result, now: float, event: int | None) -> None:
        if sighting.event is None:
            sighting.event = event
        if (stat.st_size, stat.st_mtime_ns) != (sighting.size, sighting.mtime_ns):
            sighting.size, sighting.mtime_ns = stat.st_size, stat.st_mtime_ns
            sighting.since, sighting.held = now, False

    def ready(self, now: float) -> list[Path]:
        """Files unchanged for ``settle`` seconds, earliest arrival first."""
        settled = [rel for rel, s in self._files.items()
                   if not s.held and now - s.since >= self.settle_seconds]
        return sorted(settled, key=self._key)

    def queued(self) -> list[Path]:
        """Every file waiting (settled or not, held ones too), earliest arrival first."""
        return sorted(self._files, key=self._key)
    def due_in(self, now: float) -> float | None:
        """Seconds until the next file could be settled; None when nothing is settling."""
        waits = [s.since + self.settle_seconds - now for s in self._files.values() if not s.held]
        return max(0.0, min(waits)) if waits else None

    def hold(self, rel: Path) -> None:
        """Leave ``rel`` alone until it changes (it could not be taken as it is)."""
        if rel in self._files:
            self._files[rel].held = True

    def forget(self, rel: Path) -> None:
        """``rel`` was taken: it is no longer waiting."""
        self._files.pop(rel, None)

    def waiting(self, among: set[Path]) -> bool:
        """True while any of ``among`` is still in the folder and not held."""
        return any(rel in among and not s.held for rel, s in self._files.items())
