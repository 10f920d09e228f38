"""``NAME_review.html``: the source beside the result, for a person deciding whether to trust it.

One self-contained file beside the output (images embedded, no network), readable in any browser:

* a few frames spread over the clip, source and result stacked under a wipe slider, with a 1:1
  toggle that shows the result's pixels at their natural size. The source is enlarged by nearest
  neighbour, so what the wipe uncovers is exactly what the upscale added, not a resampler's blur;
* the frame-to-frame change of the output (mean absolute difference of consecutive 8-bit frames,
  in code values 0-255) as a small plot, with the freescale plan's chunk boundaries marked: a seam
  shows as a spike at a boundary above the change around it;
* time per stage, the plan, and the settings as a preset file (to reproduce the run).

Frames are read back from the written output (not from memory), so the page shows what the file
holds after encoding. Output frame ``i`` is source frame ``first + i`` for both engines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import write_bytes
from ..media import VideoInfo, decode_frames, probe, read_frames, to_rgb
from ..settings import Settings, as_toml
from ..work.plan import describe_plan
from .html import data_uri, document, jpeg, table

SAMPLES = 4  # frames shown, evenly spaced from the first to the last


@dataclass(frozen=True)
class Sample:
    """One shown frame: the result and the source at the result's size."""

    frame: int  # output frame index; the source frame is ``first + frame``
    source: np.ndarray  # (H, W, 3) uint8, nearest-neighbour enlarged
    result: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class Review:
    """Everything the page shows, gathered before any HTML is written."""

    source: VideoInfo
    output: VideoInfo
    first: int  # source frame of output frame 0
    samples: list[Sample]
    changes: np.ndarray  # (frames - 1,) mean |frame[i + 1] - frame[i]|, 8-bit code values
    boundaries: list[int]  # output frames that start a new chunk (none for lanczos)
    stages: dict[str, float]  # seconds
    plan: dict[str, Any] | None
    result: dict[str, Any]
    settings: Settings


def review_path(output: Path) -> Path:
    """``a_2x.mov`` -> ``a_2x_review.html`` in the same folder."""
    output = Path(output)
    return output.with_name(f"{output.stem}_review.html")


def write_review(source: Path, output: Path, settings: Settings, result: dict[str, Any], *,
                 frames: tuple[int, int | None] | None = None) -> Path:
    """Write the review page of a finished upscale (``result``: the engine's ``to_dict()``);
    written atomically, replacing an older one. Returns its path."""
    review = gather(Path(source), Path(output), settings, result, frames=frames)
    path = review_path(output)
    write_bytes(path, render(review).encode("utf-8"))
    return path


def gather(source: Path, output: Path, settings: Settings, result: dict[str, Any], *,
           frames: tuple[int, int | None] | None = None) -> Review:
    """Decode the output once (change per frame, sampled frames) and the sampled source frames."""
    source_info, output_info = probe(source), probe(output)
    first = source_info.frame_range(frames)[0]
    picks = sample_frames(output_info.frame_count)
    changes, results = frame_changes(output_info, picks)
    samples = [Sample(i, nearest(source_frame(source_info, first + i), output_info.width,
                                 output_info.height), results[i]) for i in picks if i in results]
    report = job_report(result)
    plan = report.get("plan")
    return Review(source_info, output_info, first, samples, changes,
                  chunk_boundaries(plan) if plan else [], stage_seconds(result, report), plan,
                  result, settings)


def sample_frames(count: int, samples: int = SAMPLES) -> list[int]:
    """``samples`` frame indices spread evenly from 0 to ``count - 1`` (fewer for short clips)."""
    if count <= 1 or samples <= 1:
        return [0]
    return sorted({round(k * (count - 1) / (samples - 1)) for k in range(samples)})


