"""``vidscale timeline`` on an FCPXML library (an event holding two projects, as FCP exports
them): ``--timeline`` picks one, and the new edit is an FCPXML that reads back with its cuts."""

from __future__ import annotations

from fractions import Fraction

import opentimelineio as otio
import pytest
from timeline_helpers import LANCZOS, modulo, shown, stand_in, vidscale

RATE = 24
HOUR = 3600 * RATE  # the stand-ins start at 01:00:00:00


def _project(name: str, url: str, first: int, count: int) -> otio.schema.Timeline:
    timeline = otio.schema.Timeline(name=name)
    track = otio.schema.Track()
    timeline.tracks.append(track)
    reference = otio.schema.ExternalReference(target_url=url, available_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(HOUR, RATE), otio.opentime.RationalTime(20, RATE)))
    track.append(otio.schema.Clip(name=name, media_reference=reference, source_range=otio.opentime.TimeRange(
        otio.opentime.RationalTime(HOUR + first, RATE), otio.opentime.RationalTime(count, RATE))))
    return timeline


@pytest.fixture
def library(tmp_path, make_clip):
    """An FCPXML event with projects 'cut A' (a.mov frames 2-5) and 'cut B' (b.mov 6-13),
    written by OTIO's own FCPXML adapter; the media at a Mac's /Volumes paths, found here."""
    media = tmp_path / "media"
    for name in ("a.mov", "b.mov"):
        stand_in(make_clip, media, name, rate=Fraction(RATE), timecode="01:00:00:00", frames=20)
    event = otio.schema.SerializableCollection(name="Event", children=[
        _project("cut A", "file:///Volumes/Media/a.mov", 2, 4),
        _project("cut B", "file:///Volumes/Media/b.mov", 6, 8)])
    path = tmp_path / "library.fcpxml"
    otio.adapters.write_to_file(event, str(path))
    return path, media


def test_a_library_with_two_projects_needs_timeline(library, tmp_path):
    path, media = library
    code, out = vidscale("timeline", path, "-o", tmp_path / "new.fcpxml", "--media", media, *LANCZOS)
    assert code == 2
    assert "holds 2 timelines ('cut A', 'cut B'); pick one with --timeline NAME" in out
    code, out = vidscale("timeline", path, "-o", tmp_path / "new.fcpxml", "--timeline", "cut C", *LANCZOS)
    assert code == 2 and "holds no timeline named 'cut C'; its timelines: 'cut A', 'cut B'" in out


def test_the_picked_project_is_relinked_and_reads_back_as_fcpxml(library, tmp_path):
    path, media = library
    new = tmp_path / "edits" / "new.fcpxml"  # a folder made for it, the ranges elsewhere
    code, out = vidscale("timeline", path, "-o", new, "--media", media, "--timeline", "cut B",
                         "--handles", "1", "--out-dir", tmp_path, *LANCZOS)
    assert code == 0, out
    assert sorted(p.name for p in tmp_path.glob("*.mov")) == ["b_5-14_2x.mov"]  # cut A is not touched
    clip, = otio.adapters.read_from_file(str(new)).find_clips()
    assert clip.source_range == otio.opentime.TimeRange(otio.opentime.RationalTime(HOUR + 6, RATE),
                                                        otio.opentime.RationalTime(8, RATE))
    assert clip.media_reference.target_url == (tmp_path / "b_5-14_2x.mov").as_uri()
    assert shown(clip, tmp_path) == modulo(range(6, 14))
