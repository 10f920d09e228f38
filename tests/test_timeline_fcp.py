"""``vidscale timeline`` on an FCP 7 XML exported on a Windows workstation (Premiere's shape).

``timeline_samples/premiere_windows.xml`` names its media ``file://localhost/D%3a/media/...``; the
stand-ins lie in a ``--media`` folder here. Its clips: ``sc01_sh010_anim`` counted at timebase 15
(in 2, out 7: the file's frames 4-13 at 30 fps) and at 30 (frames 20-25); a slug; on a second
video track ``sc01_master_layerA_sh030_temp`` (timecode 00:00:03:09) frames 4-9, whose audio
clip reaches to frame 19; and ``track_08.wav`` on an audio track.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pytest
from timeline_helpers import LANCZOS, modulo, shown, stand_in, vidscale

SAMPLE = Path(__file__).parent / "timeline_samples" / "premiere_windows.xml"
ANIM, TEMP = "sc01_sh010_anim", "sc01_master_layerA_sh030_temp"


@pytest.fixture
def media(tmp_path, make_clip):
    folder = tmp_path / "render box" / "media"
    stand_in(make_clip, folder / "sc01", f"{ANIM}.mov", rate=Fraction(30), timecode="00:00:00:00", frames=30)
    stand_in(make_clip, folder, f"{TEMP}.mov", rate=Fraction(30), timecode="00:00:03:09", frames=30)
    return folder


def test_windows_paths_are_found_under_media_and_the_15_fps_clip_maps_through_time(media, tmp_path):
    new = tmp_path / "new.xml"
    code, out = vidscale("timeline", SAMPLE, "-o", new, "--media", media, "--handles", "2",
                         "--out-dir", tmp_path / "up", *LANCZOS)
    assert code == 0, out  # audio, the slug and the .wav are not failures
    assert f"found   file://localhost/D%3a/media/{ANIM}.mov at {media / 'sc01' / ANIM}.mov (by its file name)" in out
    assert "untouched 2 audio clips" in out and "untouched 1 generator clip" in out
    # only video uses make ranges: TEMP's audio (frames 4-19) does not widen its video range 4-9
    made = sorted(p.name for p in (tmp_path / "up").iterdir())
    assert made == sorted([f"{ANIM}_2-15_2x.mov", f"{ANIM}_18-27_2x.mov", f"{TEMP}_2-11_2x.mov"])

    before = otio.adapters.read_from_file(str(SAMPLE)).find_clips()
    after = otio.adapters.read_from_file(str(new)).find_clips()
    assert [c.name for c in after] == [c.name for c in before]
    wanted = {0: range(4, 14), 2: range(20, 26), 3: range(4, 10)}
    for index, (old, clip) in enumerate(zip(before, after)):
        assert clip.source_range == old.source_range  # the same cuts, at the clip's own rate
        if index in wanted:
            assert clip.media_reference.target_url.startswith("file:///")  # a real output, as a URL
            assert shown(clip, tmp_path) == modulo(wanted[index])
        elif isinstance(old.media_reference, otio.schema.ExternalReference):
            assert clip.media_reference.target_url == old.media_reference.target_url  # untouched


def test_an_edl_cannot_hold_two_video_tracks_said_before_any_work(media, tmp_path):
    code, out = vidscale("timeline", SAMPLE, "-o", tmp_path / "new.edl", "--media", media,
                         "--out-dir", tmp_path / "up", *LANCZOS)
    assert code == 2
    assert ("new.edl: the EDL format cannot hold this edit (Only a single video track is supported, "
            "got: 2); write -o NAME.xml (FCP 7 XML) or NAME.otio") in " ".join(out.split())
    assert not (tmp_path / "up").exists() and not (tmp_path / "new.edl").exists()


def test_dry_run_lists_the_ranges_and_writes_nothing(media, tmp_path):
    code, out = vidscale("timeline", SAMPLE, "-o", tmp_path / "new.xml", "--media", media, "--handles", "2",
                         "--out-dir", tmp_path / "up", "--dry-run", "--json", *LANCZOS)
    assert code == 0
    report = json.loads(out[out.index("{"):])
    planned = {Path(item["output"]).name: item["result"]["frames"] for item in report["items"]}
    assert planned == {f"{ANIM}_2-15_2x.mov": 14, f"{ANIM}_18-27_2x.mov": 10, f"{TEMP}_2-11_2x.mov": 10}
    assert report["timeline"] is None and sorted(p.name for p in tmp_path.iterdir()) == ["render box"]
    kinds = [clip["kind"] for clip in report["clips"]]
    assert kinds == ["video", "generator", "video", "video", "audio", "audio"]


@pytest.mark.slow  # imports torch for the FreeScale plan
def test_dry_run_prints_upscales_plan_for_each_freescale_range(media, tmp_path):
    code, out = vidscale("timeline", SAMPLE, "-o", tmp_path / "new.xml", "--media", media, "--dry-run",
                         "--handles", "2", "--engine", "freescale", "--model", "tiny")
    assert code == 0, out
    assert out.count("plan    ") == 3 and out.count("estimate  ") == 3  # upscale --dry-run's plan, per range
    assert sorted(p.name for p in tmp_path.iterdir()) == ["render box"]


def test_without_media_every_video_file_is_offline_and_named_once(tmp_path):
    code, out = vidscale("timeline", SAMPLE, "-o", tmp_path / "new.xml", "--dry-run", *LANCZOS)
    assert code == 2
    lines = [line for line in out.splitlines() if line.startswith("failed")]
    assert len(lines) == 2  # one per file, naming its clips
    assert lines[0] == (f"failed  D:\\media\\{ANIM}.mov: clip 1 '{ANIM}.mov', clip 3 "
                        f"'{ANIM}.mov': offline: not on this machine; pass --media DIR, the folder that "
                        f"holds a file named '{ANIM}.mov'")
