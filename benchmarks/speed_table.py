"""The README's GPU speed table, made from the JSON of GPU runs so that no figure is typed by hand.

Input: the JSON ``gpu_run.py`` writes (``$OUT/gpu_run.json``), or ``speed.py --list``'s (the jobs
and their targets, nothing measured: every cell says "not measured yet"). With several runs, each
job's row comes from the last run given that measured it, and the cells say which run.

    python benchmarks/speed_table.py RUN.json [RUN.json ...]        # print the block
    python benchmarks/speed_table.py --keep OUT/gpu_run.json         # store it in benchmarks/results/ first
    python benchmarks/speed_table.py --readme README.md RUN.json ... # rewrite the README's block

``--keep`` copies a run to ``benchmarks/results/`` under a name that says its date, GPU, driver, torch
and diffusers versions. Standard library only: it runs wherever the JSON is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEGIN = "<!-- speed-table: written by benchmarks/speed_table.py from the runs' JSON; do not edit by hand -->"
END = "<!-- /speed-table -->"
NOT_YET = "not measured yet"
HEADER = "| job | target | measured | peak memory | TFLOP/s (share of bf16 peak) | status |"
# record key -> (what it is, unit): targets and missed figures are written with these
FIGURES = {"elapsed_s": ("end to end", "s"), "s_per_output_frame": ("per output frame", "s/frame"),
           "peak_memory_gb": ("peak memory", "GB"), "peak_reserved_gb": ("peak reserved", "GB reserved")}
# ratios worth a line under the table: (numerator job, denominator job, what)
RATIOS = [("t2v_640_dpm25", "t2v_640", "DPM++ 2M 25 steps vs DDIM 50, end to end")]


def load_run(path: Path) -> dict[str, Any]:
    """A run's JSON, checked for what the table needs."""
    try:
        run = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the run's JSON ({exc}); "
                         "give gpu_run.json or speed.py --list's output") from None
    if "plan" not in run:
        raise SystemExit(f"{path}: no 'plan' (the jobs and their targets); give gpu_run.py's JSON or speed.py --list's")
    resolved = Path(path).resolve()
    run["source"] = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)
    return run


def outcome(record: dict[str, Any] | None) -> str:
    """'measured', 'skipped', 'killed', 'error' or 'none' (not run at all)."""
    if record is None:
        return "none"
    for key in ("skipped", "killed", "error"):
        if key in record:
            return key
    return "measured"


