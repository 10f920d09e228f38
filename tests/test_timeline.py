"""``vidscale timeline``: used ranges + handles per file, merged, upscaled, relinked frame-exactly.

Sources are intra-coded ProRes with their frame index burned in (conftest), at 29.97 drop-frame
starting just before a dropped minute boundary, and at 23.976 starting at 01:00:00:00.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
from click.testing import CliRunner
from conftest import frame_index

from vidscale.cli import main
from vidscale.errors import InputError, Interrupted
from vidscale.jobs.clocks import MediaClock, merge_spans, with_handles
from vidscale.jobs.edits import import_otio
from vidscale.jobs.media_paths import local_path
from vidscale.jobs.timeline import TimelineRequest, run_timeline
from vidscale.media import read_frames
from vidscale.pipeline.lanczos import upscale_lanczos
from vidscale.settings import load_settings

DF = Fraction(30000, 1001)
FILM = Fraction(24000, 1001)
R30 = float(DF)  # OTIO accepts 29.97 timecode only at the exact rate
DF_START = "00:00:59;20"  # frames 10 and 11 of the clip are 00:01:00;02 and ;03 (;00 ;01 dropped)


def test_handles_are_clamped_to_the_file():
    assert with_handles((5, 10), 3, 30) == (2, 13)
    assert with_handles((1, 29), 3, 30) == (0, 30)


def test_overlapping_and_touching_spans_merge_and_gaps_do_not():
    assert merge_spans([(8, 14), (3, 10), (20, 25), (14, 16), (26, 27)]) == [(3, 16), (20, 25), (26, 27)]
    assert merge_spans([(0, 5), (1, 2)]) == [(0, 5)]
    assert merge_spans([]) == []


def test_drop_frame_times_across_a_minute_are_exact_frames():
    origin = otio.opentime.from_timecode(DF_START, R30).value
    clock = MediaClock(Path("a.mov"), DF, round(origin))
    used = otio.opentime.TimeRange(otio.opentime.from_timecode("00:01:00;02", R30),
                                   otio.opentime.RationalTime(4, R30))
    assert clock.span(used) == (10, 14)
    assert otio.opentime.to_timecode(clock.time_range((10, 14), R30).start_time, R30, True) \
        == "00:01:00;02"


@pytest.mark.parametrize("rate, start, used, frame", [
    (Fraction(60000, 1001), "00:00:59;56", "00:01:00;04", 4),  # 59.94 DF drops ;00-;03
    (Fraction(25), "10:00:00:00", "10:00:01:03", 28),
    (FILM, "01:00:00:00", "01:00:01:00", 24),  # 23.976 counts 24 timecode frames a second
])
def test_timecode_rates_map_to_exact_frames(rate, start, used, frame):
    otio_rate = float(rate)
    clock = MediaClock(Path("a.mov"), rate, round(otio.opentime.from_timecode(start, otio_rate).value))
    span = otio.opentime.TimeRange(otio.opentime.from_timecode(used, otio_rate),
                                   otio.opentime.RationalTime(2, otio_rate))
    assert clock.span(span) == (frame, frame + 2)


def _range(start, count, rate):
    return otio.opentime.TimeRange(otio.opentime.RationalTime(start, rate), otio.opentime.RationalTime(count, rate))


def test_a_clip_counted_at_another_rate_is_mapped_through_time():
    """An FCP 7 clipitem with timebase 15 over a 30 fps file: in 2, 5 frames long, is the file's
    frames 4 to 14; the origin (the file's timecode) is counted at the file's rate."""
    assert MediaClock(Path("a.mov"), Fraction(30), 99).span(_range(2 + 99 / 2, 5, 15)) == (4, 14)
    assert MediaClock(Path("a.mov"), FILM, 0).span(_range(48, 24, 24)) == (48, 72)  # 24 counts 23.976
    assert MediaClock(Path("a.mov"), Fraction(15), 0).span(_range(8, 6, 30)) == (4, 7)


def test_a_clip_rate_that_falls_between_frames_is_refused_saying_so():
    clock = MediaClock(Path("a.mov"), Fraction(15), 0)
    with pytest.raises(InputError, match=r"in point \(7\) falls between two of the file's frames \(3.50\)"):
        clock.span(_range(7, 4, 30))
    with pytest.raises(InputError, match="relink it to media at 24 fps"):
        MediaClock(Path("a.mov"), Fraction(25), 0).span(_range(0, 4, 24))


def _source(make_clip, rate, timecode):
    return make_clip(container="mov", codec="prores_ks", pix_fmt="yuv422p10le", bframes=0,
                     frames=30, rate=rate, timecode=timecode)


def _clip(name, path, tc_start, frames, tc_rate):
    start = otio.opentime.from_timecode(tc_start, tc_rate)
    reference = otio.schema.ExternalReference(target_url=Path(path).as_uri())
    used = otio.opentime.TimeRange(start, otio.opentime.RationalTime(frames, tc_rate))
    return otio.schema.Clip(name=name, media_reference=reference, source_range=used)


@pytest.fixture
def edit(tmp_path, make_clip):
    """A: 29.97 DF from 00:00:59;20, B: 23.976 from 01:00:00:00 (both 30 frames), one missing."""
    a = _source(make_clip, DF, DF_START)
    b = _source(make_clip, FILM, "01:00:00:00")
    timeline = otio.schema.Timeline(name="cut")
    track = otio.schema.Track()
    timeline.tracks.append(track)
    track.append(_clip("a1", a, "00:00:59;25", 5, R30))  # frames 5-9
    track.append(_clip("a2", a, "00:00:59;28", 6, R30))  # 8-13: overlaps a1
    track.append(otio.schema.Gap(source_range=otio.opentime.TimeRange(
        duration=otio.opentime.RationalTime(10, R30))))
    track.append(_clip("missing", tmp_path / "gone.mov", "01:00:00:00", 5, R30))
    nested = otio.schema.Stack()
    inner = otio.schema.Track()
    nested.append(inner)
    inner.append(_clip("b1", b, "01:00:00:03", 5, 24))  # 3-7, in a nested stack
    inner.append(_clip("a3", a, "00:01:00;15", 3, R30))  # 23-25: its own range
    track.append(nested)
    path = tmp_path / "cut.otio"
    otio.adapters.write_to_file(timeline, str(path))
    return path, a, b


def _frames(path, start=0, end=None):
    return np.concatenate([c.frames for c in read_frames(path, start, end, pixel_format="rgb48le")])


def _timecode(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream_tags=timecode",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return next(s["tags"]["timecode"] for s in json.loads(out.stdout)["streams"] if "timecode" in s.get("tags", {}))


def test_the_new_edit_plays_the_same_frames_from_upscaled_ranges(edit, tmp_path):
    path, a, b = edit
    settings = load_settings("preview-lanczos-2x")
    request = TimelineRequest(path, tmp_path / "new.otio", settings, handles=2, out_dir=tmp_path / "up")
    summary = run_timeline(request)
    names = sorted(item.output.name for item in summary.batch.items if item.status == "done")
    # a1+a2 with handles: 3-15 merged; a3: 21-27; b1: 1-9; the missing file fails alone
    assert names == sorted([f"{a.stem}_3-15_2x.mov", f"{a.stem}_21-27_2x.mov", f"{b.stem}_1-9_2x.mov"])
    assert summary.batch.failed == 1 and summary.exit_code == 2  # worst item: a missing media file is bad input
    assert [use.name for use in summary.kept] == ["missing"]

    old = otio.adapters.read_from_file(str(path)).find_clips()
    new = otio.adapters.read_from_file(str(tmp_path / "new.otio")).find_clips()
    assert [c.name for c in new] == ["a1", "a2", "missing", "b1", "a3"]
    wanted = {"a1": range(5, 10), "a2": range(8, 14), "b1": range(3, 8), "a3": range(23, 26)}
    for before, after in zip(old, new):
        assert after.source_range == before.source_range  # same in and out points
        if before.name == "missing":
            assert after.media_reference.target_url == before.media_reference.target_url
            continue
        output = local_path(after.media_reference.target_url, tmp_path)
        assert output.parent == tmp_path / "up"
        first = round(after.source_range.start_time.value - after.media_reference.available_range.start_time.value)
        count = round(after.source_range.duration.value)
        shown = [frame_index(f) for f in _frames(output, first, first + count)]
        assert shown == list(wanted[before.name])
        # the output starts at the source timecode of its first frame, and its reference says so
        rate = after.source_range.start_time.rate
        start_tc = otio.opentime.to_timecode(after.media_reference.available_range.start_time, rate,
                                             rate == R30)
        assert _timecode(output) == start_tc
    assert _timecode(tmp_path / "up" / f"{a.stem}_21-27_2x.mov") == "00:01:00;13"  # 59;20 + 21, two dropped
    assert _timecode(tmp_path / "up" / f"{b.stem}_1-9_2x.mov") == "01:00:00:01"


def test_ranges_equal_the_whole_file_upscale_and_a_rerun_only_rewrites_the_edit(edit, tmp_path):
    path, a, _ = edit
    settings = load_settings("preview-lanczos-2x")
    request = TimelineRequest(path, tmp_path / "new.otio", settings, handles=2, out_dir=tmp_path / "up")
    run_timeline(request)
    whole = upscale_lanczos(a, tmp_path / "whole.mov", settings).output
    part = tmp_path / "up" / f"{a.stem}_3-15_2x.mov"
    assert np.array_equal(_frames(part), _frames(whole, 3, 16))

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "up").iterdir()}
    (tmp_path / "new.otio").unlink()
    again = run_timeline(request)
    assert again.batch.count("done") == 0 and again.batch.count("skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "up").iterdir()} == stamps
    assert (tmp_path / "new.otio").read_text() and again.relinked == 4
    request.overwrite = True  # --overwrite: the ranges are made again
    again = run_timeline(request)
    assert again.batch.count("done") == 3
    assert all(p.stat().st_mtime_ns != stamp for p, stamp in stamps.items() if p.suffix == ".mov")


def test_cli_exit_codes_and_a_missing_adapter(edit, tmp_path):
    path, _, _ = edit
    runner = CliRunner()
    result = runner.invoke(main, ["timeline", str(path), "-o", str(tmp_path / "n.otio"),
                                  "--preset", "preview-lanczos-2x", "--json", "--handles", "0"])
    assert result.exit_code == 2, result.output  # the one rule: worst item; the missing file is bad input
    report = json.loads(result.stdout)
    assert report["failed"] == 1 and report["relinked"] == 4
    (tmp_path / "cut.aaf").write_bytes(b"not read: no adapter")
    result = runner.invoke(main, ["timeline", str(tmp_path / "cut.aaf"), "-o", str(tmp_path / "n.otio")])
    assert result.exit_code == 2 and "pip install otio-aaf-adapter" in result.output
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = runner.invoke(main, ["timeline", str(path), "-o", str(tmp_path / "n.aaf")])
    assert result.exit_code == 2 and "pip install otio-aaf-adapter" in result.output
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamps  # checked before any work


def test_without_opentimelineio_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "opentimelineio", None)
    with pytest.raises(InputError, match=r'pip install "vidscale\[timeline\]"'):
        import_otio()


def test_a_stop_ends_the_run_with_stopped_and_the_resume_command(edit, tmp_path, monkeypatch):
    """A range's job stopped by Ctrl-C (the engine raises Interrupted after saving its step) stops
    the whole run: no later range starts, no edit is written, the line says ``stopped``, exit 130."""
    path, _, _ = edit
    started = []

    def stopped_engine(source, output, settings, **options):
        started.append(output.name)
        raise Interrupted("stopped at step 3 of 35 in chunk 1 of 1; kept in .vidscale-jobs")

    monkeypatch.setattr("vidscale.jobs.timeline.upscale_one", stopped_engine)
    result = CliRunner().invoke(main, ["timeline", str(path), "-o", str(tmp_path / "n.otio"),
                                       "--preset", "preview-lanczos-2x", "--out-dir", str(tmp_path / "up")])
    assert result.exit_code == 130 and len(started) == 1
    assert result.output.splitlines()[-1].startswith("stopped at step 3 of 35")
    assert "run the same command again to resume: " in result.output and "Error" not in result.output
    assert not (tmp_path / "n.otio").exists()
