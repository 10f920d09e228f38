"""``vidscale watch INBOX``: a hot folder. Every clip dropped in is upscaled; nothing is ever lost.

The life of a clip (folders: :mod:`vidscale.jobs.inbox`)::

    INBOX/sub/a.mp4 --settled, probes as video--> .vidscale/processing/sub/a.mp4 --job--> done/sub/a.mp4
          |                                                     |           \\--> out/sub/a_2x.mov
          +--settled, not a video---------> failed/sub/a.mp4    +--error--> failed/sub/a.mp4
                                            + a.mp4.error.json                + a.mp4.error.json

Why it is built this way:

* The folder is the state. A clip is always in exactly one place, moved by atomic renames, and
  outputs appear under their final name only when complete (the engines write atomically). So a
  crash or SIGKILL at any instant loses nothing, and a restart knows what to do from the folders
  alone: clips in processing/ are resumed first (the job store continues after the last saved
  step); a claimed clip whose output exists already finished, and only its move to done/ is left.
* File events (watchdog; polling for network shares or when native events cannot start) only
  wake the loop and note arrival order. The loop rescans the folder itself, so a missed event
  delays a clip by at most ``RESCAN_SECONDS`` and never loses it.
* One clip at a time, in arrival order, because one job already fills the GPU.
* SIGINT/SIGTERM only set a flag (and say so at once): a freescale job stops after its current
  step, saved as a step checkpoint; the clip stays in processing/ and the next start resumes it
  from that step. A second signal stops at once (still safe).
* A mistyped INBOX or an output folder that cannot be written is found at the start (exit 2),
  not clip by clip: the watcher creates a missing INBOX only when asked (``create``).
* A clip's error (bad file, bad ``vidscale.toml``, unwritable output, a bug) fails that clip only:
  it goes to failed/ with an error file saying why, and the watcher goes on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from ..atomic import check_writable, make_folder, write_json
from ..errors import InputError, Interrupted, MediaNotFoundError, SettingsError
from ..media import probe
from ..pages import serve_status
from ..progress import Log, Progress
from ..settings import Settings
from .arrivals import ArrivalQueue
from .batch import reason
from .engines import upscale_one
from .interrupts import stop_on_signals
from .inbox import FolderSettings, InboxLayout, move, owned, prune_empty
from .journal import Journal, ReportingProgress, RunningJob, WatchStatus, now_iso
from .models import ModelKeeper

RESCAN_SECONDS = 2.0  # the loop rescans at least this often, whatever the file events say
POLL_SECONDS = 1.0  # interval of watchdog's polling observer


@dataclass(frozen=True)
class WatchRequest:
    """What ``vidscale watch`` was asked to do."""

    inbox: Path
    out_dir: Path | None  # None: INBOX/out
    settings: Settings  # the watcher's preset (+ options); a subfolder's vidscale.toml layers on it
    preset: str | None = None  # its name or file, for logs and error files
    once: bool = False  # process what is there now (waiting for it to settle), then return
    settle_seconds: float = 5.0  # size and mtime unchanged this long = the copy is complete
    poll: bool = False  # poll instead of native file events (network shares)
    status_port: int | None = None  # serve the read-only status page on this port (0: any free)
    status_host: str = "127.0.0.1"  # where it listens: loopback unless asked otherwise
    create: bool = False  # make INBOX if it does not exist (else that is an error: a typo?)


@dataclass
class WatchSummary:
    """What one run of the watcher did."""

    done: int = 0
    failed: int = 0
    interrupted: list[str] = field(default_factory=list)  # stopped mid-job: resumed next start
    exit_code: int = 0  # the worst over this run's clips: 1 a job failed, 2 not a video / bad input


def watch_folder(request: WatchRequest, *, progress: Progress | None = None, log: Log | None = None,
                 stop: threading.Event | None = None) -> WatchSummary:
    """Watch ``request.inbox`` until ``stop`` is set (or SIGINT/SIGTERM, or ``once`` is done).

    ``stop`` lets a library caller end the watcher from another thread; from the main thread,
    SIGINT and SIGTERM set it too.
    """
    say = log or (lambda _line: None)
    check_folders(request)
    layout = InboxLayout.create(request.inbox, request.out_dir)
    for folder in (layout.state, layout.out_dir):  # the output folder is made per clip
        check_writable(folder)
    stop = stop or threading.Event()
    wake = threading.Event()
    events = WakeOnChange(layout, wake)
    with stop_on_signals(stop, _raw_stderr, wake=wake), serving_status(request, layout, say), \
            file_events(layout.inbox, events, poll=request.poll, say=say) as how, ExitStack() as stack:
        watcher = Watcher(request, layout, progress or Progress(enabled=False), say, stop, wake, events)
        if request.settings.cluster.address:  # --cluster: each clip's units on the Ray workers
            from .cluster import Cluster

            watcher.cluster = stack.enter_context(Cluster(request.settings.cluster))
        return watcher.run(how)


def serving_status(request: WatchRequest, layout: InboxLayout, say: Log) -> AbstractContextManager:
    """With ``status_port``, the status page served while inside (:mod:`vidscale.pages.status`)."""
    if request.status_port is None:
        return nullcontext()
    return serve_status(layout.status_file, layout.out_dir, host=request.status_host,
                        port=request.status_port, say=say)
def _raw_stderr(line: str) -> None:
    """A write that is safe inside a signal handler (which may interrupt a print)."""
    with suppress(OSError, ValueError):
        os.write(sys.stderr.fileno(), f"{line}\n".encode())


def check_folders(request: WatchRequest) -> None:
    """Exit 2 at the start for an INBOX that is missing (unless ``create``) or not a folder."""
    inbox = Path(request.inbox)
    if inbox.exists() and not inbox.is_dir():
        raise InputError(f"{inbox}: is a file, not a folder; give the folder to watch")
    if not inbox.exists() and not request.create:
        raise InputError(f"{inbox}: INBOX does not exist; check the spelling, or pass --create "
                         "to make it")


class WakeOnChange(FileSystemEventHandler):
    """Wakes the loop when something changes where clips are dropped, and numbers new arrivals.

    It runs in watchdog's thread; the loop takes the arrival numbers with :meth:`take`.
    """

    def __init__(self, layout: InboxLayout, wake: threading.Event):
        super().__init__()
        self._layout, self._wake = layout, wake
        self._lock = threading.Lock()
        self._arrived: dict[Path, int] = {}
        self._count = 0

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reading a file (our own probe) changes nothing
        paths = [Path(os.fsdecode(p)) for p in (event.src_path, getattr(event, "dest_path", "")) if p]
        if not any(self._layout.is_watched(path) for path in paths):
            return  # our own writes (status, outputs, moves to done/) must not wake us
        arrived = paths[-1]  # a move's destination, else the path itself
        if event.event_type in ("created", "moved") and not event.is_directory \
                and self._layout.is_watched(arrived):
            self._note(arrived)
        self._wake.set()

    def _note(self, path: Path) -> None:
        with self._lock:
            if path not in self._arrived:
                self._count += 1
                self._arrived[path] = self._count

    def take(self) -> dict[Path, int]:
        """Arrival numbers noted since the last call (absolute paths), and forget them."""
        with self._lock:
            arrived, self._arrived = self._arrived, {}
        return arrived


@contextmanager
def file_events(folder: Path, handler: FileSystemEventHandler, *, poll: bool,
                say: Log) -> Iterator[str]:
    """Run a watchdog observer on ``folder`` while inside; yields which kind is running."""
    observer, how = _start_observer(folder, handler, poll, say)
    try:
        yield how
    finally:
        observer.stop()
        observer.join(timeout=5)


def _start_observer(folder: Path, handler: FileSystemEventHandler, poll: bool, say: Log) -> tuple[Any, str]:
    """The native observer unless polling is asked for or the native one cannot start (inotify
    limits, an unsupported filesystem): then the polling observer, which works everywhere."""
    if not poll:
        try:
            return _started(Observer(), folder, handler), "file events"
        except Exception as exc:  # noqa: BLE001 - any back-end failure means: poll instead
            say(f"file events unavailable ({exc}); polling every {POLL_SECONDS:g} s instead")
    return _started(PollingObserver(timeout=POLL_SECONDS), folder, handler), "polling"


def _started(observer: Any, folder: Path, handler: FileSystemEventHandler) -> Any:
    try:
        observer.schedule(handler, str(folder), recursive=True)
        observer.start()
    except BaseException:
        with suppress(Exception):  # the start's own error is the one worth reporting
            observer.stop()
        raise
    return observer


def error_record(rel: Path, error: BaseException, sources: tuple[str, ...],
                 output: Path | None) -> dict[str, Any]:
    """The content of ``failed/NAME.error.json``: what failed, why, when, with which settings."""
    return {"file": str(rel), "time": now_iso(),
            "error": {"type": type(error).__name__, "message": str(error),
                      "exit_code": getattr(error, "exit_code", 1)},
            "settings": list(sources), "output": str(output) if output else None}


class Watcher:
    """One watch folder's loop: resume claimed clips, then take settled ones in arrival order."""

    def __init__(self, request: WatchRequest, layout: InboxLayout, progress: Progress, say: Log,
                 stop: threading.Event, wake: threading.Event, events: WakeOnChange):
        self.request, self.layout, self.say = request, layout, say
        self.stop, self.wake, self.events = stop, wake, events
        self.queue = ArrivalQueue(request.settle_seconds)
        status = WatchStatus(pid=os.getpid(), inbox=str(layout.inbox), out_dir=str(layout.out_dir))
        self.journal = Journal(layout.log_file, layout.status_file, status, say)
        self.progress = ReportingProgress(progress, self.journal)
        self.summary = WatchSummary()
        self.stuck: set[Path] = set()  # claimed clips that could not be moved on: left as they are
        self.models = ModelKeeper()
        self.cluster: Any = None  # a vidscale.jobs.cluster.Cluster that runs the jobs instead
        self.targets: set[Path] = set()  # --once: what was in the inbox at the start

    # -- the loop ---------------------------------------------------------------------------

    def run(self, how: str) -> WatchSummary:
        """Loop until stopped (or, with ``once``, until what was there at the start is handled)."""
        self._begin(how)
        while not self.stop.is_set():
            self.wake.clear()
            if self._step():
                continue
            if self.request.once and not self.queue.waiting(self.targets):
                break
            self.wake.wait(self._timeout())
        self._end()
        return self.summary

    def _begin(self, how: str) -> None:
        self.journal.event("watching", pid=os.getpid(), out_dir=str(self.layout.out_dir),
                           settings=self.base_label, observer=how, once=self.request.once,
                           settle_seconds=self.request.settle_seconds)
        self.say(f"watching {self.layout.inbox} -> {self.layout.out_dir} ({how}, "
                 f"settle {self.request.settle_seconds:g} s, {self.base_label})")
        self.journal.status.state = "watching"
        self._scan()
        self.targets = set(self.queue.queued())

    def _end(self) -> None:
        counts = self.journal.status.counts  # the status file's counts are the one tally
        self.summary.done, self.summary.failed = counts["done"], counts["failed"]
        left = self.summary.interrupted
        if left:
            self.say(f"left in {self.layout.processing} to resume on the next start: {', '.join(left)}")
        self.journal.status.state = "stopped"
        self.journal.event("stopped", done=self.summary.done, failed=self.summary.failed,
                           interrupted=left)
        self.journal.save()
        self.say(f"stopped: {self.summary.done} done, {self.summary.failed} failed")

    def _step(self) -> bool:
        """Do the next piece of work: a claimed clip first, then the earliest settled file."""
        for rel in self.layout.claimed():
            if rel not in self.stuck and self._process(rel, resumed=True):
                return True
        self._scan()
        for rel in self.queue.ready(time.monotonic()):
            if self.stop.is_set():
                return False
            if self._take(rel):
                return True
        return False

    def _scan(self) -> None:
        arrivals = {path.relative_to(self.layout.inbox): number
                    for path, number in self.events.take().items() if self.layout.inbox in path.parents}
        for rel in self.queue.update(self.layout.scan(), time.monotonic(), arrivals):
            self.journal.event("queued", str(rel))
        self.journal.status.queued = [str(rel) for rel in self.queue.queued()]
        self.journal.save()

    def _timeout(self) -> float:
        due = self.queue.due_in(time.monotonic())
        return RESCAN_SECONDS if due is None else min(RESCAN_SECONDS, due + 0.01)

    # -- taking a settled file --------------------------------------------------------------

    @property
    def base_label(self) -> str:
        return f"preset {self.request.preset}" if self.request.preset else "default settings"

    def folder_settings(self, rel: Path) -> FolderSettings:
        return self.layout.folder_settings(rel, self.request.settings, self.base_label)

    def _take(self, rel: Path) -> bool:
        """Probe a settled file where it lies: claim a video, move anything else to failed/."""
        try:
            probe(self.layout.inbox / rel)
        except MediaNotFoundError:
            self.queue.forget(rel)  # gone: another watcher took it, or the user moved it
            return False
        except Exception as error:  # noqa: BLE001 - whatever the reason, it is not a usable video
            self._fail(self.layout.inbox / rel, rel, error, output=None)
            if (self.layout.inbox / rel).exists():
                self.queue.hold(rel)  # could not be moved to failed/: not again until it changes
            else:
                self.queue.forget(rel)
            return True
        claimed = self._claim(rel)
        return claimed is not None and self._process(claimed, resumed=False)

    def _claim(self, rel: Path) -> Path | None:
        """Rename ``rel`` into processing/ under a name that no claimed clip or output uses yet.

        Naming it apart (``a (2).mp4``) when ``a.mp4``'s output exists keeps "an output exists"
        meaning "this claimed clip is finished" (see :meth:`_run`), and never overwrites it.
        """
        try:
            target = move(self.layout.inbox / rel, self.layout.processing / rel, taken=self._name_taken)
        except FileNotFoundError:
            self.queue.forget(rel)
            return None
        except OSError as exc:
            self.queue.hold(rel)
            self._record("unclaimable", rel, f"cannot take {rel} ({exc.strerror}); left where it is "
                         "until it changes", error=str(exc))
            return None
        self.queue.forget(rel)
        claimed = target.relative_to(self.layout.processing)
        self._record("claimed", claimed, f"taking   {claimed}", original=str(rel))
        return claimed

    def _name_taken(self, candidate: Path) -> bool:
        if candidate.exists():
            return True
        rel = candidate.relative_to(self.layout.processing)
        try:
            return self.layout.output_for(rel, self.folder_settings(rel).settings).exists()
        except SettingsError:
            return False  # the job will fail on the settings and say so

    # -- running a claimed clip -------------------------------------------------------------

    def _process(self, rel: Path, *, resumed: bool) -> bool:
        """Run (or resume) claimed clip ``rel``; False when another watcher holds it."""
        if self.stop.is_set():
            return False
        path = self.layout.processing / rel
        with owned(path) as ours:
            if ours:
                self._run(rel, path, resumed)
        return ours

    def _run(self, rel: Path, path: Path, resumed: bool) -> None:
        output: Path | None = None
        sources: tuple[str, ...] = (self.base_label,)
        try:
            folder = self.folder_settings(rel)
            sources = folder.sources
            output = self.layout.output_for(rel, folder.settings)
            if output.exists():
                self._done(rel, path, output, {}, note="its output already existed")
                return
            result = self._job(rel, path, output, folder, resumed)
        except Exception as error:  # noqa: BLE001 - one clip's error never stops the watcher
            if isinstance(error, Interrupted):  # we asked it to stop: resumed on the next start
                self.summary.interrupted.append(str(rel))
                self._record("interrupted", rel, f"paused   {rel}: {error}", output=str(output))
            else:
                self._fail(path, rel, error, output=output, sources=sources)
            return
        self._done(rel, path, output, result)

    def _job(self, rel: Path, path: Path, output: Path, folder: FolderSettings,
             resumed: bool) -> dict[str, Any]:
        make_folder(output.parent, hint="; make it writable, then move the clip back into the inbox")
        kind, verb = ("resumed", "resuming") if resumed else ("started", "starting")
        self._record(kind, rel, f"{verb} {rel} -> {output}", output=str(output),
                     settings=list(folder.sources))
        self.journal.status.running = RunningJob(str(rel), str(output), now_iso(), list(folder.sources))
        self.journal.status.queued = [str(q) for q in self.queue.queued()]
        self.journal.save()
        try:
            if self.cluster is not None:
                return self.cluster.upscale_one(path, output, folder.settings, progress=self.progress,
                                                should_stop=self.stop.is_set)
            return upscale_one(path, output, folder.settings, progress=self.progress,
                               should_stop=self.stop.is_set, model=self._model(rel, folder.settings)).to_dict()
        finally:
            self.journal.status.running = None
            self.journal.save()

    def _model(self, rel: Path, settings: Settings) -> Any:
        """The loaded model for a freescale clip (kept from the last clip when the same), else None."""
        if settings.upscale.engine != "freescale":
            return None
        model, loaded = self.models.get(settings)
        if loaded:
            self._record("model-loaded", rel, f"loaded the model ({settings.model.path or 'default'}, "
                         f"{settings.model.device}, {settings.model.dtype})", model=asdict(settings.model))
        return model

    # -- moving on ----------------------------------------------------------------------------

    def _done(self, rel: Path, path: Path, output: Path, result: dict[str, Any], note: str = "") -> None:
        target = self._move_on(path, self.layout.done / rel, rel)
        if target is None:
            return
        frames = result.get("frames")
        detail = note or f"{frames} frames, {result.get('elapsed_seconds', 0):.1f} s"
        self._record("done", rel, f"done     {rel} -> {output} ({detail})", output=str(output),
                     source=str(target), frames=frames, note=note or None)
        self.journal.status.counts["done"] += 1
        self.journal.status.done.append({"file": str(rel), "output": str(output), "time": now_iso()})
        self.journal.save()

    def _fail(self, path: Path, rel: Path, error: BaseException, *, output: Path | None,
              sources: tuple[str, ...] | None = None) -> None:
        self.summary.exit_code = max(self.summary.exit_code, getattr(error, "exit_code", 1))
        if sources is None:
            sources = self._sources_or_base(rel)
        target = self._move_on(path, self.layout.failed / rel, rel)
        if target is None:
            return
        try:
            write_json(target.with_name(target.name + ".error.json"),
                       error_record(rel, error, sources, output))
        except OSError as exc:
            self.say(f"warning: cannot write the error file beside {target} ({exc})")
        line = (f"failed   {rel}: {reason(error, path)} (now {target.relative_to(self.layout.inbox)}; "
                "fix the cause and drop it in again)")
        self._record("failed", rel, line,
                     error=type(error).__name__, message=str(error), source=str(target))
        self.journal.status.counts["failed"] += 1
        self.journal.status.failed.append({"file": str(rel), "error": str(error), "time": now_iso()})
        self.journal.save()

    def _sources_or_base(self, rel: Path) -> tuple[str, ...]:
        try:
            return self.folder_settings(rel).sources
        except SettingsError:
            return (self.base_label, "a vidscale.toml that could not be read")

    def _move_on(self, path: Path, target: Path, rel: Path) -> Path | None:
        """Move a clip to done/ or failed/; on failure leave it where it is, untouched."""
        try:
            moved = move(path, target)
        except FileNotFoundError:
            return None  # not there any more: another watcher took it
        except OSError as exc:
            if self.layout.processing in path.parents:
                self.stuck.add(rel)  # not retried by this watcher; a restart tries again
            self._record("stuck", rel, f"cannot move {path} to {target.parent} ({exc.strerror}); "
                         "left where it is", error=str(exc))
            return None
        if self.layout.processing in path.parents:
            prune_empty(path.parent, self.layout.processing)
        return moved

    def _record(self, kind: str, rel: Path, line: str, **fields: Any) -> None:
        self.journal.event(kind, str(rel), **fields)
        self.say(line)
