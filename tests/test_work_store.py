"""The job store resumes exactly what was saved and never mixes jobs."""

import json

import pytest
import torch

from vidscale.errors import JobError
from vidscale.work.store import JobStore


def test_saved_chunks_survive_a_reopen(tmp_path):
    identity = {"input": "a.mov", "settings": "abc"}
    store = JobStore.open(tmp_path, "a", identity)
    tensor = torch.randn(1, 4, 3, 8, 8)
    store.save_chunk(0, {"latents": tensor}, {"frames": [0, 3]})
    again = JobStore.open(tmp_path, "a", identity)
    assert again.root == store.root and again.finished == {0}
    assert torch.equal(again.load_chunk(0)["latents"], tensor)
    with pytest.raises(JobError, match="chunk 1 is not finished"):
        again.load_chunk(1)


def test_other_settings_open_another_job(tmp_path):
    first = JobStore.open(tmp_path, "a", {"settings": "one"})
    second = JobStore.open(tmp_path, "a", {"settings": "two"})
    assert first.root != second.root


def test_a_foreign_manifest_is_refused(tmp_path):
    store = JobStore.open(tmp_path, "a", {"settings": "one"})
    manifest = store.root / "manifest.json"
    manifest.write_text(json.dumps({"identity": {"settings": "other"}, "chunks": {}}))
    with pytest.raises(JobError, match="belongs to another job"):
        JobStore.open(tmp_path, "a", {"settings": "one"})


def test_no_partial_files_and_complete_frees_chunks(tmp_path):
    store = JobStore.open(tmp_path, "a", {"k": 1})
    store.save_chunk(0, {"x": torch.zeros(2)}, {})
    assert sorted(p.name for p in store.root.iterdir()) == ["chunk-0000.safetensors", "manifest.json"]
    store.complete({"ok": True})
    assert sorted(p.name for p in store.root.iterdir()) == ["manifest.json", "report.json"]
    assert json.loads((store.root / "manifest.json").read_text())["complete"] is True
    again = JobStore.open(tmp_path, "a", {"k": 1})  # the same job run again (--overwrite): from the start
    assert again.manifest["complete"] is False and again.finished == set()
