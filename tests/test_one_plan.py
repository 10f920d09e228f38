"""One plan (#23): ``--dry-run``, ``report.json`` and the review page show the same plan object.

The dry run reads the model's configs (base size, precision, cost) without loading a weight, so
its plan is the one the run makes; the review page shows the run's plan as the dry run prints it.
"""

from __future__ import annotations

import html
import json

from click.testing import CliRunner

from vidscale.cli import main
from vidscale.work.plan import describe_plan

RUN = ("--model", "tiny", "--steps", "2", "--codec", "h264", "--memory-budget", "0.1")


def test_the_dry_run_report_and_review_page_show_one_plan(make_clip, tmp_path):
    clip, output = make_clip(width=64, height=48, frames=5), tmp_path / "out.mp4"
    runner = CliRunner()
    dry = runner.invoke(main, ["upscale", str(clip), "-o", str(output), *RUN, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)["items"][0]["result"]
    run = runner.invoke(main, ["upscale", str(clip), "-o", str(output), *RUN, "--review", "--json", "-q"])
    assert run.exit_code == 0, run.output
    report = json.loads(next(tmp_path.glob(".vidscale-jobs/*/report.json")).read_text())
    assert report["plan"] == planned["plan"]
    assert planned["plan"]["geometry"]["base_latent"] == [8, 8]  # the tiny model's, not VC2's 40x64
    page = (tmp_path / "out_review.html").read_text()
    assert html.escape(describe_plan(planned["plan"])) in page


def test_the_dry_run_estimates_this_machine_from_a_measured_rate(make_clip):
    result = CliRunner().invoke(main, ["upscale", str(make_clip(frames=3)), *RUN, "--dry-run"])
    assert result.exit_code == 0, result.output
    estimate = next(line for line in result.output.splitlines() if line.startswith("estimate"))
    assert "on this machine (cpu, " in estimate and "measured on a matrix product" in estimate
    assert "an estimate" in estimate
