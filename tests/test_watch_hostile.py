"""A watch folder that strangers can write to: what a careless or hostile colleague drops.

The inbox below holds a symlink loop, symlinks to a private clip and to a folder outside, a FIFO,
an empty file, names that are not UTF-8, hold a newline or start with a dash, a 1 GiB sparse
``vidscale.toml``, one that sets ``[model] path`` and one that is a symlink; while the watcher runs,
its ``out/`` is swapped for a symlink to the outside folder (the link is then an entry like any
other, and goes to failed/; the clip after it fails: outputs are never written through it). What
must hold: the watcher never crashes, nothing outside INBOX/out is written (or read: no output is
made from a file outside), every clip ends in done/ or failed/ with its reason, and the status page
answers 200 throughout.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from watch_helpers import LANCZOS, decoded, drop, events, files, start_watch, status, wait_for

from vidscale.jobs import inbox as inbox_module
from vidscale.jobs.watch import WatchRequest, watch_folder
from vidscale.settings import FOLDER_KEYS, Settings, folder_key_allowed, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under ``folder`` (links not followed): size, mtime and content of files (reading
    them: take the access times first)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns, content)
    return found


class PageWatcher(threading.Thread):
    """Asks the status page for ``/`` and ``/status.json`` every 0.1 s and keeps every code."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.codes, self.finish = url, [], threading.Event()

    def run(self) -> None:
        while not self.finish.is_set():
            for path in ("", "status.json"):
                try:
                    with urllib.request.urlopen(self.url + path, timeout=10) as response:
                        self.codes.append(response.status)
                except urllib.error.HTTPError as error:
                    self.codes.append(error.code)
                except OSError as error:
                    self.codes.append(repr(error))
            self.finish.wait(0.1)


