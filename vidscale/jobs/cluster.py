"""``--cluster``: many clips and long clips across GPUs and machines, on Ray.

The driver (this process) plans, hands out work units, collects their results, stitches and
writes every output; workers only compute. A worker is a Ray actor, one per GPU (``num_gpus=1``;
one per CPU, ``num_cpus=1``, where there is no GPU), that loads the model on its first unit and
keeps it. A unit is a whole clip (lanczos: the encoded clip comes back) or one segment of a
freescale clip (:mod:`vidscale.pipeline.segments`; ``jobs.segment_frames`` = 0 makes the whole
clip one segment). Segments of one clip run on different workers at the same time.

Why the output does not depend on the cluster: the segment plan is a function of the clip and
the settings only, every random draw is keyed by (seed, frame), and the driver stitches with the
same code as a single process (``jobs.segment_frames`` set, no ``--cluster``), which is the
reference it must equal bit for bit.

Faults:

* A unit's results land in the segment's job store, each chunk atomically: written by the worker
  when ``cluster.shared_path`` is a folder every node sees (a rerun then resumes inside a
  segment), else sent through Ray's object store to the driver, which stores them.
* A worker that dies mid-unit (killed, its node gone) costs that unit only: Ray restarts the
  actor and the driver hands the unit to the next free worker, up to ``cluster.retries`` times.
  A chunk is stored once: the store skips what it holds, so a retry never writes twice.
* The driver killed: the rerun finds the finished segments in the job stores and hands out the
  others only.
* A unit that fails for a reason a retry cannot fix (a bad clip: a :class:`VidscaleError`) fails
  its clip only, with that error; the summary and exit codes are the batch's.
* Asked to stop (SIGINT/SIGTERM: ``should_stop``), the driver hands out nothing more and asks
  every worker to stop its segment after the current step: the step is checkpointed (in the
  shared store, or sent back with the finished chunks to the driver's), and the next run's unit
  continues from it (the driver sends a segment's stored chunks and checkpoint with the unit).

Ray has no authentication by default: anyone who reaches a cluster's ports can run code on its
machines. A local cluster listens on loopback only; for ``auto`` and ``HOST:PORT`` the driver
says so once (``RAY_SECURITY``).

Ray is imported here only, and this module only with ``--cluster``: ``pip install vidscale[ray]``.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_bytes
from ..errors import InputError, Interrupted, JobError, VidscaleError
from ..media.probe import FrameSelection
from ..pipeline.result import UpscaleResult
from ..progress import Log, Progress
from ..settings import ClusterSettings, Settings
from .batch import (
    BatchRequest,
    BatchSummary,
    ItemResult,
    Ready,
    check_item,
    describe_item,
    failed_item,
    finish_batch,
    run_batch,
    start_batch,
)
from .engines import finish_job
from .models import ModelKeeper
from .workers import UnitFailed, UnitStopped, Worker

Event = Callable[[dict[str, Any]], Any]
IN_FLIGHT = 2  # units queued per worker, so it never waits for the driver between two units
START_SECONDS = 300  # how long a worker may take to (re)start before the run fails
CONTROL = "control"  # the actor's concurrency group for calls that must not wait behind a unit
WAIT_SECONDS = 0.5  # how often the driver looks at should_stop while units run
RAY_SECURITY = "https://docs.ray.io/en/latest/ray-security/index.html"


@dataclass
class ClipRun:
    """One clip of the run: its units, what came back, and how it ended."""

    item: int
    source: Path
    output: Path
    settings: Settings
    frames: FrameSelection | None = None
    started: float = field(default_factory=time.perf_counter)
    clip: Any = None  # SegmentedClip (freescale)
    stores: list[Any] = field(default_factory=list)
    waiting: set[int] = field(default_factory=set)  # segments not yet stored
    units: dict[str, int] = field(default_factory=lambda: {"run": 0, "from_store": 0, "retried": 0})
    lanczos: tuple[bytes, UpscaleResult] | None = None
    outcome: ItemResult | None = None


    def ended(self) -> ItemResult:
        """How the clip ended: :meth:`Cluster.run` gives every run an outcome, or raises."""
        if self.outcome is None:
            raise JobError(f"{self.source}: the cluster run ended without an outcome for it")
        return self.outcome


@dataclass(frozen=True)
class Unit:
    run: ClipRun
    segment: int | None  # None: the whole clip (lanczos)

    @property
    def name(self) -> str:
        return f"{self.run.source.name}" + ("" if self.segment is None else f" segment {self.segment}")


class Cluster:
    """A connection to Ray and a pool of workers, kept across jobs (a batch or a watcher's clips)."""

    def __init__(self, settings: ClusterSettings, *, on_event: Event | None = None, say: Log | None = None):
        self.settings = settings
        self.on_event = on_event or (lambda _event: None)
        self.say = say or (lambda _line: None)
        self.driver_models = ModelKeeper()  # planning needs the model's size; stitching its VAE
        self._ray: Any = None
        self._started = False
        self._runs = 0  # numbers this cluster's runs, so a stop asked for one never stops the next
        self.workers: list[Any] = []

    # -- connecting --------------------------------------------------------------------------

    def __enter__(self) -> "Cluster":
        address, _, count = self.settings.address.partition(":")
        self._ray = _import_ray(local=address == "local")
        if address == "local" and count and not count.isdigit():
            raise InputError(f"--cluster {self.settings.address}: expected local or local:N (N workers)")
        if address != "local":
            self.say(f"warning: --cluster {self.settings.address}: Ray has no authentication by default; "
                     f"whoever reaches the cluster's ports can run code on its machines: keep them on a "
                     f"private network ({RAY_SECURITY})")
        if not self._ray.is_initialized():  # a caller (a test, a notebook) may run Ray already
            try:
                if address == "local":  # this machine only, listening on loopback
                    self._ray.init(num_cpus=int(count) if count else None, include_dashboard=False,
                                   _node_ip_address="127.0.0.1", log_to_driver=False)
                else:
                    self._ray.init(address=self.settings.address, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"--cluster {self.settings.address}: cannot connect to Ray ({exc}); "
                                 "start it with `ray start --head` or use local[:N]") from None
            self._started = True
        try:
            self._start_workers(int(count) if address == "local" and count else 0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: Any) -> None:
        for actor in self.workers:
            self._ray.kill(actor, no_restart=True)
        self.workers = []
        if self._started:
            self._ray.shutdown()

    def _start_workers(self, local: int) -> None:
        resources = self._ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        count = self.settings.workers or local or gpus or cpus
        need = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        actor = self._ray.remote(**need, max_restarts=-1, max_task_retries=0,
                                 concurrency_groups={CONTROL: 1})(Worker)
        self.workers = [actor.remote() for _ in range(count)]
        self.pids()  # wait until every worker is up

    def pids(self) -> list[int]:
        """The process id of each worker (waits for one that is restarting)."""
        return [self._pid(worker) for worker in range(len(self.workers))]

    def _pid(self, worker: int) -> int:
        from ray.exceptions import ActorUnavailableError, GetTimeoutError

        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                call = self.workers[worker].pid.options(concurrency_group=CONTROL).remote()
                return self._ray.get(call, timeout=max(1.0, deadline - time.monotonic()))
            except ActorUnavailableError:  # restarting: Ray answers at once instead of waiting
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
            except GetTimeoutError:
                pass
            raise JobError(f"worker {worker} did not start within {START_SECONDS} s (more workers than "
                           "free GPUs/CPUs, or a node lost?); see `ray status` and cluster.workers")

    # -- running -----------------------------------------------------------------------------

    def run(self, runs: list[ClipRun], *, progress: Progress, say: Log,
            should_stop: Callable[[], bool] | None = None) -> None:
        """Plan every clip, run its units on the workers, write it; sets each run's ``outcome``.

        Once ``should_stop`` says yes, nothing more is handed out and every worker stops its unit
        after the current step (checkpointed); then :class:`Interrupted` is raised.
        """
        self._runs += 1
        number, stopping = self._runs, False
        queue: deque[Unit] = deque(unit for run in runs for unit in self._plan(run, say))
        in_flight: dict[Any, tuple[Unit, int]] = {}
        attempts: dict[tuple[int, int | None], int] = {}
        for run in runs:
            self._write_if_ready(run, progress, say)
        with progress.bar("units", total=len(queue), unit="unit") as bar:
            while queue or in_flight:
                if not stopping and should_stop is not None and should_stop():
                    stopping = True
                    self._stop_workers(number)
                if stopping:
                    queue.clear()
                self._submit(queue, in_flight, number)
                if not in_flight:
                    break
                ready, _ = self._ray.wait(list(in_flight), num_returns=1, timeout=WAIT_SECONDS)
                if not ready:
                    continue
                unit, worker = in_flight.pop(ready[0])
                if self._collect(unit, worker, ready[0], queue, attempts, say):
                    bar.update(1)
                self._write_if_ready(unit.run, progress, say)
        left = [run.source.name for run in runs if run.outcome is None]
        if left:
            raise Interrupted(f"stopped with {', '.join(left)} unfinished; every worker stopped after its "
                              "current step, and finished chunks and the steps are stored: run the same "
                              "command again to resume")

    def _stop_workers(self, number: int) -> None:
        """Ask every worker to stop run ``number``'s unit after its current step (not waiting: the
        answers are the units' own results)."""
        for worker in self.workers:
            worker.stop.options(concurrency_group=CONTROL).remote(number)

    def _plan(self, run: ClipRun, say: Log) -> list[Unit]:
        """The units of ``run`` still to do (a segment already in its store is not run again)."""
        if run.settings.upscale.engine == "lanczos":
            return [Unit(run, None)]
        from ..pipeline.segments import SegmentedClip

        try:
            model, _ = self.driver_models.get(run.settings)
            run.clip = SegmentedClip.prepare(run.source, run.settings, model, frames=run.frames)
            shared = self.settings.shared_path
            root = Path(shared) if shared else run.output.parent / ".vidscale-jobs"
            run.stores = [run.clip.store(segment, root) for segment in run.clip.segments]
        except VidscaleError as error:
            self._end(run, failed_item(run.source, run.output, error), say)
            return []
        run.waiting = {s.index for s, store in zip(run.clip.segments, run.stores)
                       if not run.clip.finished(s, store)}
        run.units["from_store"] = len(run.clip.segments) - len(run.waiting)
        if run.units["from_store"]:
            say(f"resume  {run.source}: {run.units['from_store']} of {len(run.clip.segments)} "
                "segments already in the job store")
        return [Unit(run, index) for index in sorted(run.waiting)]

    def _submit(self, queue: deque[Unit], in_flight: dict[Any, tuple[Unit, int]], number: int) -> None:
        """Give queued units to workers with room, least busy first."""
        load = [0] * len(self.workers)
        for _unit, worker in in_flight.values():
            load[worker] += 1
        while queue:
            worker = min(range(len(load)), key=load.__getitem__)
            if load[worker] >= IN_FLIGHT:
                return
            unit = queue.popleft()
            if unit.run.outcome is not None:
                continue  # its clip already failed
            pid = self._pid(worker)  # also waits while a killed worker is restarted
            in_flight[self._call(self.workers[worker], unit, number)] = (unit, worker)
            load[worker] += 1
            self.on_event({"event": "submitted", "unit": unit.name, "worker": worker, "pid": pid})

    def _call(self, actor: Any, unit: Unit, number: int) -> Any:
        run = unit.run
        if unit.segment is None:
            return actor.lanczos.remote(run.source, run.output, run.settings, run.frames)
        saved = None if self.settings.shared_path else stored(run.stores[unit.segment])
        return actor.segment.remote(run.clip, unit.segment, run.settings, self.settings.shared_path,
                                    number, saved)

    def _collect(self, unit: Unit, worker: int, ref: Any, queue: deque[Unit],
                 attempts: dict[tuple[int, int | None], int], say: Log) -> bool:
        """Take one unit's result; True when the unit is finished (stored, or its clip failed)."""
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        run = unit.run
        try:
            value = self._ray.get(ref)
        except (RayActorError, ActorUnavailableError) as exc:
            key = (run.item, unit.segment)
            attempts[key] = attempts.get(key, 0) + 1
            run.units["retried"] += 1
            self.on_event({"event": "lost", "unit": unit.name, "worker": worker})
            if attempts[key] > self.settings.retries:
                value = UnitFailed(f"{unit.name}: its worker died {attempts[key]} times "
                                   f"(cluster.retries = {self.settings.retries}); last: {exc}", 1)
            else:
                say(f"retry   {unit.name}: its worker died; handing it to the next free worker")
                queue.appendleft(unit)
                return False
        except RayTaskError as exc:  # a bug in a worker: fail the clip, keep the batch going
            value = UnitFailed(f"{unit.name}: the worker failed: {exc.cause!r}", 1)
        if isinstance(value, UnitFailed):
            self._end(run, ItemResult(run.source, "failed", run.output, error=value.message,
                                      exit_code=value.exit_code), say)
            return True
        if isinstance(value, UnitStopped):  # asked to stop: what it did is stored, the unit is not done
            try:
                self._store(unit, value.chunks, value.running)
            except VidscaleError as error:
                self._end(run, failed_item(run.source, run.output, error), say)
                return True
            self.on_event({"event": "stopped", "unit": unit.name, "worker": worker})
            return False
        try:
            self._store(unit, value)
        except VidscaleError as error:  # the job folder cannot be written (a full disk)
            self._end(run, failed_item(run.source, run.output, error), say)
            return True
        run.units["run"] += 1
        self.on_event({"event": "done", "unit": unit.name, "worker": worker})
        return True

    def _store(self, unit: Unit, value: Any, running: tuple[int, int, Any] | None = None) -> None:
        """Store what a unit sent back: its chunks, and a stopped unit's step checkpoint."""
        run = unit.run
        if unit.segment is None:
            run.lanczos = value
            return
        store = run.stores[unit.segment]
        if value is not None:  # chunks sent back through the object store: stored here, once
            for index, (tensors, info) in sorted(value.items()):
                if index not in store.finished:
                    store.save_chunk(index, tensors, info)
            if running is not None and running[0] not in store.finished:
                store.save_step(*running)
        else:  # the worker wrote them to the shared folder: read its manifest again
            store = run.stores[unit.segment] = run.clip.store(run.clip.segments[unit.segment], store.root.parent)
        if run.clip.finished(run.clip.segments[unit.segment], store):
            run.waiting.discard(unit.segment)

    def _write_if_ready(self, run: ClipRun, progress: Progress, say: Log) -> None:
        """Write ``run``'s output once all its units are in (the driver is the only writer)."""
        if run.outcome is not None or (run.lanczos is None and (run.clip is None or run.waiting)):
            return
        started = time.perf_counter()
        try:
            if run.lanczos is not None:
                data, result = run.lanczos
                write_bytes(run.output, data)
            else:
                from ..pipeline.segments import complete_segmented, write_segmented

                model, _ = self.driver_models.get(run.settings)
                write_segmented(model, run.clip, run.stores, run.output, run.settings,
                                overwrite=True, progress=progress)
                result = complete_segmented(model, run.clip, run.stores, run.output, run.settings,
                                            started=run.started, timings={"write": time.perf_counter() - started})
            result = finish_job(run.source, result, run.settings, frames=run.frames)
        except VidscaleError as error:
            self._end(run, failed_item(run.source, run.output, error), say)
        else:
            self._end(run, ItemResult(run.source, "done", run.output,
                                      result={**result.to_dict(), "units": run.units}), say)

    @staticmethod
    def _end(run: ClipRun, outcome: ItemResult, say: Log) -> None:
        """How ``run`` ended (the first outcome counts: a clip fails once), said once."""
        if run.outcome is None:
            run.outcome = outcome
            say(describe_item(outcome))

    # -- one clip (the watch folder) ---------------------------------------------------------

    def upscale_one(self, source: Path, output: Path, settings: Settings, *, progress: Progress | None = None,
                    should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
        """:func:`vidscale.jobs.engines.upscale_one` on the cluster: the result (as a dict), or the
        clip's error."""
        run = ClipRun(0, source, output, settings)
        self.run([run], progress=progress or Progress(enabled=False), say=lambda _line: None,
                 should_stop=should_stop)
        outcome = run.ended()
        if outcome.status == "failed":
            error = VidscaleError(outcome.error)
            error.exit_code = outcome.exit_code
            raise error
        return outcome.result or {}


def stored(store: Any) -> dict[str, Any] | None:
    """What a segment's job store holds (finished chunks, the running chunk's checkpoint), for a
    worker without the shared folder to continue from; None when it holds nothing."""
    chunks = {index: (store.load_chunk(index), {k: v for k, v in store.manifest["chunks"][str(index)].items()
                                                 if k != "file"}) for index in sorted(store.finished)}
    running = store.running
    step = None
    if running is not None and running["chunk"] not in store.finished:
        loaded = store.load_step(running["chunk"])
        step = (running["chunk"], *loaded) if loaded is not None else None
    return {"chunks": chunks, "running": step} if chunks or step else None


# Ray gives a node the address other machines reach it by, even when ``_node_ip_address`` says
# 127.0.0.1 (it "resolves" loopback to that address). A local cluster serves this machine only, so
# its GCS, raylets and workers should talk over loopback: this switch, read once when Ray is first
# imported, makes Ray use 127.0.0.1 as the node's address.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _import_ray(*, local: bool) -> Any:
    """Import Ray (lazily: only ``--cluster`` needs it); a local cluster stays on loopback."""
    if local:
        for name, value in LOOPBACK_ONLY.items():
            os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError:
        raise InputError("--cluster needs Ray: pip install 'vidscale[ray]'") from None
    return ray


@dataclass
class ClusterSummary(BatchSummary):
    """The batch summary plus how the work was spread."""

    workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        units = [item.result.get("units", {}) for item in self.items if item.result]
        totals = {key: sum(u.get(key, 0) for u in units) for key in ("run", "from_store", "retried")}
        return {**super().to_dict(), "cluster": {"workers": self.workers, "units": totals}}


def run_cluster(request: BatchRequest, *, progress: Progress | None = None, log: Log | None = None,
                on_event: Event | None = None) -> BatchSummary:
    """:func:`vidscale.jobs.batch.run_batch` with the units spread over ``settings.cluster``.

    ``on_event`` sees every unit handed out, lost and done (the benchmarks and tests use it).
    """
    if request.dry_run:
        return run_batch(request, progress=progress, log=log)
    say = log or (lambda _line: None)
    progress = progress or Progress(enabled=False)
    started = time.perf_counter()
    summary, found, outputs = start_batch(request, say, ClusterSummary())
    claimed: dict[Path, Path] = {}
    runs, items = [], []
    for index, source in enumerate(found.sources):
        item = check_item(source, request, outputs, claimed)
        if isinstance(item, Ready):
            runs.append(ClipRun(index, item.path, item.output, request.settings, request.frames))
        else:
            say(describe_item(item))
        items.append(item)
    if runs:
        with Cluster(request.settings.cluster, on_event=on_event, say=say) as cluster:
            summary.workers = len(cluster.workers)
            cluster.run(runs, progress=progress, say=say, should_stop=request.should_stop)
    by_index = {run.item: run.ended() for run in runs}
    summary.items = [by_index[index] if isinstance(item, Ready) else item for index, item in enumerate(items)]
    finish_batch(summary, found, request, started, say)
    return summary

