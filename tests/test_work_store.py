"""The job store resumes exactly what was saved, never mixes jobs, and trusts a file only once it reads."""

import json
import subprocess
import sys
import time

import pytest
import torch
from watch_helpers import FREESCALE_TINY, decoded, job_progress, run_vidscale

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


def test_a_chunk_or_step_that_does_not_read_is_not_finished_and_says_so(tmp_path, caplog):
    """After a power cut a renamed file can be empty or short: it is recomputed, not trusted."""
    identity = {"k": 2}
    store = JobStore.open(tmp_path, "a", identity)
    for index in range(3):
        store.save_chunk(index, {"x": torch.full((64,), float(index))}, {"frames": [index, index + 1]})
    store.save_step(3, 5, {"latent": torch.ones(8)})
    (store.root / "chunk-0000.safetensors").write_bytes(b"")  # empty
    data = (store.root / "chunk-0002.safetensors").read_bytes()
    (store.root / "chunk-0002.safetensors").write_bytes(data[: len(data) - 10])  # short
    with caplog.at_level("WARNING", logger="vidscale.work.store"):
        again = JobStore.open(tmp_path, "a", identity)
    assert again.finished == {1}
    assert again.running == {"chunk": 3, "step": 5, "file": "chunk-0003-step-0005.safetensors"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("cannot be read; it is computed again" in line for line in lines)
    assert "chunk 0 (chunk-0000.safetensors)" in lines[0] and "chunk 2 (chunk-0002.safetensors)" in lines[1]
    assert torch.equal(again.load_chunk(1)["x"], torch.full((64,), 1.0))
    (again.root / "chunk-0003-step-0005.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}")  # header lies
    caplog.clear()
    with caplog.at_level("WARNING", logger="vidscale.work.store"):
        assert JobStore.open(tmp_path, "a", identity).running is None
    assert "the step checkpoint of chunk 3" in caplog.records[0].getMessage()


def test_manifest_names_that_are_not_the_store_s_own_are_never_read_or_deleted(tmp_path, caplog):
    identity = {"k": 3}
    store = JobStore.open(tmp_path, "a", identity)
    outside = tmp_path / "precious.safetensors"
    store.save_chunk(0, {"x": torch.zeros(2)}, {})
    outside.write_bytes((store.root / "chunk-0000.safetensors").read_bytes())  # a valid file, elsewhere
    manifest = json.loads((store.root / "manifest.json").read_text())
    manifest["chunks"] = {"0": {"file": str(outside)}, "1": {"file": "../precious.safetensors"},
                          "x": {"file": "chunk-0000.safetensors"}}
    manifest["running"] = {"chunk": 2, "step": 1, "file": str(outside)}
    (store.root / "manifest.json").write_text(json.dumps(manifest))
    again = JobStore.open(tmp_path, "a", identity)
    assert again.finished == set() and again.running is None
    again.save_chunk(0, {"x": torch.ones(2)}, {})
    again.complete({"ok": True})
    assert outside.exists()  # named by the manifest, never touched
    torn = JobStore.open(tmp_path, "b", identity)  # a manifest that does not parse: start afresh
    (torn.root / "manifest.json").write_bytes(b"")
    with caplog.at_level("WARNING", logger="vidscale.work.store"):
        assert JobStore.open(tmp_path, "b", identity).finished == set()
    assert "the job's manifest cannot be read" in caplog.records[-1].getMessage()


@pytest.mark.slow
def test_chunk_files_truncated_after_a_sigkill_are_recomputed_to_a_clean_run_s_frames(tmp_path, make_clip):
    """What a power cut can leave: the manifest names chunks whose files are empty or short. The
    rerun recomputes them (saying so) and its frames equal an uninterrupted run's."""
    clip = make_clip(frames=12)
    preset = tmp_path / "tiny.toml"
    preset.write_text(FREESCALE_TINY)  # 5 chunks of 3 steps on the random tiny model
    reference = tmp_path / "reference.mov"
    clean = run_vidscale("upscale", str(clip), "--preset", str(preset), "-o", str(reference), "-q", timeout=300)
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "out"
    args = ["upscale", str(clip), "--preset", str(preset), "-o", str(out / "a_2x.mov"), "-q"]
    process = subprocess.Popen([sys.executable, "-m", "vidscale", *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while (job_progress(out) or (0, False))[0] < 3:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "three chunks not stored within 300 s"
        time.sleep(0.02)
    process.kill()
    process.wait(30)
    finished, complete = job_progress(out)
    assert 3 <= finished < 5 and not complete
    chunks = sorted(out.glob(".vidscale-jobs/*/chunk-000[0-2].safetensors"))
    assert len(chunks) == 3
    chunks[0].write_bytes(b"")  # the rename reached the disk, the data did not
    for chunk in chunks[1:]:
        data = chunk.read_bytes()
        chunk.write_bytes(data[: len(data) // 2])
    rerun = run_vidscale(*args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("cannot be read; it is computed again") == 3, rerun.stderr
    frames, expected = decoded(out / "a_2x.mov"), decoded(reference)
    assert len(frames) == len(expected) == 12
    assert all((got == want).all() for got, want in zip(frames, expected))