@pytest.mark.slow
def test_a_hostile_inbox_never_crashes_the_watcher_and_nothing_outside_is_touched(tmp_path, make_clip):
    clip = make_clip(frames=4)
    outside = tmp_path / "outside"  # what the links point at: must stay exactly as it is
    outside.mkdir()
    drop(clip, outside / "private.mov")
    (outside / "secret.txt").write_text("not for the inbox")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "loop").symlink_to("loop")
    (inbox / "x.mov").symlink_to(outside / "private.mov")
    (inbox / "linked").symlink_to(outside)
    os.mkfifo(inbox / "fifo.mp4")
    (inbox / "empty.mp4").write_bytes(b"")
    odd = os.fsdecode(b"caf\xe9.mp4")
    for name in (odd, "new\nline.mp4", "-x.mp4", "good.mp4"):
        drop(clip, inbox / name)
    (inbox / "big").mkdir()
    with open(inbox / "big" / "vidscale.toml", "wb") as handle:
        handle.truncate(2**30)  # 1 GiB, sparse: must be refused unread
    drop(clip, inbox / "big" / "c.mp4")
    (inbox / "model").mkdir()
    (inbox / "model" / "vidscale.toml").write_text(f'[model]\npath = "{outside / "secret.txt"}"\n')
    drop(clip, inbox / "model" / "d.mp4")
    (inbox / "linked-toml").mkdir()
    (inbox / "linked-toml" / "vidscale.toml").symlink_to(outside / "secret.txt")
    drop(clip, inbox / "linked-toml" / "e.mp4")
    before = snapshot(outside)
    watched = [outside, outside / "private.mov", outside / "secret.txt"]
    for path in watched:  # access times before modification times: the next read (or listing) sets them
        info = path.stat()
        os.utime(path, ns=(info.st_mtime_ns - 10**11, info.st_mtime_ns))
    read_times = [path.stat().st_atime_ns for path in watched]

    watch = start_watch(inbox, "--settle", "0.3", "--status-port", "0", *LANCZOS, log=tmp_path / "watch.log")
    pages = None
    try:
        url = wait_for(lambda: re.search(r"status page at (http://127\.0\.0\.1:\d+/)", watch.output()),
                       30, watch, "the status page's address").group(1)
        pages = PageWatcher(url)
        pages.start()
        wait_for(lambda: len(events(inbox, "done")) + len(events(inbox, "failed")) == 12, 120, watch,
                 "every dropped entry done or failed")
        (inbox / "out").rename(inbox / "out.held")  # out/ swapped for a link while it runs
        (inbox / "out").symlink_to(outside)
        drop(clip, inbox / "late.mp4")
        # the planted link is a dropped entry like any other (to failed/), and the next clip fails
        wait_for(lambda: len(events(inbox, "failed")) == 10, 60, watch, "the link and the next clip failed")
        with urllib.request.urlopen(url + "out/good_2x.mov", timeout=10) as response:
            assert response.status == 200  # the folder held since the start
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "out/private.mov", timeout=10)
    finally:
        if pages is not None:
            pages.finish.set()
            pages.join(30)
        code = watch.stop()
    output = watch.output()
    assert code == 0 and "Traceback" not in output, output
    assert pages.codes and set(pages.codes) == {200}, pages.codes

    assert [path.stat().st_atime_ns for path in watched] == read_times  # nothing outside was read or listed
    assert snapshot(outside) == before  # nor written (or moved away)
    held = inbox / "out.held"
    assert files(held) == sorted(["-x_2x.mov", os.fsdecode(b"caf\xe9_2x.mov"), "good_2x.mov", "new\nline_2x.mov"])
    assert len(decoded(held / os.fsdecode(b"caf\xe9_2x.mov"))) == 4
    assert files(inbox / "done") == sorted(["-x.mp4", odd, "good.mp4", "new\nline.mp4"])
    reasons = {path.name.removesuffix(".error.json"): json.loads(path.read_text())["error"]["message"]
               for path in (inbox / "failed").rglob("*.error.json")}
    assert sorted(reasons) == ["c.mp4", "d.mp4", "e.mp4", "empty.mp4", "fifo.mp4", "late.mp4", "linked",
                               "loop", "out", "x.mov"]
    for name in ("loop", "x.mov", "linked", "out"):
        assert "is a symbolic link" in reasons[name] and "--follow-symlinks" in reasons[name]
        assert (inbox / "failed" / name).is_symlink()  # the link itself moved, its target untouched
    assert "is a named pipe, not a file" in reasons["fifo.mp4"]
    assert "not a readable video" in reasons["empty.mp4"]
    assert "more than a folder's settings may be (64 KiB); it was not read" in reasons["c.mp4"]
    assert "model.path cannot be set in a folder's vidscale.toml" in reasons["d.mp4"]
    assert "cannot read the folder's settings (a symbolic link" in reasons["e.mp4"]
    assert "is not the output folder the watcher started with" in reasons["late.mp4"]
    assert list((inbox / "failed").glob("late.mp4"))  # the source kept, in failed/

    # names that are not UTF-8 or hold a newline are shown escaped: no forged line, valid JSON
    assert "done     caf\\xe9.mp4 -> " in output and "taking   new\\nline.mp4" in output
    assert not any(line.startswith("line.mp4") for line in output.splitlines())
    log = (inbox / ".vidscale" / "log.jsonl").read_bytes().decode("ascii").splitlines()
    assert all(json.loads(line) for line in log)
    assert {"caf\\xe9.mp4", "new\\nline.mp4", "-x.mp4"} <= {e["file"] for e in events(inbox, "done")}
    assert status(inbox)["counts"] == {"done": 4, "failed": 10}


def test_a_symlinked_own_folder_is_an_error_at_the_start_naming_it(tmp_path):
    from click.testing import CliRunner

    from vidscale.cli import main

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for folder in ("out", "done", "failed", ".vidscale"):
        inbox = tmp_path / f"inbox-{folder.strip('.')}"
        inbox.mkdir()
        (inbox / folder).symlink_to(elsewhere)
        result = CliRunner().invoke(main, ["watch", str(inbox), "--once", "--settle", "0", "-q", *LANCZOS])
        assert result.exit_code == 2
        assert f"{inbox / folder}: is a symbolic link; the watcher writes only in real folders" in result.output
    assert list(elsewhere.iterdir()) == []