def number(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def target_text(targets: dict[str, float], kind: str) -> str:
    if targets:
        return ", ".join(f"<= {number(most)} {FIGURES[key][1]}" for key, most in targets.items())
    return "none (a figure only)" if kind in ("t2v", "upscale") else "none (a comparison)"


def measured_text(kind: str, record: dict[str, Any]) -> str:
    if kind == "upscale":
        frames = record["output"].rsplit("x", 1)[1]
        text = f"{number(record['s_per_output_frame'])} s/frame ({frames} frames in {number(record['elapsed_s'])} s"
        projected = record.get("projected")
        return text + (f"; {projected['frames']} frames PROJECTED {number(projected['elapsed_s'])} s)" if projected
                       else ")")
    if kind == "unet_compile":
        return (f"eager {number(record['eager_s'])} s, compiled {number(record['compiled_s'])} s "
                f"({record['ratio']:.2f}x); compiling {number(record['compile_s'])} s")
    if kind == "wan_cache":
        caches = ", ".join(f"{cache} {figures['wall_ratio']:.2f}x (latent off by "
                           f"{figures['mean_abs_deviation_over_rms']:.2%} of its RMS)"
                           for cache, figures in record["caches"].items())
        return f"uncached {number(record['none_s'])} s; {caches}"
    return f"{number(record['elapsed_s'])} s"


def memory_text(record: dict[str, Any]) -> str:
    text = f"{number(record['peak_memory_gb'])} GB"
    if record.get("peak_reserved_gb") is not None:
        text += f" ({number(record['peak_reserved_gb'])} reserved)"
    return text if "cuda" in record.get("peak_memory_kind", "cuda") else text + " process RSS"


def rate_text(record: dict[str, Any], peak: float | None) -> str:
    def one(rate: float | None) -> str:
        if rate is None:
            return "n/a"
        return f"{rate:.0f} ({rate / peak:.0%})" if peak else f"{rate:.0f}"

    if "eager_tflops_per_s" in record:
        return f"{one(record['eager_tflops_per_s'])} eager, {one(record['tflops_per_s_compiled'])} compiled"
    return one(record.get("tflops_per_s"))


def status_text(record: dict[str, Any] | None, reduced: bool) -> str:
    kind = outcome(record)
    if kind == "none":
        return NOT_YET
    assert record is not None
    if kind != "measured":
        return f"{kind}: {record[kind]}"
    if reduced:
        return "reduced run: no target applies"
    missed = record.get("missed", [])
    if not missed:
        return "met"
    return "missed: " + "; ".join(
        f"{FIGURES[key][0]} "
        + (f"{number(record[key])} {FIGURES[key][1]}" if record.get(key) is not None else "absent")
        for key in missed)


def pick(runs: list[dict[str, Any]], name: str) -> tuple[int, dict[str, Any]] | None:
    """(run number, record) for a job: the last run that measured it, else the last that tried."""
    tried = [(n, run["jobs"][name]) for n, run in enumerate(runs, 1) if name in run.get("jobs", {})]
    measured = [item for item in tried if outcome(item[1]) == "measured"]
    chosen = measured or tried
    return chosen[-1] if chosen else None


def describe(n: int, run: dict[str, Any]) -> str:
    env = run.get("environment", {})
    versions = env.get("versions", {})
    driver = f", driver {env['gpu_driver']}" if env.get("gpu_driver") else ""
    reduced = ", REDUCED sizes (ratios only)" if run.get("reduced") else ""
    return (f"[{n}] {run.get('date', 'undated')[:10]}: {env.get('device')}{driver}, torch {env.get('torch')}, "
            f"diffusers {versions.get('diffusers')}, {run.get('dtype')}, random weights{reduced} "
            f"(`{run['source']}`)")


def render(runs: list[dict[str, Any]]) -> str:
    """The README block: a line on the runs, the table, and the ratios both runs of a pair allow."""
    if len({bool(run.get("reduced")) for run in runs}) > 1:
        reduced = next(run["source"] for run in runs if run.get("reduced"))
        raise SystemExit(f"{reduced}: a REDUCED run (ratios only) cannot share a table with full-size runs; "
                         "leave it out")
    plan = runs[-1]["plan"]
    used = {entry["name"]: pick(runs, entry["name"]) for entry in plan}
    cited = sorted({item[0] for item in used.values() if item is not None})
    lines = [BEGIN]
    if cited:
        lines += ["Runs (`--model random`):", ""] + [f"- {describe(n, runs[n - 1])}" for n in cited] + [""]
    else:
        lines += [f"GPU (one H200-class GPU, bf16): **{NOT_YET}**.", ""]
    lines += [HEADER, "|---|---|---|---|---|---|"]
    for entry in plan:
        item = used[entry["name"]]
        cells = [entry["label"], target_text(entry["targets"], entry["kind"])]
        if item is None or outcome(item[1]) != "measured":
            cells += [NOT_YET] * 3
        else:
            n, record = item
            tag = f" [{n}]" if len(runs) > 1 else ""
            peak = runs[n - 1].get("environment", {}).get("bf16_peak_tflops")
            cells += [measured_text(entry["kind"], record) + tag, memory_text(record), rate_text(record, peak)]
        cells.append(status_text(item[1] if item else None, bool(item and runs[item[0] - 1].get("reduced"))))
        lines.append("| " + " | ".join(cells) + " |")
    for top, bottom, what in RATIOS:
        a, b = used.get(top), used.get(bottom)
        if a and b and outcome(a[1]) == outcome(b[1]) == "measured":
            lines += ["", f"{what}: {a[1]['elapsed_s'] / b[1]['elapsed_s']:.2f}"]
    return "\n".join(lines + [END])


def result_name(run: dict[str, Any]) -> str:
    """``DATE_GPU_driver-V_torch-V_diffusers-V.json``: the run's identity, in safe characters."""
    env = run.get("environment", {})
    parts = [run.get("date", "undated")[:10], env.get("device") or "unknown",
             f"driver-{env.get('gpu_driver') or 'none'}",
             f"torch-{env.get('torch')}", f"diffusers-{env.get('versions', {}).get('diffusers')}"]
    if run.get("reduced"):
        parts.append("reduced")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)) + ".json"


def keep(path: Path, folder: Path = RESULTS) -> Path:
    """Copy a run into ``folder`` under :func:`result_name`; the copy is what the table cites."""
    run = load_run(path)
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / result_name(run)
    shutil.copyfile(path, kept)
    return kept


def rewrite_readme(readme: Path, block: str) -> None:
    """Replace the block between the markers, through a temporary file (never half-written)."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no speed-table markers; put {BEGIN!r} and {END!r} where the table goes")
    head, rest = text.split(BEGIN, 1)
    new = head + block + rest.split(END, 1)[1]
    temp = readme.with_name(f".{readme.name}.partial")
    temp.write_text(new)
    os.replace(temp, readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="gpu_run.py JSON files, oldest first (or speed.py --list's)")
    parser.add_argument("--keep", type=Path, action="append", default=[],
                        help="a new run: copy it into benchmarks/results/ and use the copy")
    parser.add_argument("--readme", type=Path, help="rewrite this README's speed-table block instead of printing")
    args = parser.parse_args(argv)
    paths = list(args.runs) + [keep(path) for path in args.keep]
    if not paths:
        parser.error("give at least one run's JSON (or --keep RUN.json)")
    block = render([load_run(path) for path in paths])
    if args.readme:
        rewrite_readme(args.readme, block)
    else:
        print(block)


if __name__ == "__main__":
    main()
