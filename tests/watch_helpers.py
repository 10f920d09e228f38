"""Helpers for the watch-folder and batch tests: real ``vidscale`` subprocesses and their records.

Every wait has a deadline and fails with the watcher's own output, so a broken watcher makes a
test fail quickly and say why instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np

LANCZOS = ["--preset", "preview-lanczos-2x"]  # prores-lt in .mov, no model


@dataclass
class Watch:
    """A running ``vidscale watch`` process; its stdout and stderr go to ``log``."""

    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"watcher still running after {timeout} s:\n{self.output()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        return self.wait(timeout)

    def alive(self) -> bool:
        return self.process.poll() is None


def full_disk_after(size: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes every write past ``size`` bytes of a file fail, as on a full
    disk (RLIMIT_FSIZE: the write fails with EFBIG instead of killing the process)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def start_watch(inbox: Path, *args: str, log: Path, file_size_limit: int | None = None) -> Watch:
    """Start ``python -m vidscale watch INBOX -q ARGS`` (PYTHONPATH is inherited)."""
    handle = open(log, "wb")
    try:
        process = subprocess.Popen([sys.executable, "-m", "vidscale", "watch", str(inbox), "-q", *args],
                                   stdout=handle, stderr=subprocess.STDOUT,
                                   preexec_fn=full_disk_after(file_size_limit) if file_size_limit else None)
    finally:
        handle.close()
    return Watch(process, log)


def run_vidscale(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidscale", *args], capture_output=True, text=True,
                          timeout=timeout)


def events(inbox: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The watcher's log.jsonl events (of one kind), in order."""
    path = inbox / ".vidscale" / "log.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r["event"] == kind]


def status(inbox: Path) -> dict[str, Any]:
    path = inbox / ".vidscale" / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_for(condition: Callable[[], Any], timeout: float, watch: Watch | None = None,
             what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` s or if ``watch`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if watch is not None and not watch.alive():
            raise AssertionError(f"watcher exited ({watch.process.returncode}) before {what}:\n"
                                 f"{watch.output()}")
        time.sleep(0.05)
    detail = f":\n{watch.output()}" if watch is not None else ""
    raise AssertionError(f"no {what} after {timeout} s{detail}")


def drop(clip: Path, target: Path, mtime: float | None = None) -> Path:
    """Put a copy of ``clip`` at ``target`` in one atomic step, as a finished copy arrives: written
    under a hidden name beside it (which the watcher ignores), then renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".stage-{target.name}"
    shutil.copyfile(clip, stage)
    if mtime is not None:
        os.utime(stage, (mtime, mtime))
    os.rename(stage, target)
    return target


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame of ``path``'s video stream as RGB, decoded with PyAV independently of vidscale."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def files(folder: Path) -> list[str]:
    """Relative paths of the files under ``folder`` (sorted), hidden ones included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# A multi-chunk FreeScale job on the random tiny model, small enough for two CPU cores: 12 frames
# in chunks of 4 sharing 2 -> 5 chunks, 4 steps each.
FREESCALE_TINY = """\
description = "test: FreeScale on the random tiny model, 4 steps, chunks of 4 frames"

[upscale]
engine = "freescale"

[output]
codec = "prores-lt"

[sampling]
steps = 4
guidance_scale = 1.0

[jobs]
chunk_frames = 4
overlap_frames = 2

[model]
path = "tiny"
device = "cpu"
"""


def job_progress(out_dir: Path) -> tuple[int, bool] | None:
    """(finished chunks, complete) from the one job manifest under ``out_dir``, if there is one."""
    manifests = list((out_dir / ".vidscale-jobs").glob("*/manifest.json"))
    if len(manifests) != 1:
        return None
    data = json.loads(manifests[0].read_text())  # written atomically: never torn
    return len(data["chunks"]), data["complete"]