def test_unreadable_entries_are_passed_over_once_and_the_rest_goes_on(tmp_path, make_clip, monkeypatch):
    """EACCES (as a colleague's private folder gives, and as root never sees: simulated) on a
    folder and on one entry: each is said once, however often the inbox is scanned."""
    inbox = tmp_path / "inbox"
    clip = make_clip(frames=3)
    for name in ("a.mp4", "locked/b.mp4", "acl.mp4", "z.mp4"):
        drop(clip, inbox / name)
    scandir, stat = os.scandir, os.stat

    def denied_scandir(path=None):
        if isinstance(path, int) and os.readlink(f"/proc/self/fd/{path}").endswith("/locked"):
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    def denied_stat(path, *args, dir_fd=None, **kwargs):
        if path == "acl.mp4" and dir_fd is not None:
            raise PermissionError(13, "Permission denied")
        return stat(path, *args, dir_fd=dir_fd, **kwargs)

    monkeypatch.setattr(inbox_module.os, "scandir", denied_scandir)
    monkeypatch.setattr(inbox_module.os, "stat", denied_stat)
    lines: list[str] = []
    request = WatchRequest(inbox=inbox, out_dir=None, settings=load_settings("preview-lanczos-2x"),
                           preset="preview-lanczos-2x", once=True, settle_seconds=0.2)
    summary = watch_folder(request, log=lines.append)
    assert (summary.done, summary.failed, summary.exit_code) == (2, 0, 0)
    assert lines.count("passed over locked: cannot read this folder (Permission denied); its clips are "
                       "not taken") == 1
    assert lines.count("passed over acl.mp4: cannot read it (Permission denied)") == 1
    assert len(events(inbox, "passed-over")) == 2
    assert files(inbox / "done") == ["a.mp4", "z.mp4"]


def test_follow_symlinks_takes_a_linked_clip_and_leaves_its_target(tmp_path, make_clip):
    outside = tmp_path / "outside"
    drop(make_clip(frames=3), outside / "clip.mp4")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "linked.mp4").symlink_to(outside / "clip.mp4")
    before = snapshot(outside)
    request = WatchRequest(inbox=inbox, out_dir=None, settings=load_settings("preview-lanczos-2x"),
                           preset="preview-lanczos-2x", once=True, settle_seconds=0, follow_symlinks=True)
    assert watch_folder(request).done == 1
    assert len(decoded(inbox / "out" / "linked_2x.mov")) == 3
    assert (inbox / "done" / "linked.mp4").is_symlink() and snapshot(outside) == before


def test_a_folder_may_set_only_the_allowed_keys_and_the_readme_lists_them():
    allowed = ["output.codec", "output.crf", "output.x264_preset", "output.audio", "output.review",
               "upscale.scale", "sampling.steps", "sampling.prompt", "sampling.seed", "sampling.scheduler",
               "freescale.alpha", "freescale.restart_fraction", "description"]
    refused = ["model.path", "model.device", "model.compile", "upscale.engine", "upscale.detail_mask",
               "jobs.memory_budget_gb", "jobs.chunk_frames", "cluster.address", "cluster.shared_path",
               "generate.width"]
    assert all(folder_key_allowed(key) for key in allowed)
    assert not any(folder_key_allowed(key) for key in refused)
    sections = {name for name, value in Settings().to_dict().items() if isinstance(value, dict)}
    assert {key.split(".")[0] for key in FOLDER_KEYS} <= sections | {"description"}
    line = next(line for line in README.read_text(encoding="utf-8").splitlines()
                if line.startswith("A folder's `vidscale.toml` may set only"))
    assert tuple(re.findall(r"`([a-z_.*]+)`", line.split("only", 1)[1])) == FOLDER_KEYS
