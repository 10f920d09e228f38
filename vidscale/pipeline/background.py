"""Run a job's reading and writing beside its denoising, with bounded memory.

A chunk's life is read -> VAE-encode -> denoise -> VAE-decode -> encode and write. Only the
denoising needs the UNet; the rest is PyAV, numpy and the VAE, which release the GIL. Two
background threads therefore prepare chunk k+1 (:class:`Prefetch`) and decode and write chunk k-1
(:class:`Sink`) while chunk k denoises. Each holds at most one finished item in a queue of size 1,
so memory grows by a fixed number of chunks, never with the clip's length.

Errors: an exception in a thread is re-raised in the caller's thread at its next hand-over (or
when the block ends), with its own traceback; leaving the block for any reason (an error, an
interrupt) stops the thread and waits for it, so nothing keeps writing into a file being removed.
``enabled=False`` runs the same calls inline, in order (``jobs.overlap_io = false``).
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_POLL_SECONDS = 0.05  # how often a blocked hand-over looks at the other side's state
_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class _Thread(ABC):
    """A daemon thread running the subclass's ``_main``, a queue of size 1 and a cancel flag."""

    def __init__(self, name: str):
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _put(self, item: object, *, alive: Callable[[], bool]) -> bool:
        """Hand ``item`` over; False when the other side is gone or the work was cancelled."""
        while alive() and not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _stop(self) -> None:
        self.cancelled.set()
        self.thread.join()

    @abstractmethod
    def _main(self) -> None:
        """The thread's work (each kind of thread has its own)."""


class Prefetch(_Thread, Generic[T]):
    """Iterate ``items`` in a background thread, at most one item ahead of the consumer."""

    def __init__(self, items: Iterable[T], *, enabled: bool = True, name: str = "vidscale-read"):
        super().__init__(name)
        self.items = items
        self.enabled = enabled

    def __enter__(self) -> Iterator[T]:
        if not self.enabled:
            return iter(self.items)
        self.thread.start()
        return self._consume()

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self._stop()

    def _main(self) -> None:
        try:
            for item in self.items:
                if not self._put(item, alive=lambda: True):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(_Failed(error), alive=lambda: True)
            return
        self._put(_DONE, alive=lambda: True)

    def _consume(self) -> Iterator[T]:
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item


class Sink(_Thread, Generic[T]):
    """Call ``consume(item)`` in a background thread for every :meth:`put` item, in order.

    Leaving the block normally waits until every item is consumed and raises the thread's error
    if it had one; leaving it by an exception cancels what is still queued.
    """

    def __init__(self, consume: Callable[[T], None], *, enabled: bool = True, name: str = "vidscale-write"):
        super().__init__(name)
        self.consume = consume
        self.enabled = enabled
        self.error: BaseException | None = None

    def __enter__(self) -> "Sink[T]":
        if self.enabled:
            self.thread.start()
        return self

    def put(self, item: T) -> None:
        """Queue ``item`` (waits while the thread is one item behind); raises the thread's error."""
        if not self.enabled:
            self.consume(item)
            return
        self._put(item, alive=lambda: self.error is None and self.thread.is_alive())
        self._raise()

    def __exit__(self, kind: type | None, *exc_info: object) -> None:
        if not self.enabled:
            return
        if kind is None:
            self._put(_DONE, alive=lambda: self.error is None and self.thread.is_alive())
            self.thread.join()
            self._raise()
        else:
            self._stop()

    def _main(self) -> None:
        while not self.cancelled.is_set():
            try:
                item = self.queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            try:
                self.consume(item)
            except BaseException as error:  # noqa: BLE001 - raised in the producer's thread
                self.error = error
                return

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


__all__ = ["Prefetch", "Sink"]