def frame_changes(output: VideoInfo, picks: Sequence[int]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Mean absolute change between consecutive 8-bit RGB frames, and the frames at ``picks``.

    Streams the clip: two frames in memory at a time.
    """
    changes: list[float] = []
    kept: dict[int, np.ndarray] = {}
    previous: np.ndarray | None = None
    for index, frame in enumerate(decode_frames(output)):
        rgb = to_rgb(frame)
        current = rgb.astype(np.int16)
        if previous is not None:
            changes.append(float(np.abs(current - previous).mean()))
        previous = current
        if index in picks:
            kept[index] = rgb
    return np.asarray(changes), kept


def source_frame(info: VideoInfo, index: int) -> np.ndarray:
    """Source frame ``index`` as (H, W, 3) uint8 RGB."""
    chunk = next(read_frames(info, index, index + 1, batch_frames=1))
    return chunk.frames[0]


def nearest(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Enlarge by repeating pixels (exact for whole-number scales): the source's own pixels."""
    rows = np.arange(height) * rgb.shape[0] // height
    cols = np.arange(width) * rgb.shape[1] // width
    return rgb[rows][:, cols]


def chunk_boundaries(plan: dict[str, Any]) -> list[int]:
    """Output frames where the next chunk's own frames begin (after its anchored overlap)."""
    return [chunk["start"] + chunk["anchored"] for chunk in plan["chunks"][1:]]


def job_report(result: dict[str, Any]) -> dict[str, Any]:
    """The freescale job store's ``report.json`` (plan, seconds per stage); {} for lanczos."""
    job_dir = result.get("job_dir")
    if not job_dir:
        return {}
    try:
        return json.loads((Path(job_dir) / "report.json").read_text())
    except (OSError, ValueError):
        return {}  # a job folder removed by hand: the page leaves the plan out


def stage_seconds(result: dict[str, Any], report: dict[str, Any]) -> dict[str, float]:
    """Seconds per stage; what no stage accounts for (probe, model load) is "other"."""
    total = float(result.get("elapsed_seconds", 0.0))
    if result.get("engine") == "lanczos":
        return {"lanczos (decode, resize, encode)": total}
    stages = {name: float(seconds) for name, seconds in report.get("seconds", {}).items()}
    stages["other (probe, model load, plan)"] = max(0.0, total - sum(stages.values()))
    return stages


# -- HTML ------------------------------------------------------------------------------------

STYLE = """
:root { --wipe: 50%; }
.controls { position: sticky; top: 0; z-index: 2; background: var(--bg); padding: .5em 0;
  display: flex; gap: 1.5em; align-items: center; border-bottom: 1px solid var(--line); }
.controls input[type=range] { width: min(40em, 60vw); }
.samples { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
body.actual .samples { grid-template-columns: 1fr; }
figure { margin: 1em 0 .5em; min-width: 0; }
.viewport { overflow: auto; max-height: 85vh; border: 1px solid var(--line); }
.frame { position: relative; width: 100%; line-height: 0; }
.frame img { display: block; width: 100%; height: auto; }
.frame img.result { position: absolute; top: 0; left: 0; height: 100%;
  clip-path: inset(0 0 0 var(--wipe)); }
.frame .divider { position: absolute; top: 0; bottom: 0; left: var(--wipe); width: 0;
  border-left: 2px solid #fff; box-shadow: 0 0 3px #000; pointer-events: none; }
body.actual .frame { width: max-content; }
body.actual .frame img { width: auto; max-width: none; image-rendering: pixelated; }
body.actual .frame img.result { height: auto; }
figcaption { margin-top: .3em; }
svg text { fill: var(--muted); font-size: 11px; }
"""

SCRIPT = """
const wipe = document.getElementById('wipe');
wipe.addEventListener('input', () =>
  document.documentElement.style.setProperty('--wipe', wipe.value + '%'));
document.getElementById('actual').addEventListener('change', event =>
  document.body.classList.toggle('actual', event.target.checked));
"""


def render(review: Review) -> str:
    result, out = review.result, review.output
    title = f"Review: {out.path.name}"
    note = f'<p class="bad">{escape(result["note"])}</p>' if result.get("note") else ""
    body = f"""<h1>{escape(title)}</h1>
<p class="muted">{escape(str(review.source.path))} ({review.source.width}&times;{review.source.height})
&rarr; {escape(str(out.path))} ({out.width}&times;{out.height}), {escape(str(result.get("engine")))} engine,
{out.frame_count} frames at {float(out.frame_rate):.3f} fps</p>{note}
<div class="controls">
<label>source &#x2190; <input type="range" id="wipe" min="0" max="100" value="50"
 aria-label="wipe between source and result"> &#x2192; result</label>
<label><input type="checkbox" id="actual"> 1:1 pixels</label>
</div>
<p class="muted">Left of each line the source (enlarged by nearest neighbour to the output size),
right of it the result; both decoded from the files, embedded as JPEG 4:4:4.</p>
<div class="samples">{''.join(render_sample(review, sample) for sample in review.samples)}</div>
<h2>Seams: change between consecutive frames</h2>
{render_seams(review)}
<h2>Time per stage</h2>
{table([(name, f"{seconds:.2f} s") for name, seconds in review.stages.items()], numeric=True)}
<h2>Plan</h2>
<pre>{escape(describe_plan(review.plan)) if review.plan else
       "lanczos engine: one Lanczos resize per frame (swscale); no model, no chunks, no steps"}</pre>
<details><summary>Settings (as a preset file: <code>--preset</code> reproduces the run)</summary>
<pre>{escape(as_toml(review.settings))}</pre></details>"""
    return document(title, body, style=STYLE, script=SCRIPT)


def render_sample(review: Review, sample: Sample) -> str:
    seconds = float(sample.frame / review.output.frame_rate)
    return f"""<figure>
<div class="viewport"><div class="frame">
{image("source", sample.source, sample.frame)}
{image("result", sample.result, sample.frame)}
<div class="divider"></div></div></div>
<figcaption>Output frame {sample.frame} (source frame {review.first + sample.frame}, {seconds:.2f} s)
</figcaption></figure>"""


def image(kind: str, rgb: np.ndarray, frame: int) -> str:
    height, width = rgb.shape[:2]
    return (f'<img class="{kind}" width="{width}" height="{height}" alt="{kind}, frame {frame}" '
            f'src="{data_uri(jpeg(rgb), "image/jpeg")}">')


def render_seams(review: Review) -> str:
    changes = review.changes
    if changes.size == 0:
        return "<p>One frame: nothing to compare.</p>"
    median = float(np.median(changes))
    if review.plan is None:
        text = ("<p>The lanczos engine has no chunks, so there are no seams; the plot shows the "
                "clip's own motion for reference.</p>")
    elif not review.boundaries:
        text = "<p>One chunk: no chunk boundaries, so no seams.</p>"
    else:
        rows = "".join(
            f"<tr><td class='num'>{b - 1} &rarr; {b}</td><td class='num'>{changes[b - 1]:.2f}</td>"
            f"<td class='num'>{f'{changes[b - 1] / median:.2f}&times;' if median > 0 else '&ndash;'}"
            "</td></tr>" for b in review.boundaries if 0 < b <= changes.size)
        text = ("<table><tr><th>boundary (frames)</th><th>change</th><th>vs median</th></tr>"
                f"{rows}</table><p class='muted'>A seam shows as a change well above the median "
                f"({median:.2f}) at a boundary.</p>")
    return plot(changes, review.boundaries) + text


def plot(changes: np.ndarray, boundaries: Sequence[int], width: int = 720, height: int = 180) -> str:
    """An inline SVG line plot of ``changes`` (x: transition i -> i+1), boundaries marked in red."""
    left, right, top, bottom = 44, 10, 10, 24
    span_x, span_y = width - left - right, height - top - bottom
    top_value = float(changes.max()) * 1.1 or 1.0
    last = max(changes.size - 1, 1)

    def x(i: float) -> float:
        return left + span_x * i / last

    def y(v: float) -> float:
        return top + span_y * (1 - v / top_value)

    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(changes))
    marks = "".join(
        f'<line x1="{x(b - 1):.1f}" x2="{x(b - 1):.1f}" y1="{top}" y2="{top + span_y}" '
        f'stroke="var(--bad)" stroke-dasharray="3 3"/>'
        f'<circle cx="{x(b - 1):.1f}" cy="{y(changes[b - 1]):.1f}" r="3.5" fill="var(--bad)"/>'
        for b in boundaries if 0 < b <= changes.size)
    return (f'<svg class="seams" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="change between consecutive frames">'
            f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + span_y}" stroke="var(--line)"/>'
            f'<line x1="{left}" x2="{width - right}" y1="{top + span_y}" y2="{top + span_y}" '
            f'stroke="var(--line)"/>'
            f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{top_value:.1f}</text>'
            f'<text x="{left - 4}" y="{top + span_y}" text-anchor="end">0</text>'
            f'<text x="{left}" y="{height - 6}">frame 0 &#x2192; 1</text>'
            f'<text x="{width - right}" y="{height - 6}" text-anchor="end">'
            f'{changes.size - 1} &#x2192; {changes.size}</text>'
            f'<polyline points="{points}" fill="none" stroke="var(--accent)" stroke-width="1.5"/>'
            f'{marks}</svg>')
