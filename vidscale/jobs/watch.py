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
* A mistyped INBOX, an output folder that cannot be written, one of the watcher's folders that is
  a symlink, or a freescale preset without its weights is found at the start (exit 2), not clip
  by clip: the watcher creates a missing INBOX only when asked (``create``).
* A clip's error (bad file, bad ``vidscale.toml``, unwritable output, a bug) fails that clip only:
  it goes to failed/ with an error file saying why, and the watcher goes on. When a clip that
  failed before succeeds, its old error file is removed: failed/ holds what is failed now.
* What others drop is untrusted (:mod:`vidscale.jobs.inbox` says how it is handled): a symlink,
  a pipe or anything else that is not a file goes to failed/ with the reason, unreadable entries
  are passed over with one line each, and names are logged as :func:`~vidscale.progress.shown`
  makes them.
"""

from __future__ import annotations

import os
import stat
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

from ..atomic import check_writable, write_json
from ..errors import InputError, Interrupted, MediaNotFoundError, SettingsError
from ..media import probe
from ..pages import serve_status
from ..progress import Log, Progress, shown
from ..settings import Settings
from .arrivals import ArrivalQueue
from .batch import reason
from .engines import upscale_one
from .inbox import FolderSettings, InboxLayout, kind_of
from .interrupts import stop_on_signals
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
    status_token: str | None = None  # required by the status page (made up when not on loopback)
    create: bool = False  # make INBOX if it does not exist (else that is an error: a typo?)
    follow_symlinks: bool = False  # take a dropped symlink's target (else it goes to failed/)


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
    check_weights(request.settings)
    stop = stop or threading.Event()
    wake = threading.Event()
    with InboxLayout.open(request.inbox, request.out_dir) as layout:
        check_writable(layout.state)
        events = WakeOnChange(layout, wake)
        with stop_on_signals(stop, _raw_stderr, wake=wake), serving_status(request, layout, say), \
                file_events(layout.inbox, events, poll=request.poll, say=say) as how, ExitStack() as stack:
            watcher = Watcher(request, layout, progress or Progress(enabled=False), say, stop, wake, events)
            if request.settings.cluster.address:  # --cluster: each clip's units on the Ray workers
                from .cluster import Cluster

                watcher.cluster = stack.enter_context(Cluster(request.settings.cluster, say=say))
            return watcher.run(how)


def serving_status(request: WatchRequest, layout: InboxLayout, say: Log) -> AbstractContextManager:
    """With ``status_port``, the status page served while inside (:mod:`vidscale.pages.status`)."""
    if request.status_port is None:
        return nullcontext()
    return serve_status(layout.status_file, layout.out_dir, host=request.status_host,
                        port=request.status_port, token=request.status_token, say=say)


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


def check_weights(settings: Settings) -> None:
    """Exit 2 at the start when a freescale preset's weights are missing, rather than failing every
    clip for the same cause. The watcher's own settings decide the model: a folder's
    ``vidscale.toml`` may not set ``[model]`` or the engine."""
    if settings.upscale.engine != "freescale":
        return
    from ..model import resolve_model_path

    resolve_model_path(settings.model.path)


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
    return {"file": shown(rel), "time": now_iso(),
            "error": {"type": type(error).__name__, "message": shown(error),
                      "exit_code": getattr(error, "exit_code", 1)},
            "settings": list(sources), "output": shown(output) if output else None}


class Watcher:
    """One watch folder's loop: resume claimed clips, then take settled ones in arrival order."""

    def __init__(self, request: WatchRequest, layout: InboxLayout, progress: Progress, say: Log,
                 stop: threading.Event, wake: threading.Event, events: WakeOnChange):
        self.request, self.layout, self.say = request, layout, say
        self.stop, self.wake, self.events = stop, wake, events
        self.queue = ArrivalQueue(request.settle_seconds)
        status = WatchStatus(pid=os.getpid(), inbox=shown(layout.inbox), out_dir=shown(layout.out_dir))
        self.journal = Journal(layout.log_file, layout.status_file, status, say, layout.fds["state"])
        self.progress = ReportingProgress(progress, self.journal)
        self.summary = WatchSummary()
        self.stuck: set[Path] = set()  # claimed clips that could not be moved on: left as they are
        self.models = ModelKeeper()
        self.cluster: Any = None  # a vidscale.jobs.cluster.Cluster that runs the jobs instead
        self.targets: set[Path] = set()  # --once: what was in the inbox at the start
        self.reported: set[tuple[Path | str, str]] = set()  # what was said once (passed over, replaced)

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
        self.journal.event("watching", pid=os.getpid(), out_dir=shown(self.layout.out_dir),
                           settings=self.base_label, observer=how, once=self.request.once,
                           settle_seconds=self.request.settle_seconds)
        self.say(f"watching {shown(self.layout.inbox)} -> {shown(self.layout.out_dir)} ({how}, "
                 f"settle {self.request.settle_seconds:g} s, {self.base_label})")
        self.journal.status.state = "watching"
        self._scan()
        self.targets = set(self.queue.queued())

    def _end(self) -> None:
        counts = self.journal.status.counts  # the status file's counts are the one tally
        self.summary.done, self.summary.failed = counts["done"], counts["failed"]
        left = self.summary.interrupted
        if left:
            self.say(f"left in {shown(self.layout.processing)} to resume on the next start: {', '.join(left)}")
        self.journal.status.state = "stopped"
        self.journal.event("stopped", done=self.summary.done, failed=self.summary.failed,
                           interrupted=left)
        self.journal.save()
        self.say(f"stopped: {self.summary.done} done, {self.summary.failed} failed")

    def _step(self) -> bool:
        """Do the next piece of work: a claimed clip first, then the earliest settled file."""
        for area in self.layout.replaced():
            self._once(area, "replaced", f"warning: {self.layout.path(area)} is not the folder the watcher "
                       "started with any more (renamed, or replaced by a symlink); it goes on in the folder it "
                       "holds and writes nothing through the new path: put the folder back, then restart it",
                       folder=area)
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
        for rel in self.queue.update(self.layout.scan(self._passed_over), time.monotonic(), arrivals):
            self.journal.event("queued", shown(rel))
        self.journal.status.queued = [shown(rel) for rel in self.queue.queued()]
        self.journal.save()

    def _passed_over(self, rel: Path, why: str) -> None:
        self._once(rel, "passed-over", f"passed over {shown(rel) if rel.parts else 'INBOX'}: {why}", reason=why)

    def _once(self, key: Path | str, kind: str, line: str, **fields: Any) -> None:
        """Record and say ``line`` the first time only (a scan runs every few seconds)."""
        if (key, line) not in self.reported:
            self.reported.add((key, line))
            self._record(kind, Path(key) if isinstance(key, Path) else None, line, **fields)

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
        """Judge a settled entry where it lies: claim a video, move anything else to failed/."""
        info = self.layout.entry("inbox", rel)
        if info is None:
            self.queue.forget(rel)  # gone: another watcher took it, or the user moved it
            return False
        refused: Exception | None = self._refusal(rel, info)
        if refused is None:
            try:
                probe(self.layout.inbox / rel)
            except MediaNotFoundError:
                self.queue.forget(rel)
                return False
            except Exception as error:  # noqa: BLE001 - whatever the reason, it is not a usable video
                refused = error
        if refused is not None:
            self._fail("inbox", rel, refused, output=None)
            if self.layout.entry("inbox", rel) is not None:
                self.queue.hold(rel)  # could not be moved to failed/: not again until it changes
            else:
                self.queue.forget(rel)
            return True
        claimed = self._claim(rel, info)
        return claimed is not None and self._process(claimed, resumed=False)

    def _refusal(self, rel: Path, info: os.stat_result) -> InputError | None:
        """Why a dropped entry is not taken (None: it is a file, or a link that may be followed).

        It is judged by its ``lstat`` and never opened: opening a named pipe would block."""
        path = self.layout.inbox / rel
        if stat.S_ISLNK(info.st_mode):
            target, leads_to = self.layout.link_target("inbox", rel)
            if not self.request.follow_symlinks:
                return InputError(f"{path}: is a symbolic link (to {shown(target)}); the watcher takes only "
                                  "files copied into the folder, so that nothing outside it is read: copy "
                                  "the clip in (or start the watcher with --follow-symlinks)")
            if leads_to is None or not stat.S_ISREG(leads_to.st_mode):
                return InputError(f"{path}: is a symbolic link to {shown(target)}, which is not a readable "
                                  "file; copy the clip in")
            return None
        if not stat.S_ISREG(info.st_mode):
            return InputError(f"{path}: is {kind_of(info)}, not a file; drop video files only")
        return None

    def _claim(self, rel: Path, info: os.stat_result) -> Path | None:
        """Rename ``rel`` into processing/ under a name that no claimed clip or output uses yet.

        Naming it apart (``a (2).mp4``) when ``a.mp4``'s output exists keeps "an output exists"
        meaning "this claimed clip is finished" (see :meth:`_run`), and never overwrites it. The
        claimed entry must be the one that was judged (``info``), not one swapped in meanwhile.
        """
        try:
            claimed = self.layout.move("inbox", rel, "processing", taken=self._name_taken)
        except FileNotFoundError:
            self.queue.forget(rel)
            return None
        except OSError as exc:
            self.queue.hold(rel)
            self._record("unclaimable", rel, f"cannot take {shown(rel)} ({exc.strerror}); left where it is "
                         "until it changes", error=shown(exc))
            return None
        self.queue.forget(rel)
        self._record("claimed", claimed, f"taking   {shown(claimed)}", original=shown(rel))
        now = self.layout.entry("processing", claimed)
        if now is None or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
            self._fail("processing", claimed, InputError(
                f"{self.layout.processing / claimed}: was replaced while it was being taken; drop the clip "
                "in again"), output=None)
            return None
        return claimed

    def _name_taken(self, candidate: Path) -> bool:
        try:
            return self.layout.output_for(candidate, self.folder_settings(candidate).settings).exists()
        except SettingsError:
            return False  # the job will fail on the settings and say so

    # -- running a claimed clip -------------------------------------------------------------

    def _process(self, rel: Path, *, resumed: bool) -> bool:
        """Run (or resume) claimed clip ``rel``; False when another watcher holds it."""
        if self.stop.is_set():
            return False
        with self.layout.locked(rel, follow_symlinks=self.request.follow_symlinks) as ours:
            if ours:
                self._run(rel, resumed)
        return ours

    def _run(self, rel: Path, resumed: bool) -> None:
        output: Path | None = None
        sources: tuple[str, ...] = (self.base_label,)
        try:
            folder = self.folder_settings(rel)
            sources = folder.sources
            output = self.layout.output_for(rel, folder.settings)
            if output.exists():
                self._done(rel, output, {}, existed=True)
                return
            result = self._job(rel, output, folder, resumed)
        except Exception as error:  # noqa: BLE001 - one clip's error never stops the watcher
            if isinstance(error, Interrupted):  # we asked it to stop: resumed on the next start
                self.summary.interrupted.append(shown(rel))
                self._record("interrupted", rel, f"paused   {shown(rel)}: {error}",
                             output=shown(output) if output else None)
            else:
                self._fail("processing", rel, error, output=output, sources=sources)
            return
        self._done(rel, output, result)

    def _job(self, rel: Path, output: Path, folder: FolderSettings, resumed: bool) -> dict[str, Any]:
        self.layout.output_folder(rel)
        for area in ("state", "processing"):  # the engine reads the clip by path
            if area in self.layout.replaced():
                raise InputError(f"{self.layout.path(area)}: is not the watcher's folder any more (renamed, "
                                 "or replaced by a symlink); put it back and restart the watcher")
        path = self.layout.processing / rel
        kind, verb = ("resumed", "resuming") if resumed else ("started", "starting")
        self._record(kind, rel, f"{verb} {shown(rel)} -> {shown(output)}", output=shown(output),
                     settings=list(folder.sources))
        self.journal.status.running = RunningJob(shown(rel), shown(output), now_iso(), list(folder.sources))
        self.journal.status.queued = [shown(q) for q in self.queue.queued()]
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

    def _done(self, rel: Path, output: Path, result: dict[str, Any], existed: bool = False) -> None:
        target = self._move_on("processing", rel, "done")
        if target is None:
            return
        self._clear_failure(rel)
        frames = result.get("frames")
        # The result's own note (a test model's output says so): the one wording, from the result.
        note = "its output already existed" if existed else result.get("note")
        detail = note if existed else (f"{frames} frames, {result.get('elapsed_seconds', 0):.1f} s"
                                       + (f"; {note}" if note else ""))
        self._record("done", rel, f"done     {shown(rel)} -> {shown(output)} ({detail})", output=shown(output),
                     source=shown(self.layout.done / target), frames=frames, note=note)
        self.journal.status.counts["done"] += 1
        # the output's real name (not UTF-8: JSON's \\udcNN), for the status page's links
        self.journal.status.done.append({"file": shown(rel), "output": str(output), "time": now_iso(),
                                         "note": note})
        self.journal.save()

    def _clear_failure(self, rel: Path) -> None:
        """``rel`` succeeded: an error file left in failed/ by an earlier try, whose clip is no longer
        there (it was dropped in again), is stale; remove it (the log keeps what it said)."""
        record = rel.with_name(rel.name + ".error.json")
        if self.layout.entry("failed", rel) is not None or self.layout.entry("failed", record) is None:
            return
        try:
            with self.layout.folder("failed", record.parent) as folder:
                os.unlink(record.name, dir_fd=folder)
        except OSError as exc:
            self.say(f"warning: cannot remove the stale {shown(self.layout.failed / record)} ({exc.strerror})")
            return
        self._record("cleared", rel, f"cleared  failed/{shown(record)}: {shown(rel)} is done now",
                     removed=shown(self.layout.failed / record))

    def _fail(self, area: str, rel: Path, error: BaseException, *, output: Path | None,
              sources: tuple[str, ...] | None = None) -> None:
        """Move ``rel`` to failed/ with its error file and count the failure; a clip that is gone
        (a watcher sharing the inbox took it while this one judged it) failed nowhere."""
        if sources is None:
            sources = self._sources_or_base(rel)
        target = self._move_on(area, rel, "failed")
        if target is None and self.layout.entry(area, rel) is None:
            return
        self.summary.exit_code = max(self.summary.exit_code, getattr(error, "exit_code", 1))
        if target is None:
            return
        record = self.layout.failed / target.with_name(target.name + ".error.json")
        try:
            with self.layout.folder("failed", target.parent) as folder:
                write_json(record, error_record(rel, error, sources, output), folder_fd=folder)
        except OSError as exc:
            self.say(f"warning: cannot write the error file {shown(record)} ({shown(exc)})")
        why = shown(reason(error, self.layout.path(area) / rel))
        line = f"failed   {shown(rel)}: {why} (now failed/{shown(target)}; fix the cause and drop it in again)"
        self._record("failed", rel, line, error=type(error).__name__, message=shown(error),
                     source=shown(self.layout.failed / target))
        self.journal.status.counts["failed"] += 1
        self.journal.status.failed.append({"file": shown(rel), "error": why, "time": now_iso()})
        self.journal.save()

    def _sources_or_base(self, rel: Path) -> tuple[str, ...]:
        try:
            return self.folder_settings(rel).sources
        except SettingsError:
            return (self.base_label, "a vidscale.toml that could not be read")

    def _move_on(self, area: str, rel: Path, to: str) -> Path | None:
        """Move a clip from ``area`` to done/ or failed/ (its new relative path); on failure leave
        it where it is, untouched."""
        try:
            return self.layout.move(area, rel, to)
        except FileNotFoundError:
            return None  # not there any more: another watcher took it
        except OSError as exc:
            if area == "processing":
                self.stuck.add(rel)  # not retried by this watcher; a restart tries again
            self._record("stuck", rel, f"cannot move {shown(self.layout.path(area) / rel)} to "
                         f"{shown(self.layout.path(to) / rel.parent)} ({exc.strerror}); left where it is",
                         error=shown(exc))
            return None

    def _record(self, kind: str, rel: Path | None, line: str, **fields: Any) -> None:
        self.journal.event(kind, shown(rel) if rel is not None else None, **fields)
        self.say(line)
