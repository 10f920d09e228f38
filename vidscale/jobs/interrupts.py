"""Stopping a job on request: the first SIGINT/SIGTERM stops it after the current step, a second at once.

One mechanism for every command that runs jobs (``upscale``, ``generate``, ``timeline``, ``watch``).
The first signal only sets a flag and says so at once: the running job checkpoints its chunk
after the current denoising step and raises :class:`Interrupted`. A second signal raises
``KeyboardInterrupt`` at once; outputs are atomic and the job store keeps every finished chunk
and the last step checkpoint (written every ``jobs.checkpoint_seconds``), so that is safe too.
A command then ends with exit status 130 (128 + SIGINT, the shell's convention) and a line naming
what was kept and the command that resumes; the watcher ends its loop instead (its clip stays
claimed and resumes first on the next start).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import Interrupted
from ..progress import Log

FIRST = "stopping after the current step (it is saved); Ctrl-C again to stop now"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interruptible(resume_command: str, say: Log, *, unit: str = "chunk") -> Iterator[Callable[[], bool]]:
    """Yield ``should_stop`` for the job; a stop inside becomes :class:`Interrupted` (exit 130)
    whose message ends with the command that resumes. ``unit``: what the job saves ("chunk" for
    an upscale, "stage" for a generation)."""
    stop = threading.Event()
    hint = f"run the same command again to resume: {resume_command}"
    with stop_on_signals(stop, say):
        try:
            yield stop.is_set
        except Interrupted as error:
            raise Interrupted(f"{error}; {hint}") from None
        except KeyboardInterrupt:
            raise Interrupted(f"stopped at once; the job keeps its finished {unit}s and the running {unit}'s "
                              f"last step checkpoint; {hint}") from None


@contextmanager
def stop_on_signals(stop: threading.Event, say: Log, *, wake: threading.Event | None = None) -> Iterator[None]:
    """While inside, the first SIGINT/SIGTERM sets ``stop`` (and ``wake``) and says :data:`FIRST`;
    a second raises ``KeyboardInterrupt`` at once.

    Signal handlers belong to the main thread: elsewhere nothing is installed and the caller's
    ``stop`` is the way. The previous handlers are restored on the way out. ``say`` runs inside
    the handler, so it should be a plain write (the handler may interrupt a print).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # asked twice: stop now; outputs are atomic, sources safe
        stop.set()
        if wake is not None:
            wake.set()
        say(FIRST)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["FIRST", "STOP_SIGNALS", "interruptible", "stop_on_signals"]
