"""Helpers for tests that run jobs: a preset file from dotted keys, and what ffprobe says of an output."""

from __future__ import annotations

import json
from pathlib import Path

import ffmpeg


def write_preset(path: Path, values: dict) -> Path:
    """A preset file at ``path`` from ``{"section.key": value}``."""
    sections: dict[str, dict] = {}
    for key, value in values.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    lines = []
    for section, entries in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{name} = {json.dumps(value)}" for name, value in entries.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ffprobe_video(path: Path) -> dict:
    """The video stream of ``path`` as ffprobe reports it (frames counted by decoding)."""
    info = ffmpeg.probe(str(path), count_frames=None)
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def stored_chunks(jobs: Path) -> int:
    """Chunks the job store under ``jobs`` lists as finished (its manifest is what a resume reads: a
    chunk file is written first, then named in the manifest)."""
    manifest = next(jobs.glob("*/manifest.json"), None)
    return len(json.loads(manifest.read_text())["chunks"]) if manifest is not None else 0
