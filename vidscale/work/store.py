"""The job store: one folder per job, so an interrupted run resumes instead of starting over.

Layout of a job folder::

    manifest.json           identity (input fingerprint, settings hash, plan) + finished chunks
    chunk-0000.safetensors  a finished chunk's tensors (final latents, anchor trajectory, pts)
    chunk-0001-step-0012.safetensors
                            the running chunk's last step checkpoint (latent, trajectory so far)
    report.json             written when the job completes

Every file is written under a temporary name and renamed into place (``vidscale.atomic``), and a
chunk is recorded in the manifest only after its file is complete, so a SIGKILL at any instant
leaves a store that resumes correctly. The folder name carries a hash of everything that decides
the result; different settings therefore open a different job and results are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, write_json
from ..errors import JobError, OutputError

MANIFEST = "manifest.json"


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
        path = store.root / MANIFEST
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("identity") != json.loads(json.dumps(identity, default=str)):
                raise JobError(f"{store.root}: job folder belongs to another job; remove it")
            if not saved.get("complete"):  # a finished job run again (--overwrite) starts afresh
                store.manifest = saved
                return store
        store._save_manifest()
        return store

    @property
    def finished(self) -> set[int]:
        """Indices of chunks whose results are on disk."""
        return {int(index) for index in self.manifest["chunks"]}

    def save_chunk(self, index: int, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Write a finished chunk's tensors, then record it (in that order, each atomically)."""
        name = f"chunk-{index:04d}.safetensors"
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
        name = f"chunk-{index:04d}-step-{step:04d}.safetensors"
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
        if entry:
            (self.root / entry["file"]).unlink(missing_ok=True)

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
