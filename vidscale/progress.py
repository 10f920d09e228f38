"""Progress reporting: the library reports, the caller decides how (or whether) to draw it.

Library code takes a :class:`Progress` and opens bars with :meth:`Progress.bar`; the CLI passes a
drawing one (tqdm with ETA on stderr) or a quiet one. Nothing here changes what is computed.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO, Iterator, Protocol

from tqdm import tqdm


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
        with tqdm(
            total=total, desc=desc, unit=unit, file=self.stream, disable=not self.enabled,
            position=self._depth, leave=self._depth == 0, dynamic_ncols=True,
        ) as bar:
            self._depth += 1
            try:
                yield bar
            finally:
                self._depth -= 1
