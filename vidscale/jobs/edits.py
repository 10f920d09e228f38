"""Edit files in and out: OpenTimelineIO and its adapter plugins (EDL, FCP 7 XML, FCPXML).

OpenTimelineIO is an extra (``pip install "vidscale[timeline]"``), imported only here and only
when an edit is read. ``.otio`` is built in; every other format is an adapter plugin package,
and a missing one is an error naming it (exit 2).

What the formats do not say, the user does: an EDL carries no frame rate (the CMX adapter
assumes 24 unless ``--rate`` says otherwise, and a drop-frame EDL may mark drop-frame only with
``FCM: DROP FRAME`` lines), and an FCPXML library or event holds several projects
(``--timeline NAME`` picks one). What a format cannot hold (an EDL has one video track) is found
by writing the new edit in memory before any work (:func:`check_writer`), not after hours of it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import InputError, InvalidMediaError, MediaNotFoundError

# Adapter plugins OTIO loads by file suffix (only .otio/.otioz/.otiod ship with OTIO itself).
ADAPTER_PACKAGES = {
    "edl": "otio-cmx3600-adapter", "xml": "otio-fcp-adapter", "fcpxml": "otio-fcpx-xml-adapter",
    "aaf": "otio-aaf-adapter", "ale": "otio-ale-adapter",
}
EDL = "cmx_3600"
# Formats that name media by file:// URL; EDL comments hold plain paths.
URL_FORMATS = frozenset({"fcp_xml", "fcpx_xml"})
EDL_DEFAULT_RATE = 24  # what the CMX adapter assumes
_TIMECODE = re.compile(r"\b(\d{2}:\d{2}:\d{2}):(\d{2})\b")


def import_otio() -> Any:
    """OpenTimelineIO, or an error saying how to install it (exit 2)."""
    try:
        import opentimelineio
    except ImportError:
        raise InputError('vidscale timeline needs OpenTimelineIO: pip install "vidscale[timeline]"') from None
    return opentimelineio


def adapter_name(path: Path) -> str:
    """The installed OTIO adapter for ``path``'s suffix, or an error (exit 2) naming the plugin
    package that would read and write it."""
    otio = import_otio()
    try:
        return str(otio.adapters.from_filepath(str(path)).name)
    except otio.exceptions.NoKnownAdapterForExtensionError:
        suffix = path.suffix.lstrip(".").lower()
        package = ADAPTER_PACKAGES.get(suffix)
        fix = f"pip install {package}" if package else "use .otio, .edl, .xml (FCP 7) or .fcpxml"
        raise InputError(f"{path}: OpenTimelineIO has no adapter for .{suffix} files ({fix})") from None


def read_edit(path: Path, *, rate: Fraction | None = None, timeline: str | None = None) -> Any:
    """The edit's timeline (``timeline``: its name, where the file holds several).

    ``rate``: an EDL's frame rate (EDLs do not carry one); refused for formats that say their own.
    """
    otio = import_otio()
    if not path.is_file():
        raise MediaNotFoundError(f"{path}: no such edit file")
    adapter = adapter_name(path)
    if rate is not None and adapter != EDL:
        raise InputError(f"{path}: --rate is for EDLs, which do not say their frame rate; "
                         "this file says its own (leave --rate out)")
    try:
        if adapter == EDL:
            found = otio.adapters.read_from_string(edl_text(path), adapter_name=EDL,
                                                   rate=float(rate or EDL_DEFAULT_RATE))
        else:
            found = otio.adapters.read_from_file(str(path))
    except Exception as exc:  # adapters raise anything from ValueError to their own errors
        hint = ""
        if adapter == EDL and rate is None:
            hint = (f"; an EDL does not say its frame rate and is read at {EDL_DEFAULT_RATE} fps: "
                    "pass the rate of its timecodes with --rate (25, 29.97, 30, ...)")
        raise InvalidMediaError(f"{path}: not a readable edit ({first_line(exc)}){hint}") from None
    return pick_timeline(found, path, timeline)


def edl_text(path: Path) -> str:
    """The EDL with its drop-frame events' timecodes written with ``;`` as OTIO reads them.

    CMX 3600 marks drop-frame with ``FCM: DROP FRAME`` lines (for the events that follow) and many
    writers keep ``:`` in the timecodes; OTIO reads drop-frame only from the ``;``.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # older EDLs are 8-bit
    lines, drop = [], False
    for line in text.splitlines():
        words = line.upper().split()
        if words[:1] == ["FCM:"]:
            drop = words[1:] == ["DROP", "FRAME"]
        elif drop and line[:1].isdigit():
            line = _TIMECODE.sub(r"\1;\2", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def pick_timeline(found: Any, path: Path, name: str | None) -> Any:
    """The one timeline of what an adapter read (an FCPXML library or event holds several)."""
    otio = import_otio()
    if isinstance(found, otio.schema.Timeline):
        timelines = [found]
    else:
        timelines = list(found.find_children(descended_from_type=otio.schema.Timeline))
    names = ", ".join(repr(t.name) for t in timelines)
    if name is not None:
        chosen = [t for t in timelines if t.name == name]
        if len(chosen) != 1:
            what = "no timeline" if not chosen else f"{len(chosen)} timelines"
            raise InputError(f"{path}: holds {what} named {name!r}; its timelines: {names or 'none'}")
        return chosen[0]
    if not timelines:
        raise InvalidMediaError(f"{path}: holds no timeline (a {type(found).__name__} of clips); "
                                "export a project or sequence")
    if len(timelines) > 1:
        raise InputError(f"{path}: holds {len(timelines)} timelines ({names}); "
                         "pick one with --timeline NAME")
    return timelines[0]


def check_writer(edit: Any, output: Path) -> None:
    """Write ``edit`` in memory in ``output``'s format: what the format cannot hold (an EDL's
    single video track, ...) is an error (exit 2) naming a format that can, before any work."""
    otio = import_otio()
    adapter = adapter_name(output)
    if not otio.adapters.from_name(adapter).has_feature("write_to_string"):
        return  # .otioz / .otiod: bundles of what .otio holds, which is everything OTIO reads
    try:
        otio.adapters.write_to_string(edit.deepcopy(), adapter_name=adapter)  # adapters edit it
    except Exception as exc:
        instead = ("write -o NAME.xml (FCP 7 XML) or NAME.otio, which hold every track"
                   if adapter == EDL else "write -o NAME.otio, which holds everything OTIO reads")
        raise InputError(f"{output}: the {output.suffix.lstrip('.').upper()} format cannot hold this "
                         f"edit ({first_line(exc)}); {instead}") from None


def write_edit(edit: Any, output: Path) -> None:
    """Write ``edit`` to ``output`` in its suffix's format, atomically."""
    otio = import_otio()
    adapter = adapter_name(output)
    with atomic_path(output) as temp:
        otio.adapters.write_to_file(edit, str(temp), adapter_name=adapter)


def reference_url(target: Path, output: Path, original: str | None) -> str:
    """How ``output``'s format names the media file ``target``: a ``file://`` URL for the XML
    formats, an absolute path in an EDL, and for ``.otio`` the style the edit used."""
    target = target.resolve()
    adapter = adapter_name(output)
    if adapter in URL_FORMATS or (adapter != EDL and (original or "").startswith("file:")):
        return target.as_uri()
    return str(target)


def first_line(error: BaseException) -> str:
    """An adapter's message on one line (some add the whole clip's repr on the next)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
