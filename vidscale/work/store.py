"""The job store: one folder per job, so an interrupted run resumes instead of starting over.

Layout of a job folder::

    manifest.json           identity (input fingerprint, settings hash, plan) + finished chunks
    chunk-0000.safetensors  a finished chunk's tensors (final latents, anchor trajectory, pts)
    chunk-0001-step-0012.safetensors
                            the running chunk's last step checkpoint (latent, trajectory so far)
    report.json             written when the job completes

Every file is written under a temporary name, fsync'd and renamed into place (``vidscale.atomic``),
and a chunk is recorded in the manifest only after its file is complete, so a SIGKILL at any
instant leaves a store that resumes correctly. The folder name carries a hash of everything that
decides the result; different settings therefore open a different job and results are never mixed.

A stored file is trusted only once it reads: on opening a job, every file the manifest names must
have the store's own name for its entry (never a path: the manifest may come from anyone who can
write the folder) and be a complete safetensors file (its header parses and its size is what the
header says). One that is not (a disk that lost the data after a power cut, a truncated copy) is
treated as not finished and recomputed, with one warning line saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json
from ..errors import JobError, OutputError

MANIFEST = "manifest.json"
HEADER_LIMIT = 100 * 2**20  # safetensors' own limit on a header's size
log = logging.getLogger(__name__)  # unconfigured, Python prints a warning's bare message to stderr


def chunk_file(index: int) -> str:
    return f"chunk-{index:04d}.safetensors"


def step_file(index: int, step: int) -> str:
    return f"chunk-{index:04d}-step-{step:04d}.safetensors"


def readable(path: Path) -> bool:
    """True when ``path`` is a complete safetensors file: a regular file (no symlink), whose header
    parses and whose size is exactly the header plus the tensor data it describes."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        with os.fdopen(handle, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            head = stream.read(8)
            if len(head) < 8:
                return False
            (length,) = struct.unpack("<Q", head)
            if length > min(HEADER_LIMIT, size - 8):
                return False
            header = json.loads(stream.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
        return size == 8 + length + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies an input file: its resolved path, size and modification time."""
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def job_key(identity: dict[str, Any]) -> str:
    """A short stable hash of a job's identity."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


class JobStore:
    """A job folder: which chunks are finished, and their saved tensors."""

    def __init__(self, root: Path, identity: dict[str, Any]):
        self.root = Path(root)
        self.manifest: dict[str, Any] = {"identity": identity, "chunks": {}, "complete": False}

    @classmethod
    def open(cls, parent: Path, name: str, identity: dict[str, Any]) -> "JobStore":
        """Open (resume) or create the job for ``identity`` under ``parent/name-<key>``."""
        store = cls(Path(parent) / f"{name}-{job_key(identity)}", identity)
        store.root.mkdir(parents=True, exist_ok=True)
        saved = store._read_manifest()
        if saved is not None:
            if saved.get("identity") != json.loads(json.dumps(identity, default=str)):
                raise JobError(f"{store.root}: job folder belongs to another job; remove it")
            if not saved.get("complete"):  # a finished job run again (--overwrite) starts afresh
                store.manifest = store._trusted(saved)
                if store.manifest != saved:  # entries dropped: say it once, not on every open
                    store._save_manifest()
                return store
        store._save_manifest()
        return store

    def _read_manifest(self) -> dict[str, Any] | None:
        """The saved manifest, or None when there is none, or one that does not read (the job then
        starts afresh: its files are only ever trusted through a manifest)."""
        path = self.root / MANIFEST
        try:
            saved = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: the job's manifest cannot be read (%s); starting the job afresh", path, exc)
            return None
        if not isinstance(saved, dict):
            log.warning("%s: the job's manifest is not a manifest; starting the job afresh", path)
            return None
        return saved

    def _trusted(self, saved: dict[str, Any]) -> dict[str, Any]:
        """``saved`` with only the entries whose files have the store's own names and read
        completely; the others are dropped, each with a warning line, so their work is done again."""
        manifest: dict[str, Any] = {"identity": saved["identity"], "chunks": {}, "complete": False}
        entries = saved.get("chunks")
        for key, entry in (entries.items() if isinstance(entries, dict) else []):
            own = chunk_file(int(key)) if key.isdigit() else None
            if isinstance(entry, dict) and own and entry.get("file") == own \
                    and self._reads(own, f"chunk {key}"):
                manifest["chunks"][key] = entry
        running = saved.get("running")
        if isinstance(running, dict) and isinstance(running.get("chunk"), int) \
                and isinstance(running.get("step"), int):
            own = step_file(running["chunk"], running["step"])
            if running.get("file") == own and self._reads(own, f"the step checkpoint of chunk {running['chunk']}"):
                manifest["running"] = running
        return manifest

    def _reads(self, name: str, what: str) -> bool:
        """True when the store's own file ``name`` reads; else it is removed and a line says so."""
        if readable(self.root / name):
            return True
        log.warning("%s: %s (%s) cannot be read; it is computed again", self.root, what, name)
        (self.root / name).unlink(missing_ok=True)
        return False

    @property
    def finished(self) -> set[int]:
        """Indices of chunks whose results are on disk."""
        return {int(index) for index in self.manifest["chunks"]}

    def save_chunk(self, index: int, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Write a finished chunk's tensors, then record it (in that order, each atomically)."""
        name = chunk_file(index)
        self._write(name, tensors, f"chunk {index}")
        self.manifest["chunks"][str(index)] = {"file": name, **info}
        running = self.manifest.pop("running", None)  # the chunk's checkpoint is spent
        self._save_manifest()
        self._remove(running)

    def save_step(self, index: int, step: int, tensors: dict[str, torch.Tensor]) -> None:
        """Checkpoint running chunk ``index`` after ``step`` steps (replacing its last checkpoint).

        The new file is complete before the manifest names it, and the old one is removed only
        after, so a kill at any instant leaves one valid checkpoint (or none, before the first).
        """
        name = step_file(index, step)
        self._write(name, tensors, f"the step {step} checkpoint of chunk {index}")
        old = self.manifest.get("running")
        self.manifest["running"] = {"chunk": index, "step": step, "file": name}
        self._save_manifest()
        if old and old["file"] != name:
            self._remove(old)

    def load_step(self, index: int) -> tuple[int, dict[str, torch.Tensor]] | None:
        """(steps done, tensors) of chunk ``index``'s last checkpoint, or None."""
        running = self.manifest.get("running")
        if not running or running["chunk"] != index:
            return None
        return running["step"], load_file(str(self.root / running["file"]))

    @property
    def running(self) -> dict[str, Any] | None:
        """The running chunk's checkpoint entry ({"chunk", "step", "file"}), if one is saved."""
        return self.manifest.get("running")

    def _remove(self, entry: dict[str, Any] | None) -> None:
        """Delete an entry's file: only ever a name of the store's own (checked when opened)."""
        if entry:
            (self.root / Path(entry["file"]).name).unlink(missing_ok=True)

    def load_chunk(self, index: int) -> dict[str, torch.Tensor]:
        entry = self.manifest["chunks"].get(str(index))
        if entry is None:
            raise JobError(f"{self.root}: chunk {index} is not finished")
        return load_file(str(self.root / entry["file"]))

    def complete(self, report: dict[str, Any]) -> None:
        """Mark the job done, write report.json and free the chunk files (the output exists now)."""
        write_json(self.root / "report.json", report)
        for entry in [*self.manifest["chunks"].values(), self.manifest.pop("running", None)]:
            self._remove(entry)
        self.manifest["chunks"] = {}
        self.manifest["complete"] = True
        self._save_manifest()

    def _write(self, name: str, tensors: dict[str, torch.Tensor], what: str) -> None:
        try:
            with atomic_path(self.root / name) as temp:
                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(temp))
        except (OSError, SafetensorError) as exc:  # a full disk: the chunks saved so far are kept
            raise OutputError(f"{self.root}: cannot write {what} of the job ({exc}); free some space "
                              "and run the same command again: it resumes after the last saved chunk") from None

    def _save_manifest(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)


__all__ = ["JobStore", "fingerprint", "job_key"]
