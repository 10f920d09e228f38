"""Ctrl-C during ``vidscale upscale``: stop soon and say how to resume, or stop now.

The first SIGINT only sets a flag (and says so at once): the running job checkpoints its chunk
after the current denoising step and raises :class:`Interrupted`. A second SIGINT raises
``KeyboardInterrupt`` at once; outputs are atomic and the job store keeps every finished chunk
and the last step checkpoint (written every ``jobs.checkpoint_seconds``), so that is safe too.
Either way the command ends with exit status 130 (128 + SIGINT, the shell's convention) and a
line naming what was kept and the command that resumes.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..errors import Interrupted

FIRST = "stopping after the current step (it is saved); Ctrl-C again to stop now"


@contextmanager
def interruptible(resume_command: str, say: Callable[[str], Any]) -> Iterator[Callable[[], bool]]:
    """Yield ``should_stop`` for the job; SIGINT inside becomes :class:`Interrupted` (exit 130).

    Signal handlers belong to the main thread: elsewhere nothing is installed, and ``should_stop``
    stays False. The previous handler is restored on the way out.
    """
    stop = threading.Event()
    hint = f"run the same command again to resume: {resume_command}"
    with _first_sigint_sets(stop, say):
        try:
            yield stop.is_set
        except Interrupted as error:
            raise Interrupted(f"{error}; {hint}") from None
        except KeyboardInterrupt:
            raise Interrupted("stopped at once; the job keeps its finished chunks and the running chunk's "
                              f"last step checkpoint; {hint}") from None


@contextmanager
def _first_sigint_sets(stop: threading.Event, say: Callable[[str], Any]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(_signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        say(FIRST)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


__all__ = ["interruptible"]
