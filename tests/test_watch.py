"""The watch folder end to end: real ``vidscale watch`` subprocesses, real files, real signals.

Clips are tiny (64x48, 12 frames) and settle times short, so each test takes a few seconds; every
wait has a deadline. What is checked is what a user of a hot folder relies on: a clip is taken only
when complete, in arrival order, exactly once; a bad clip never stops the watcher; nothing is lost
(sources are byte-identical wherever they end up); a restart resumes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import ffmpeg
import pytest
from click.testing import CliRunner
from conftest import frame_index
from watch_helpers import (
    FREESCALE_TINY,
    LANCZOS,
    decoded,
    drop,
    events,
    files,
    job_progress,
    run_vidscale,
    start_watch,
    status,
    wait_for,
)

from vidscale.cli import main
from vidscale.jobs.arrivals import ArrivalQueue
from vidscale.settings import load_settings
from vidscale.work.plan import make_plan

SETTLE = ["--settle", "0.5"]


@pytest.fixture
def clip(make_clip):
    """A 64x48, 12-frame H.264 clip whose frames show their index."""
    return make_clip(frames=12)


@pytest.fixture
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(tmp_path):
    """``watcher(inbox, *args)`` starts ``vidscale watch``; anything still running is killed after."""
    started = []

    def start(folder, *args, **options):
        watch = start_watch(folder, *args, log=tmp_path / f"watch-{len(started)}.log", **options)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        if watch.alive():
            watch.process.kill()
            watch.process.wait(10)


def frame_numbers(path):
    return [frame_index(frame) for frame in decoded(path)]


@pytest.mark.slow
def test_a_file_written_slowly_is_taken_only_once_complete(tmp_path, clip, inbox, watcher):
    data = clip.read_bytes()
    pieces = 8
    size = -(-len(data) // pieces)
    target = inbox / "slow.mp4"
    target.write_bytes(data[:size])
    last_write = []

    def write_the_rest():
        for piece in range(1, pieces):
            time.sleep(0.35)
            with open(target, "ab") as handle:
                handle.write(data[piece * size:(piece + 1) * size])
            last_write.append(time.time())

    writer = threading.Thread(target=write_the_rest)
    writer.start()
    watch = watcher(inbox, "--once", "--settle", "1.5", *LANCZOS)
    try:
        assert watch.wait(60) == 0, watch.output()
    finally:
        writer.join(10)
    [claimed] = events(inbox, "claimed")
    assert claimed["t"] >= last_write[-1] + 1.4  # settled for 1.5 s after the last piece
    assert not events(inbox, "failed")
    assert (inbox / "done" / "slow.mp4").read_bytes() == data
    assert frame_numbers(inbox / "out" / "slow_2x.mov") == list(range(12))


@pytest.mark.slow
def test_five_clips_dropped_at_once_are_done_once_each_in_arrival_order(tmp_path, clip, inbox, watcher):
    watch = watcher(inbox, *SETTLE, *LANCZOS)
    wait_for(lambda: status(inbox).get("state") == "watching", 20, watch, "a watching status")
    names = ["e.mp4", "c.mp4", "a.mp4", "d.mp4", "b.mp4"]
    newest_first = time.time() - 100
    for number, name in enumerate(names):  # mtimes in the opposite order: arrival is what counts
        drop(clip, inbox / name, mtime=newest_first - 10 * number)
    wait_for(lambda: len(events(inbox, "done")) == 5, 60, watch, "five clips done")
    assert watch.stop() == 0, watch.output()
    assert [e["file"] for e in events(inbox, "claimed")] == names
    assert sorted(e["file"] for e in events(inbox, "done")) == sorted(names)
    assert files(inbox / "done") == sorted(names)
    assert files(inbox / "out") == sorted(name.replace(".mp4", "_2x.mov") for name in names)
    assert files(inbox / ".vidscale" / "processing") == []
    assert frame_numbers(inbox / "out" / "c_2x.mov") == list(range(12))


@pytest.mark.slow
def test_clips_there_before_the_start_go_in_mtime_order(tmp_path, clip, inbox, watcher):
    start = time.time() - 100
    for name, age in [("b.mp4", 30), ("c.mp4", 10), ("a.mp4", 20)]:
        drop(clip, inbox / name, mtime=start - age)
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS)
    assert watch.wait(60) == 0, watch.output()
    assert [e["file"] for e in events(inbox, "claimed")] == ["b.mp4", "a.mp4", "c.mp4"]


@pytest.mark.slow
def test_a_corrupt_clip_fails_alone_and_the_watcher_goes_on(tmp_path, clip, inbox, watcher):
    watch = watcher(inbox, *SETTLE, "--poll", *LANCZOS)
    wait_for(lambda: status(inbox).get("state") == "watching", 20, watch, "a watching status")
    garbage = os.urandom(20_000)
    (inbox / "bad.mp4").write_bytes(garbage)
    truncated = clip.read_bytes()[: len(clip.read_bytes()) // 2]
    (inbox / "cut.mov").write_bytes(truncated)
    wait_for(lambda: len(events(inbox, "failed")) == 2, 30, watch, "two failures")
    drop(clip, inbox / "good.mp4")
    wait_for(lambda: events(inbox, "done"), 30, watch, "the good clip done")
    assert watch.alive()
    assert watch.stop() == 0, watch.output()
    assert (inbox / "failed" / "bad.mp4").read_bytes() == garbage
    assert (inbox / "failed" / "cut.mov").read_bytes() == truncated
    error = json.loads((inbox / "failed" / "bad.mp4.error.json").read_text())
    assert error["file"] == "bad.mp4" and error["error"]["type"] == "InvalidMediaError"
    assert "bad.mp4" in error["error"]["message"] and error["settings"] == ["preset preview-lanczos-2x"]
    assert error["time"]
    assert (inbox / "failed" / "cut.mov.error.json").exists()
    assert frame_numbers(inbox / "out" / "good_2x.mov") == list(range(12))
    assert files(inbox / "done") == ["good.mp4"]


@pytest.mark.slow
def test_a_clip_that_cannot_reach_failed_stays_where_it_is(tmp_path, inbox, watcher):
    garbage = os.urandom(5000)
    (inbox / "x").mkdir()
    (inbox / "x" / "bad.mp4").write_bytes(garbage)
    (inbox / "failed").mkdir()
    (inbox / "failed" / "x").write_text("a file where failed/x/ must go")
    watch = watcher(inbox, *SETTLE, *LANCZOS)
    wait_for(lambda: events(inbox, "stuck"), 20, watch, "a stuck event")
    time.sleep(1.6)  # three more settle times: it is not tried (and logged) again and again
    assert watch.stop() == 0, watch.output()
    assert len(events(inbox, "stuck")) == 1 and not events(inbox, "failed")
    assert (inbox / "x" / "bad.mp4").read_bytes() == garbage


@pytest.mark.slow
def test_an_unwritable_output_folder_fails_the_clip_and_keeps_the_source(tmp_path, clip, inbox, watcher):
    out = tmp_path / "out"
    out.mkdir()
    blocked = out / "sub"
    blocked.mkdir()
    blocked.chmod(0o555)
    if os.access(blocked, os.W_OK):  # root ignores modes: put a file where the folder must be
        blocked.chmod(0o755)
        blocked.rmdir()
        blocked.write_text("a file in the way of the output folder")
    drop(clip, inbox / "sub" / "a.mp4")
    drop(clip, inbox / "b.mp4")
    try:
        watch = watcher(inbox, "--once", *SETTLE, "--out-dir", str(out), *LANCZOS)
        assert watch.wait(60) == 1, watch.output()  # a job failed
    finally:
        if blocked.is_dir():
            blocked.chmod(0o755)
    assert (inbox / "failed" / "sub" / "a.mp4").read_bytes() == clip.read_bytes()
    error = json.loads((inbox / "failed" / "sub" / "a.mp4.error.json").read_text())
    assert error["error"]["type"] == "OutputError" and str(blocked) in error["error"]["message"]
    assert files(inbox / "done") == ["b.mp4"]  # the failure did not stop the next clip
    assert frame_numbers(out / "b_2x.mov") == list(range(12))


@pytest.mark.slow
def test_a_full_disk_fails_the_clip_with_the_reason_and_keeps_the_source(tmp_path, make_clip, inbox, watcher):
    big = make_clip(width=320, height=240, frames=12)  # its 640x480 ProRes output passes 64 KB
    drop(big, inbox / "a.mp4")
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS, file_size_limit=64_000)
    assert watch.wait(60) == 1, watch.output()  # a job failed
    assert (inbox / "failed" / "a.mp4").read_bytes() == big.read_bytes()
    error = json.loads((inbox / "failed" / "a.mp4.error.json").read_text())
    assert error["error"]["type"] == "OutputError" and "cannot write the output" in error["error"]["message"]
    assert files(inbox / "out") == []  # no partial output under any name


@pytest.mark.slow
def test_a_subfolder_vidscale_toml_overrides_the_preset(tmp_path, clip, inbox, watcher):
    (inbox / "web").mkdir()
    (inbox / "web" / "vidscale.toml").write_text('[output]\ncodec = "h264"\ncrf = 23\n')
    drop(clip, inbox / "web" / "a.mp4")
    drop(clip, inbox / "b.mp4")
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS)
    assert watch.wait(60) == 0, watch.output()
    assert files(inbox / "out") == ["b_2x.mov", "web/a_2x.mp4"]
    web = ffmpeg.probe(str(inbox / "out" / "web" / "a_2x.mp4"))["streams"][0]
    master = ffmpeg.probe(str(inbox / "out" / "b_2x.mov"))["streams"][0]
    assert (web["codec_name"], web["width"], web["height"]) == ("h264", 128, 96)
    assert (master["codec_name"], master["profile"]) == ("prores", "LT")
    assert files(inbox / "done") == ["b.mp4", "web/a.mp4"]
    started = {e["file"]: e["settings"] for e in events(inbox, "started")}
    assert started["web/a.mp4"] == ["preset preview-lanczos-2x", "web/vidscale.toml"]


@pytest.mark.slow
def test_a_bad_vidscale_toml_fails_its_clips_with_the_reason(tmp_path, clip, inbox, watcher):
    (inbox / "x").mkdir()
    (inbox / "x" / "vidscale.toml").write_text('[output]\ncodec = "mpeg2"\n')
    drop(clip, inbox / "x" / "a.mp4")
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS)
    assert watch.wait(60) == 2, watch.output()  # bad settings: bad input
    error = json.loads((inbox / "failed" / "x" / "a.mp4.error.json").read_text())
    assert error["error"]["type"] == "SettingsError" and "mpeg2" in error["error"]["message"]
    assert (inbox / "failed" / "x" / "a.mp4").read_bytes() == clip.read_bytes()


@pytest.mark.slow
def test_a_restart_finishes_claimed_clips_first_and_never_redoes_one(tmp_path, clip, inbox, watcher):
    processing = inbox / ".vidscale" / "processing"
    drop(clip, processing / "finished.mp4")  # its output exists: a crash hit before the move
    out = inbox / "out"
    out.mkdir()
    (out / "finished_2x.mov").write_bytes(b"the earlier run's output")
    drop(clip, processing / "half.mp4")  # claimed, no output yet
    drop(clip, inbox / "new.mp4", mtime=time.time() - 1000)  # older than both, still after them
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS)
    assert watch.wait(60) == 0, watch.output()
    assert [e["file"] for e in events(inbox, "done")] == ["finished.mp4", "half.mp4", "new.mp4"]
    assert [e["file"] for e in events(inbox, "resumed")] == ["half.mp4"]
    assert (out / "finished_2x.mov").read_bytes() == b"the earlier run's output"
    assert files(inbox / "done") == ["finished.mp4", "half.mp4", "new.mp4"]
    assert files(processing) == []


@pytest.mark.slow
def test_a_clip_dropped_again_gets_its_own_output(tmp_path, clip, inbox, watcher):
    (inbox / "out").mkdir()
    (inbox / "out" / "a_2x.mov").write_bytes(b"yesterday's result")
    drop(clip, inbox / "a.mp4")
    watch = watcher(inbox, "--once", *SETTLE, *LANCZOS)
    assert watch.wait(60) == 0, watch.output()
    assert (inbox / "out" / "a_2x.mov").read_bytes() == b"yesterday's result"
    assert frame_numbers(inbox / "out" / "a (2)_2x.mov") == list(range(12))
    assert files(inbox / "done") == ["a (2).mp4"]


@pytest.mark.slow
def test_two_watchers_never_take_the_same_clip(tmp_path, clip, inbox, watcher):
    names = [f"{letter}.mp4" for letter in "abcdef"]
    for name in names:
        drop(clip, inbox / name)
    first = watcher(inbox, "--once", "--settle", "0.2", *LANCZOS)
    second = watcher(inbox, "--once", "--settle", "0.2", *LANCZOS)
    assert first.wait(60) == 0 and second.wait(60) == 0, first.output() + second.output()
    claimed = sorted(e["file"] for e in events(inbox, "claimed"))
    assert claimed == names  # each exactly once, by one of the two
    assert files(inbox / "done") == names
    assert files(inbox / "out") == sorted(n.replace(".mp4", "_2x.mov") for n in names)


@pytest.mark.slow
def test_sigterm_while_idle_exits_0_at_once(tmp_path, inbox, watcher):
    watch = watcher(inbox, *SETTLE, *LANCZOS)
    wait_for(lambda: status(inbox).get("state") == "watching", 20, watch, "a watching status")
    began = time.monotonic()
    assert watch.stop(signal.SIGINT) == 0, watch.output()
    assert time.monotonic() - began < 5
    assert status(inbox)["state"] == "stopped" and events(inbox)[-1]["event"] == "stopped"


def test_without_native_events_it_polls(tmp_path, clip, inbox, monkeypatch):
    """In-process: the native observer failing to start (inotify limits) falls back to polling."""
    from vidscale.jobs import watch as watch_module
    from vidscale.settings import load_settings

    class Broken(watch_module.Observer):
        def start(self):
            raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(watch_module, "Observer", Broken)
    drop(clip, inbox / "a.mp4")
    lines = []
    request = watch_module.WatchRequest(inbox=inbox, out_dir=None, settings=load_settings("preview-lanczos-2x"),
                                        preset="preview-lanczos-2x", once=True, settle_seconds=0.2)
    summary = watch_module.watch_folder(request, log=lines.append)
    assert summary.done == 1 and summary.failed == 0
    assert any("polling" in line for line in lines)
    assert events(inbox, "watching")[0]["observer"] == "polling"


def test_arrival_queue_settles_and_orders():
    """The queue alone, with a fake clock: changes restart the settle time; order is arrival."""

    def stat(size, mtime):
        return SimpleNamespace(st_size=size, st_mtime_ns=mtime)

    queue = ArrivalQueue(settle_seconds=1.0)
    a, b, c = Path("a"), Path("b"), Path("c")
    assert queue.update([(b, stat(5, 2)), (a, stat(5, 9))], now=0.0) == [b, a]  # no events: mtime
    assert queue.ready(0.9) == []
    queue.update([(b, stat(5, 2)), (a, stat(6, 10)), (c, stat(1, 1))], now=1.0, events={c: 1})
    assert queue.ready(1.0) == [b]  # a grew, c is new
    assert queue.due_in(1.0) == 0.0 and queue.due_in(1.2) == 0.0  # b is due (overdue)
    assert queue.ready(2.0) == [b, a, c]
    queue.hold(a)
    assert queue.ready(2.0) == [b, c] and queue.waiting({a}) is False
    queue.update([(b, stat(5, 2)), (a, stat(7, 11)), (c, stat(1, 1))], now=2.5)
    assert queue.waiting({a}) and queue.ready(3.5) == [b, a, c]  # a changed: no longer held
    queue.update([(a, stat(7, 11))], now=4.0)
    assert queue.queued() == [a]  # b and c vanished
    queue.update([(a, stat(8, 12))], now=5.0)
    assert queue.due_in(5.25) == 0.75
    queue.forget(a)
    assert queue.due_in(6.0) is None and queue.queued() == []


# -- FreeScale jobs (the random tiny model): interrupted and resumed ----------------------------


@pytest.fixture
def freescale(tmp_path):
    """Path of a preset for a 5-chunk FreeScale job on the tiny model (see FREESCALE_TINY)."""
    preset = tmp_path / "tiny-freescale.toml"
    preset.write_text(FREESCALE_TINY)
    assert len(make_plan(64, 48, (0, 12), load_settings(preset)).chunks) == 5
    return preset


def wait_for_a_chunk(inbox, out, watch):
    """Until the job store records a finished chunk; fails at once if the clip failed instead."""

    def chunk_done():
        failed = events(inbox, "failed")
        assert not failed, f"the job failed: {failed}"
        return (job_progress(out) or (0, False))[0] >= 1

    wait_for(chunk_done, 120, watch, "a finished chunk")


@pytest.mark.slow
def test_sigkill_mid_job_then_a_restart_resumes_to_the_same_output(tmp_path, clip, inbox, watcher,
                                                                   freescale):
    reference = tmp_path / "reference.mov"
    made = run_vidscale("upscale", str(clip), "--preset", str(freescale), "-o", str(reference), "-q",
                        timeout=180)
    assert made.returncode == 0, made.stderr
    drop(clip, inbox / "a.mp4")
    out = inbox / "out"
    watch = watcher(inbox, *SETTLE, "--preset", str(freescale))
    wait_for_a_chunk(inbox, out, watch)
    watch.process.kill()
    watch.process.wait(10)
    finished, complete = job_progress(out)
    assert 1 <= finished < 5 and not complete
    assert files(inbox / ".vidscale" / "processing") == ["a.mp4"]
    assert not (out / "a_2x.mov").exists()
    again = watcher(inbox, "--once", *SETTLE, "--preset", str(freescale))
    assert again.wait(180) == 0, again.output()
    assert [e["file"] for e in events(inbox, "claimed")] == ["a.mp4"]
    assert [e["file"] for e in events(inbox, "resumed")] == ["a.mp4"]
    assert job_progress(out) == (0, True)  # the same job folder, now complete
    frames, expected = decoded(out / "a_2x.mov"), decoded(reference)
    assert len(frames) == len(expected) == 12
    assert all((got == want).all() for got, want in zip(frames, expected))
    assert [f for f in files(out) if not f.startswith(".vidscale-jobs")] == ["a_2x.mov"]
    assert (inbox / "done" / "a.mp4").read_bytes() == clip.read_bytes()


@pytest.mark.slow
def test_sigterm_mid_job_stops_after_the_chunk_and_a_restart_finishes(tmp_path, clip, inbox, watcher,
                                                                     freescale, make_clip):
    drop(clip, inbox / "a.mp4")
    out = inbox / "out"
    watch = watcher(inbox, *SETTLE, "--preset", str(freescale))
    wait_for_a_chunk(inbox, out, watch)
    assert watch.stop(signal.SIGTERM, timeout=60) == 0, watch.output()
    finished, complete = job_progress(out)
    assert finished < 5 and not complete  # it stopped after a chunk, not at the end
    assert [e["file"] for e in events(inbox, "interrupted")] == ["a.mp4"]
    assert files(inbox / ".vidscale" / "processing") == ["a.mp4"]
    assert not (out / "a_2x.mov").exists() and files(inbox / "done") == []
    drop(make_clip(frames=6), inbox / "b.mp4")  # a second clip: the restart keeps the model for it
    again = watcher(inbox, "--once", *SETTLE, "--preset", str(freescale))
    assert again.wait(180) == 0, again.output()
    for name, frames in [("a_2x.mov", 12), ("b_2x.mov", 6)]:
        stream = ffmpeg.probe(str(out / name))["streams"][0]
        assert (stream["codec_name"], stream["width"], stream["height"], int(stream["nb_frames"])) == \
            ("prores", 128, 96, frames)
    assert files(inbox / "done") == ["a.mp4", "b.mp4"] and files(inbox / ".vidscale" / "processing") == []
    restart = [e["event"] for e in events(inbox)]
    restart = restart[len(restart) - restart[::-1].index("watching"):]
    assert restart.count("model-loaded") == 1 and restart.count("done") == 2


def test_a_failure_line_names_the_file_once_and_says_what_to_do(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "junk.mp4").write_bytes(b"not a clip" * 300)
    result = CliRunner().invoke(main, ["watch", str(inbox), "--once", "--settle", "0", "-q", *LANCZOS])
    line = next(line for line in result.output.splitlines() if line.startswith("failed"))
    assert line.startswith("failed   junk.mp4: ") and str(inbox) not in line, line
    assert "(now failed/junk.mp4; fix the cause and drop it in again)" in line


# -- the watch folder as an editor drives it (#24) ----------------------------------------------


def test_without_weights_a_freescale_watch_exits_2_at_the_start_naming_the_fix(tmp_path, clip, monkeypatch):
    """Not clip after clip into failed/ for the same cause: one line, before anything is touched."""
    monkeypatch.setenv("VIDSCALE_MODEL", str(tmp_path / "nowhere"))
    inbox = tmp_path / "inbox"
    drop(clip, inbox / "a.mp4")
    result = CliRunner().invoke(main, ["watch", str(inbox), "--once", "--settle", "0", "-q"])  # prores-hq-2x
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: no VideoCrafter2 weights at {tmp_path / 'nowhere'} ($VIDSCALE_MODEL=")
    assert "Or pass --model" in line and "`--model tiny` runs a random test model" in line
    assert files(inbox) == ["a.mp4"]  # no failed/, no .vidscale/: nothing was done
    lanczos = CliRunner().invoke(main, ["watch", str(inbox), "--once", "--settle", "0", "-q", *LANCZOS])
    assert lanczos.exit_code == 0, lanczos.output  # the lanczos engine needs no weights


@pytest.mark.slow
def test_a_test_model_result_says_so_on_its_watch_line_and_in_its_event(tmp_path, make_clip):
    from vidscale.jobs.watch import WatchRequest, watch_folder
    from vidscale.pipeline.result import TEST_MODEL_NOTE

    preset = tmp_path / "tiny.toml"
    preset.write_text(FREESCALE_TINY.replace("steps = 4", "steps = 2"))
    inbox = tmp_path / "inbox"
    drop(make_clip(frames=3), inbox / "a.mp4")
    lines: list[str] = []
    request = WatchRequest(inbox=inbox, out_dir=None, settings=load_settings(preset), preset=str(preset),
                           once=True, settle_seconds=0)
    assert watch_folder(request, log=lines.append).done == 1
    [done] = [line for line in lines if line.startswith("done")]
    assert done.startswith(f"done     a.mp4 -> {inbox / 'out' / 'a_2x.mov'} (3 frames, ")
    assert done.endswith(f" s; {TEST_MODEL_NOTE})")
    assert events(inbox, "done")[0]["note"] == TEST_MODEL_NOTE
    assert status(inbox)["done"][0]["note"] == TEST_MODEL_NOTE


def test_a_clip_that_succeeds_after_a_failure_leaves_no_stale_error_file(tmp_path, clip):
    from vidscale.jobs.watch import WatchRequest, watch_folder

    inbox = tmp_path / "inbox"
    (inbox / "x").mkdir(parents=True)
    (inbox / "x" / "vidscale.toml").write_text('[output]\ncodec = "mpeg2"\n')
    drop(clip, inbox / "x" / "a.mp4")
    (inbox / "junk.mp4").write_bytes(b"not a clip" * 300)
    request = WatchRequest(inbox=inbox, out_dir=None, settings=load_settings("preview-lanczos-2x"),
                           preset="preview-lanczos-2x", once=True, settle_seconds=0)
    assert watch_folder(request).failed == 2
    assert files(inbox / "failed") == ["junk.mp4", "junk.mp4.error.json", "x/a.mp4", "x/a.mp4.error.json"]
    (inbox / "x" / "vidscale.toml").write_text('[output]\ncodec = "prores-lt"\n')  # the cause fixed,
    os.rename(inbox / "failed" / "x" / "a.mp4", inbox / "x" / "a.mp4")  # the clip dropped in again
    lines: list[str] = []
    assert watch_folder(request, log=lines.append).done == 1
    assert files(inbox / "done") == ["x/a.mp4"]
    assert files(inbox / "failed") == ["junk.mp4", "junk.mp4.error.json"]  # only what is failed now
    assert "cleared  failed/x/a.mp4.error.json: x/a.mp4 is done now" in lines
    [cleared] = events(inbox, "cleared")
    assert cleared["file"] == "x/a.mp4" and cleared["removed"] == str(inbox / "failed" / "x" / "a.mp4.error.json")
