"""Atomic writes survive a power cut: the file is fsync'd before its rename, the folder after."""

from __future__ import annotations

import os

import pytest

from vidscale import atomic
from vidscale.errors import OutputError


@pytest.fixture
def synced(monkeypatch):
    """Every fsync and rename, in order, as ("fsync", what) and ("replace", name)."""
    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        calls.append(("fsync", "folder" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        fsync(fd)

    def record_replace(src, dst, **kwargs):
        calls.append(("replace", os.path.basename(dst)))
        replace(src, dst, **kwargs)

    monkeypatch.setattr(atomic.os, "fsync", record_fsync)
    monkeypatch.setattr(atomic.os, "replace", record_replace)
    return calls


def test_write_bytes_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, synced):
    atomic.write_bytes(tmp_path / "a.json", b"{}")
    assert synced == [("fsync", "file"), ("replace", "a.json"), ("fsync", "folder")]
    assert (tmp_path / "a.json").read_bytes() == b"{}" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_syncs_what_its_writer_wrote(tmp_path, synced):
    with atomic.atomic_path(tmp_path / "out.mov") as temp:
        temp.write_bytes(b"movie")
    assert synced == [("fsync", "file"), ("replace", "out.mov"), ("fsync", "folder")]


def test_writing_into_a_held_folder_never_follows_a_planted_symlink(tmp_path):
    folder, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "status.json").symlink_to(elsewhere / "victim")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        folder.rename(tmp_path / "moved")  # the path changes; the held folder is still written
        (tmp_path / "state").symlink_to(elsewhere)
        atomic.write_json(tmp_path / "state" / "status.json", {"ok": 1}, folder_fd=fd)
    finally:
        os.close(fd)
    assert list(elsewhere.iterdir()) == []  # nothing written through either link
    assert (tmp_path / "moved" / "status.json").read_text() == '{\n  "ok": 1\n}\n'
    assert not (tmp_path / "moved" / "status.json").is_symlink()


def test_a_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="output folder does not exist"):
        atomic.write_bytes(tmp_path / "nowhere" / "a.json", b"")
