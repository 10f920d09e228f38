"""``vidscale timeline`` on EDLs: another machine's paths, clips known by name, the rate an EDL
does not carry (25, 29.97 drop-frame), and the new edit written in each editor's format.

``timeline_samples/*.edl`` are OpenTimelineIO's CMX 3600 adapter's own test files; the EDLs
written here have the same shape with small ranges, over stand-in media.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath

import opentimelineio as otio
import pytest
from timeline_helpers import LANCZOS, modulo, shown, stand_in, vidscale

from vidscale.errors import InputError
from vidscale.jobs.media_paths import MediaFinder, local_path, recorded_path

SAMPLES = Path(__file__).parent / "timeline_samples"
DF = Fraction(30000, 1001)

# avid_example.edl's shape (Avid's FROM CLIP, Nucoda's FROM FILE, a Windows drive), with .mov
# media and 7-frame events: take_1 is frames 5-11 of a file starting at 01:00:04:00, take_2
# frames 3-9 of one starting at 01:00:06:10.
WINDOWS_EDL = """TITLE:   Avid_Example.01
001  ZZ100_50 V     C        01:00:04:05 01:00:04:12 00:59:53:11 00:59:53:18
* FROM CLIP NAME:  take_1
* FROM CLIP: S:\\path\\to\\ZZ100_501.take_1.mov
002  ZZ100_50 V     C        01:00:06:13 01:00:06:20 00:59:53:18 00:59:54:01
* FROM CLIP NAME:  take_2
* FROM FILE: S:\\path\\to\\ZZ100_502A.take_2.mov
"""


@pytest.mark.parametrize("url, path", [
    ("S:\\path\\to\\ZZ100_501.take_1.0001.exr", PureWindowsPath("S:/path/to/ZZ100_501.take_1.0001.exr")),
    ("file://localhost/D%3a/media/sc01_sh010_anim.mov", PureWindowsPath("D:/media/sc01_sh010_anim.mov")),
    ("file:///C:/Media/a%20b.mov", PureWindowsPath("C:/Media/a b.mov")),
    ("file://server/share/x.mov", PureWindowsPath("//server/share/x.mov")),
    ("file:///Volumes/Media/otio/IMG_0715.MOV", PurePosixPath("/Volumes/Media/otio/IMG_0715.MOV")),
    ("S:/path/to/written_back.mov", PureWindowsPath("S:/path/to/written_back.mov")),
    ("media/x.mov", PurePosixPath("media/x.mov")),
])
def test_a_recorded_path_is_read_as_its_machine_meant_it(url, path, tmp_path):
    assert recorded_path(url) == path
    assert local_path(url, tmp_path) == (None if isinstance(path, PureWindowsPath) else tmp_path / path)


def test_media_is_found_by_file_name_then_clip_or_reel_name_and_two_matches_are_named(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for name in ("a/deep/Take_1.MOV", "a/shot010.mov", "b/shot010.mxf", "b/sq001_s002.mov"):
        (tmp_path / name).write_bytes(b"")
    finder = MediaFinder([tmp_path / "a", tmp_path / "b"])
    found = finder.find("S:\\path\\to\\take_1.mov", [], tmp_path)  # Windows names ignore case
    assert (found.path, found.how) == (tmp_path / "a/deep/Take_1.MOV", "file name")
    found = finder.find(None, [("clip name", "sq001_s002"), ("reel name", "SC00.JPG")], tmp_path)
    assert (found.path, found.how) == (tmp_path / "b/sq001_s002.mov", "clip name")
    assert finder.find(None, [("clip name", "nothing"), ("reel name", "")], tmp_path) is None
    with pytest.raises(InputError, match=r"'shot010': 2 files under --media match its clip name: "
                                         rf"{tmp_path}/a/shot010.mov, {tmp_path}/b/shot010.mxf"):
        finder.find(None, [("clip name", "shot010")], tmp_path)


@pytest.mark.parametrize("sample", ["avid_example.edl", "nucoda_example.edl"])
def test_exr_frames_named_by_a_windows_workstation_pass_through_untouched(sample, tmp_path):
    code, out = vidscale("timeline", SAMPLES / sample, "-o", tmp_path / "new.edl", *LANCZOS)
    assert code == 0, out  # nothing vidscale reads, nothing failed
    assert "untouched 2 image clips (passed through as they are): clip 1 'take_1', clip 2 'take_2'" in out
    new = otio.adapters.read_from_file(str(tmp_path / "new.edl"), rate=24).find_clips()
    assert [c.media_reference.target_url for c in new] == [
        "S:/path/to/ZZ100_501.take_1.0001.exr", "S:/path/to/ZZ100_502A.take_2.0101.exr"]


def test_clips_without_paths_are_found_by_clip_name(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for name in ("ZZ100_501.take_1.0001.exr", "ZZ100_502A.take_2.0101.exr"):
        (media / name).write_bytes(b"")
    code, out = vidscale("timeline", SAMPLES / "premiere_example.edl", "-o", tmp_path / "new.otio",
                         "--media", media, *LANCZOS)
    assert code == 0, out
    assert (f"found   {media}/ZZ100_501.take_1.0001.exr by its clip name 'ZZ100_501.take_1.0001.exr': "
            "clip 1 'ZZ100_501.take_1.0001.exr'") in out
    code, out = vidscale("timeline", SAMPLES / "premiere_example.edl", "-o", tmp_path / "new.otio", *LANCZOS)
    assert code == 2 and ("offline: the edit names no media file for it; pass --media DIR, the folder "
                          "that holds a file matching its clip name 'ZZ100_501.take_1.0001.exr'") in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = vidscale("timeline", SAMPLES / "premiere_example.edl", "-o", tmp_path / "new.otio",
                         "--media", empty, *LANCZOS)
    assert code == 2 and f"and no file matching its clip name 'ZZ100_501.take_1.0001.exr' is under {empty}" in out


@pytest.fixture
def windows_edit(tmp_path, make_clip):
    media = tmp_path / "render" / "media"
    stand_in(make_clip, media, "ZZ100_501.take_1.mov", rate=Fraction(24), timecode="01:00:04:00", frames=20)
    stand_in(make_clip, media / "b", "ZZ100_502A.take_2.mov", rate=Fraction(24), timecode="01:00:06:10",
             frames=20)
    edit = tmp_path / "cut.edl"
    edit.write_text(WINDOWS_EDL)
    return edit, media


@pytest.mark.parametrize("suffix", [".edl", ".xml", ".otio"])
def test_the_new_edit_in_each_format_reads_back_with_the_same_cuts(windows_edit, suffix, tmp_path):
    edit, media = windows_edit
    new = tmp_path / "out" / f"cut_2x{suffix}"
    code, out = vidscale("timeline", edit, "-o", new, "--media", media, "--handles", "2", *LANCZOS)
    assert code == 0, out
    assert f"found   S:\\path\\to\\ZZ100_501.take_1.mov at {media}/ZZ100_501.take_1.mov (by its file name)" in out
    assert sorted(p.name for p in new.parent.glob("*.mov")) == [
        "ZZ100_501.take_1_3-13_2x.mov", "ZZ100_502A.take_2_1-11_2x.mov"]
    before = otio.adapters.read_from_file(str(edit), rate=24).find_clips()
    after = otio.adapters.read_from_file(str(new), **({"rate": 24} if suffix == ".edl" else {}))
    after = (after if isinstance(after, otio.schema.Timeline) else
             next(after.find_children(descended_from_type=otio.schema.Timeline))).find_clips()
    assert len(after) == 2
    for old, clip, used in zip(before, after, [range(5, 12), range(3, 10)]):
        assert clip.source_range == old.source_range  # the same in and out timecodes
        target = local_path(clip.media_reference.target_url, new.parent)
        assert target.parent == new.parent and target.exists()  # a real output path, not S:/...
        assert shown(clip, new.parent) == modulo(used)


def test_fcpxml_cannot_hold_an_edl_said_before_any_work(windows_edit, tmp_path):
    """The FCPXML adapter cannot write any timeline read from an EDL (its record-timecode track
    offset); the in-memory write finds that before anything is upscaled."""
    edit, media = windows_edit
    code, out = vidscale("timeline", edit, "-o", tmp_path / "out" / "cut.fcpxml", "--media", media, *LANCZOS)
    assert code == 2 and "the FCPXML format cannot hold this edit" in out and "write -o NAME.otio" in out
    assert not (tmp_path / "out").exists()


def test_a_25_fps_edl_needs_rate_and_reads_with_it(tmp_path, make_clip):
    code, out = vidscale("timeline", SAMPLES / "25fps.edl", "-o", tmp_path / "new.edl", *LANCZOS)
    assert code == 2
    assert "Timecode '01:00:01:24' has frames beyond 23" in out and "with --rate (25, 29.97" in out
    media = tmp_path / "media"
    source = stand_in(make_clip, media, "sq001_s001.mov", rate=Fraction(25), timecode="01:00:00:00", frames=200)
    for name in ("sq001_s002.mov", "sq001_s003.mov", "sq001_s004.mov"):
        shutil.copyfile(source, media / name)
    code, out = vidscale("timeline", SAMPLES / "25fps.edl", "-o", tmp_path / "new.edl", "--rate", "25",
                         "--media", media, "--handles", "0", "--dry-run", "--json", *LANCZOS)
    assert code == 0, out
    report = json.loads(out[out.index("{"):])
    planned = [(Path(item["output"]).name, item["result"]["frames"]) for item in report["items"]]
    # 01:00:06:11, 01:00:08:00, 01:00:03:11 and 01:00:01:24 at 25 fps from 01:00:00:00
    assert planned == [("sq001_s001_0-160_2x.mov", 161), ("sq001_s002_0-199_2x.mov", 200),
                       ("sq001_s003_0-85_2x.mov", 86), ("sq001_s004_0-48_2x.mov", 49)]
    assert [clip["found_by"] for clip in report["clips"]] == ["clip name"] * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]  # a dry run writes nothing


def _df_edl(separator: str, fcm: str) -> str:
    """Two events over a 29.97 DF file starting at 00:00:59;20: frames 5-11 across the dropped
    ;00 and ;01 of minute 1, and frames 18-21."""
    def tc(t: str) -> str:
        return t.replace(";", separator)

    return (f"TITLE: df\n{fcm}\n"
            f"001  DF       V     C        {tc('00:00:59;25')} {tc('00:01:00;04')} "
            f"{tc('01:00:00;00')} {tc('01:00:00;07')}\n"
            "* FROM CLIP NAME:  df\n* FROM CLIP: df.mov\n"
            f"002  DF       V     C        {tc('00:01:00;10')} {tc('00:01:00;14')} "
            f"{tc('01:00:00;07')} {tc('01:00:00;11')}\n"
            "* FROM CLIP NAME:  df\n* FROM CLIP: df.mov\n")


def test_a_29_97_drop_frame_edl_maps_to_exact_frames_either_way_it_marks_drop_frame(tmp_path, make_clip):
    stand_in(make_clip, tmp_path, "df.mov", rate=DF, timecode="00:00:59;20", frames=30)
    (tmp_path / "semicolons.edl").write_text(_df_edl(";", "FCM: DROP FRAME"))
    (tmp_path / "fcm.edl").write_text(_df_edl(":", "FCM: DROP FRAME"))  # drop-frame said once, by FCM
    code, out = vidscale("timeline", tmp_path / "fcm.edl", "-o", tmp_path / "fcm_2x.edl", "--rate", "29.97",
                         "--handles", "0", "--dry-run", *LANCZOS)
    assert code == 0 and "df_5-11_2x.mov" in out and "df_18-21_2x.mov" in out, out
    new = tmp_path / "new.edl"
    code, out = vidscale("timeline", tmp_path / "semicolons.edl", "-o", new, "--rate", "29.97",
                         "--handles", "0", *LANCZOS)
    assert code == 0, out
    after = otio.adapters.read_from_file(str(new), rate=float(DF)).find_clips()
    assert [otio.opentime.to_timecode(c.source_range.start_time, float(DF)) for c in after] == [
        "00:00:59;25", "00:01:00;10"]
    assert [shown(c, tmp_path) for c in after] == [list(range(5, 12)), list(range(18, 22))]


def test_an_edl_read_at_24_over_25_fps_media_names_rate(tmp_path, make_clip):
    stand_in(make_clip, tmp_path, "a.mov", rate=Fraction(25), timecode="01:00:00:00", frames=20)
    (tmp_path / "cut.edl").write_text("TITLE: cut\n001  A        V     C        01:00:00:02 01:00:00:08 "
                                      "01:00:00:00 01:00:00:06\n* FROM CLIP: a.mov\n")
    code, out = vidscale("timeline", tmp_path / "cut.edl", "-o", tmp_path / "new.edl", "--dry-run", *LANCZOS)
    assert code == 2
    assert "runs at 25 fps but the EDL was read at 24 fps (an EDL does not say its rate); pass --rate" in out
