"""Progress reporting: the library reports, the caller decides how (or whether) to draw it.

Library code takes a :class:`Progress` and opens bars with :meth:`Progress.bar`; the CLI passes a
drawing one or a quiet one. On a terminal the bars are tqdm's (redrawn in place, with ETA); when
the stream is not a terminal (a log file, CI, ``2>job.log``) carriage-return redraws would pile up
as one unreadable line, so each bar writes whole lines instead: when it starts (outer bars only),
at every ``LINE_PERCENT`` %, at least every ``LINE_SECONDS`` while it runs, and when it ends, with
the ETA. Nested bars (the steps of a chunk) write them too: a GPU chunk can take ten minutes, and
whoever tails the log must see it move. Nothing here changes what is computed.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator, Protocol

from tqdm import tqdm

Log = Callable[[str], Any]  # where a driver's status lines go (the CLI: stderr; tests: a list)
LINE_PERCENT = 10  # without a terminal: one line per this much progress (and at start and end)
LINE_SECONDS = 30.0  # ... and one at least this often while a bar moves, however slowly


class Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def set_postfix_str(self, s: str) -> object: ...


class Progress:
    """Opens nested progress bars (stages, chunks, steps); ``enabled=False`` draws nothing."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._depth = 0

    @contextmanager
    def bar(self, desc: str, total: int | None, unit: str = "it") -> Iterator[Bar]:
        """A bar for ``total`` units of work; closed (and removed if nested) when the block ends."""
        if self.enabled and not _is_terminal(self.stream):
            lines = LineBar(desc, total, unit, self.stream, indent=self._depth)
            with self._nested():
                lines.start()
                yield lines
                lines.finish()
            return
        with tqdm(
            total=total, desc=desc, unit=unit, file=self.stream, disable=not self.enabled,
            position=self._depth, leave=self._depth == 0, dynamic_ncols=True,
        ) as bar:
            with self._nested():
                yield bar

    @contextmanager
    def _nested(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LineBar:
    """A bar for logs: whole lines at the start (outer bars), at every ``LINE_PERCENT`` %, when
    ``LINE_SECONDS`` passed since the last line, and at the end; nested bars are indented."""

    def __init__(self, desc: str, total: int | None, unit: str, stream: IO[str], indent: int = 0,
                 clock: Callable[[], float] = time.perf_counter):
        self.desc, self.total, self.unit, self.stream = desc, total, unit, stream
        self.indent = "  " * indent
        self.done = 0
        self.postfix = ""
        self._clock = clock
        self._started = self._last_line = clock()
        self._next_percent = LINE_PERCENT

    def start(self) -> None:
        if not self.indent:
            of = f"/{self.total}" if self.total else ""
            self._write(f"{self.desc}: 0{of} {self.unit}")

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.total and self.done >= self.total:
            return  # the end line says it
        percent = 100 * self.done // self.total if self.total else 0
        slow = self._clock() - self._last_line >= LINE_SECONDS
        if self.total and percent >= self._next_percent:
            self._next_percent = (percent // LINE_PERCENT + 1) * LINE_PERCENT
        elif not slow:
            return
        count = f"{self.done}/{self.total} {self.unit} ({percent}%)" if self.total else f"{self.done} {self.unit}"
        self._write(f"{self.desc}: {count}{self._eta()}")

    def _eta(self) -> str:
        """``, ETA 2 min 5 s``: the rest at the pace so far (nothing before a unit is done)."""
        if not self.total or not self.done:
            return ""
        elapsed = self._clock() - self._started
        return f", ETA {duration(elapsed * (self.total - self.done) / self.done)}"

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def finish(self) -> None:
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        elapsed = self._clock() - self._started
        postfix = f", {self.postfix}" if self.postfix else ""
        self._write(f"{self.desc}: {count} {self.unit} in {elapsed:.1f} s{postfix}")

    def _write(self, line: str) -> None:
        self.stream.write(f"{self.indent}{line}\n")
        self.stream.flush()
        self._last_line = self._clock()


def shown(name: object) -> str:
    """A file name (or a message naming one) as status lines, logs and pages show it: bytes that are
    not UTF-8 as ``\\xNN`` and control characters (a newline) escaped, so every name shows and none
    forges a line. Anyone who can drop a file in a watch folder chooses its name."""
    text = os.fsencode(str(name)).decode("utf-8", "backslashreplace")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def duration(seconds: float) -> str:
    """``75`` -> ``1 min 15 s``; ``4000`` -> ``1 h 6 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
