"""The GPU run's pieces that need no GPU: the driver's arguments, budget and JSON (benchmarks/
gpu_run.py), the README's table (speed_table.py), speed.py's job list, and the one-step profiler.

The driver is run with its process launcher replaced by one that answers as speed.py does (a job
list, then one JSON per job) on a simulated clock, so budget skipping, caps and the JSON written
after every job are checked in milliseconds; one slow test runs real processes under a cap.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
README = BENCHMARKS.parent / "README.md"


@pytest.fixture
def bench(monkeypatch):
    """Import a benchmarks/ script as the scripts import each other (their folder on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def plan_entry(name, kind="t2v", tflop=100.0, cap=60.0, assumed=0.0, targets=None, profiled=True):
    return {"name": name, "label": f"label of {name}", "kind": kind, "tflop": tflop, "cap_s": cap,
            "assumed_s": assumed, "targets": targets if targets is not None else {"elapsed_s": 10.0},
            "profiled": profiled}


# -- arguments and the budget's arithmetic ---------------------------------------------------------

def test_arguments_default_to_one_gpu_call_and_reject_a_bad_budget(bench, monkeypatch, tmp_path):
    gpu_run = bench("gpu_run")
    monkeypatch.setenv("OUT", str(tmp_path))
    args = gpu_run.parse_args([])
    assert (args.device, args.reduced, args.jobs, args.tests, args.profile) == ("cuda", False, None, True, "missed")
    assert args.budget == gpu_run.DEFAULT_BUDGET_S < 600 and args.out == tmp_path
    assert abs(args.started - time.time()) < 60
    args = gpu_run.parse_args(["--reduced", "--device", "cpu", "--jobs", "a,b", "--budget", "90", "--no-tests",
                               "--profile", "all", "--started", "123"])
    assert (args.device, args.reduced, args.jobs, args.budget, args.tests, args.profile, args.started) == \
        ("cpu", True, ["a", "b"], 90.0, False, "all", 123.0)
    for bad in (["--budget", "0"], ["--device", "tpu"], ["--profile", "sometimes"]):
        with pytest.raises(SystemExit) as exit_:
            gpu_run.parse_args(bad)
        assert exit_.value.code == 2


def test_a_job_is_skipped_when_its_estimate_does_not_fit_the_time_left(bench):
    gpu_run = bench("gpu_run")
    rate = gpu_run.measured_rate({"elapsed_s": 9.0, "denoise_s": 8.0, "unet_tflop": 400.0, "peak_memory_gb": 1.0},
                                 process_s=20.0, name="first")
    assert rate == {"from_job": "first", "tflops_per_s": 50.0, "overhead_s": 12.0}
    entry = plan_entry("next", tflop=1000.0, assumed=5.0)
    assert gpu_run.estimate_s(entry, None) is None  # nothing measured yet: no estimate
    assert gpu_run.estimate_s(entry, rate) == pytest.approx(gpu_run.ESTIMATE_MARGIN * (12.0 + 20.0 + 5.0))
    assert gpu_run.skip_reason(37.0, left=40.0, budget=540) is None
    assert gpu_run.skip_reason(None, left=40.0, budget=540) is None  # the first job just runs, under its cap
    assert "estimated 37 s > 30 s left of --budget 540" in gpu_run.skip_reason(37.0, left=30.0, budget=540)
    assert "too little to start" in gpu_run.skip_reason(None, left=gpu_run.MIN_JOB_S - 1, budget=540)
    for unusable in ({"skipped": "no time"}, {"error": "OOM"},
                     {"eager_s": 1.0, "compiled_s": 0.5, "peak_memory_gb": 1}):
        assert gpu_run.measured_rate(unusable, 20.0, "x") is None


def test_profiles_go_to_jobs_that_missed_or_were_killed(bench):
    gpu_run = bench("gpu_run")
    entry = plan_entry("a")
    met, missed = {"elapsed_s": 1.0, "missed": []}, {"elapsed_s": 99.0, "missed": ["elapsed_s"]}
    killed, skipped = {"killed": "stopped at its 60 s cap"}, {"skipped": "budget"}
    assert [gpu_run.wants_profile(entry, r, "missed") for r in (met, missed, killed, skipped, None)] == \
        [False, True, True, False, False]
    assert [gpu_run.wants_profile(entry, r, "all") for r in (met, missed, killed)] == [True, True, False]
    assert not gpu_run.wants_profile(entry, missed, "none")
    assert not gpu_run.wants_profile(plan_entry("c", kind="unet_compile", profiled=False), missed, "all")


# -- the driver end to end, on a simulated clock ------------------------------------------------------

class FakeSpeed:
    """Answers the driver's commands as speed.py would, advancing a simulated clock by each
    process's seconds; records what it was asked and the run's JSON as each job started."""

    def __init__(self, plan, seconds, records, json_path):
        self.plan, self.seconds, self.records, self.json_path = plan, seconds, records, json_path
        self.now = 1000.0
        self.calls, self.seen_before = [], {}

    def __call__(self, cmd, cap_s, log):
        gpu_run = sys.modules["gpu_run"]
        self.calls.append((cmd, cap_s))
        if "presets" in cmd or cmd == ["nvidia-smi"]:
            return gpu_run.Finished(0, 1.0, "t2v-640p ...")
        out = Path(cmd[cmd.index("--json") + 1]) if "--json" in cmd else None
        if "--list" in cmd:
            env = {"device": "NVIDIA H200", "gpu_driver": "580.1", "gpu_memory_gb": 139.8, "cuda_available": True,
                   "python": "3.12.3", "torch": "2.11.0+cu130", "torch_cuda": "13.0", "bf16_peak_tflops": 989.0,
                   "versions": {"diffusers": "0.42.1", "transformers": "5.17.0", "av": "18.1.0", "vidscale": "0.2.0"},
                   "vidscale_from": "/tmp/site/vidscale"}
            out.write_text(json.dumps({"environment": env, "dtype": "bfloat16", "reduced": False, "plan": self.plan}))
            self.now += 10
            return gpu_run.Finished(0, 10.0, "")
        if cmd[-1].endswith(".py") or "pytest" in cmd:
            self.now += 30
            return gpu_run.Finished(0, 30.0, "1 passed, 2 deselected in 3.1s")
        name = cmd[cmd.index("--jobs") + 1]
        if "--profile-step" in cmd:
            folder = Path(cmd[cmd.index("--profile-step") + 1])
            (folder / f"profile_{name}.txt").write_text("top kernels ...")
            out.write_text(json.dumps({"jobs": {name: {"profile": {"file": f"profile_{name}.txt", "step_s": 0.5}}}}))
            self.now += 15
            return gpu_run.Finished(0, 15.0, "")
        self.seen_before[name] = json.loads(self.json_path.read_text())["jobs"].copy()
        seconds = self.seconds[name]
        if seconds > cap_s:  # the driver's cap kills it: no JSON
            self.now += cap_s
            return gpu_run.Finished(None, cap_s, "")
        out.write_text(json.dumps({"models": {"videocrafter2": {"build_s": 3.0}}, "jobs": {name: self.records[name]}}))
        self.now += seconds
        return gpu_run.Finished(0, seconds, "")


def measured(elapsed, denoise, tflop, missed=()):
    return {"elapsed_s": elapsed, "denoise_s": denoise, "unet_tflop": tflop, "peak_memory_gb": 30.0,
            "peak_memory_kind": "cuda max_memory_allocated", "tflops_per_s": tflop / denoise, "missed": list(missed),
            "output": "1024x640x16", "stages_s": {}, "s_per_unet_step": {}}


def test_the_driver_runs_jobs_in_order_skips_what_cannot_fit_and_saves_after_every_job(bench, monkeypatch, tmp_path,
                                                                                      capsys):
    gpu_run = bench("gpu_run")
    plan = [plan_entry("first", tflop=400.0, cap=100.0),  # measures 50 TFLOP/s, 12 s of overhead
            plan_entry("compile", kind="unet_compile", tflop=50.0, assumed=20.0, targets={}, profiled=False),
            plan_entry("huge", tflop=20_000.0, cap=500.0),  # 1.25 x 412 s estimated: skipped
            plan_entry("slow", tflop=100.0, cap=40.0),  # 1.25 x 14 s estimated, but runs past its cap
            plan_entry("not_chosen")]
    records = {"first": measured(15.0, 8.0, 400.0, missed=["elapsed_s"]),
               "compile": {"eager_s": 0.4, "compiled_s": 0.3, "ratio": 0.75, "compile_s": 20.0,
                           "first_compiled_call_s": 20.3, "peak_memory_gb": 20.0, "missed": []}}
    args = gpu_run.parse_args(["--out", str(tmp_path), "--budget", "300", "--started", "1000",
                               "--jobs", "first,compile,huge,slow"])
    fake = FakeSpeed(plan, {"first": 20.0, "compile": 35.0, "slow": 90.0}, records, tmp_path / gpu_run.RUN_JSON)
    driver = gpu_run.Driver(args, clock=lambda: fake.now)
    monkeypatch.setattr(gpu_run, "run_capped", fake)
    assert driver.main() == 1  # a job was killed at its cap

    run = json.loads((tmp_path / gpu_run.RUN_JSON).read_text())
    jobs = run["jobs"]
    assert list(jobs) == ["first", "compile", "huge", "slow"] and run["finished"] is True
    assert run["environment"]["device"] == "NVIDIA H200" and run["tests"]["summary"] == "1 passed, 2 deselected in 3.1s"
    assert run["rate"] == {"from_job": "first", "tflops_per_s": 50.0, "overhead_s": 12.0}
    assert jobs["first"]["process"] == {"seconds": 20.0, "cap_s": 100.0, "rc": 0, "model_build_s": 3.0}
    assert jobs["first"]["estimate_s"] is None and jobs["compile"]["estimate_s"] == pytest.approx(1.25 * (12 + 1 + 20))
    assert jobs["huge"]["skipped"] == "estimated 515 s > 205 s left of --budget 300"
    assert jobs["slow"]["killed"] == "stopped at its 40 s cap" and jobs["slow"]["process"]["rc"] is None
    # the JSON on disk held every earlier job when the next one started (a cut-off run keeps them)
    assert list(fake.seen_before["compile"]) == ["first"]
    assert list(fake.seen_before["slow"]) == ["first", "compile", "huge"]
    # profiles: the missed job and the killed one, in order of value, each under the time left
    profiled = [cmd[cmd.index("--jobs") + 1] for cmd, _ in fake.calls if "--profile-step" in cmd]
    assert profiled == ["first", "slow"]
    assert jobs["first"]["profile"]["file"] == "profile_first.txt" and (tmp_path / "profile_first.txt").exists()
    assert "--reduced" not in fake.calls[-1][0] and fake.calls[-1][0][fake.calls[-1][0].index("--device") + 1] == "cuda"
    out = capsys.readouterr().out
    assert "| label of huge | <= 10 s | not measured yet" in out and "skipped: estimated 515 s" in out


def test_the_driver_stops_with_exit_2_when_no_gpu_is_visible(bench, monkeypatch, tmp_path, capsys):
    gpu_run = bench("gpu_run")
    fake = FakeSpeed([plan_entry("first")], {}, {}, tmp_path / gpu_run.RUN_JSON)
    original = fake.__call__

    def no_cuda(cmd, cap_s, log):
        finished = original(cmd, cap_s, log)
        if "--list" in cmd:
            path = Path(cmd[cmd.index("--json") + 1])
            listed = json.loads(path.read_text())
            listed["environment"]["cuda_available"] = False
            path.write_text(json.dumps(listed))
        return finished

    monkeypatch.setattr(gpu_run, "run_capped", no_cuda)
    driver = gpu_run.Driver(gpu_run.parse_args(["--out", str(tmp_path)]), clock=lambda: fake.now)
    assert driver.main() == 2
    assert "no CUDA device visible to torch 2.11.0+cu130" in capsys.readouterr().err
    assert "--reduced --device cpu" in json.loads((tmp_path / gpu_run.RUN_JSON).read_text())["error"]


@pytest.mark.slow
def test_a_process_past_its_cap_is_killed_with_its_children_and_its_output_kept(bench, tmp_path):
    gpu_run = bench("gpu_run")
    log = tmp_path / "log"
    quick = gpu_run.run_capped([sys.executable, "-c", "print('hello')"], 30, log)
    assert (quick.rc, quick.output, quick.killed) == (0, "hello\n", False)
    script = ("import subprocess, sys, time; child = subprocess.Popen(['sleep', '60']); "
              "print(child.pid, flush=True); time.sleep(60)")
    started = time.monotonic()
    slow = gpu_run.run_capped([sys.executable, "-c", script], 1.5, log)
    assert slow.killed and slow.rc is None and time.monotonic() - started < 20
    child = Path(f"/proc/{int(slow.output.split()[0])}/status")
    deadline = time.monotonic() + 10  # SIGKILL is delivered at once, the exit takes a moment
    while child.exists() and "State:\tZ" not in child.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not child.exists() or "State:\tZ" in child.read_text()  # gone (or a zombie awaiting its reaper)
    assert "hello" in log.read_text() and "[killed at its 2 s cap after" in log.read_text()


# -- the README's table ---------------------------------------------------------------------------

def a_run(reduced=False):
    plan = [plan_entry("t2v_640_dpm25", targets={"elapsed_s": 15.0, "peak_memory_gb": 40.0}),
            plan_entry("t2v_640", targets={"elapsed_s": 30.0, "peak_memory_gb": 40.0}),
            plan_entry("unet_compile", kind="unet_compile", targets={}),
            plan_entry("upscale_2160", kind="upscale", targets={"s_per_output_frame": 12.5}),
            plan_entry("t2v_1280", targets={"elapsed_s": 180.0}),
            plan_entry("budget22", kind="upscale", targets={"peak_memory_gb": 22.0})]
    upscale = {**measured(160.0, 150.0, 22000.0), "s_per_output_frame": 10.0, "output": "3840x2160x16",
               "projected": {"frames": 48, "elapsed_s": 480.0}, "peak_reserved_gb": 35.5}
    jobs = {"t2v_640_dpm25": measured(12.5, 10.0, 2764.0), "t2v_640": measured(32.25, 28.0, 5410.0, ["elapsed_s"]),
            "unet_compile": {"eager_s": 0.41, "compiled_s": 0.3, "ratio": 0.732, "compile_s": 95.2,
                             "eager_tflops_per_s": 144.0, "tflops_per_s_compiled": 197.0, "peak_memory_gb": 20.0,
                             "peak_memory_kind": "cuda max_memory_allocated", "missed": []},
            "upscale_2160": upscale, "t2v_1280": {"killed": "stopped at its 420 s cap"},
            "budget22": {"skipped": "estimated 300 s > 100 s left of --budget 540"}}
    env = {"device": "NVIDIA H200", "gpu_driver": "580.159.04", "torch": "2.11.0+cu130", "bf16_peak_tflops": 989.0,
           "versions": {"diffusers": "0.42.1"}}
    return {"date": "2026-11-20T10:00:00+00:00", "environment": env, "dtype": "bfloat16", "reduced": reduced,
            "plan": plan, "jobs": jobs, "source": "benchmarks/results/x.json"}


def test_the_table_has_a_row_per_job_with_its_figures_and_status(bench):
    table = bench("speed_table")
    lines = table.render([a_run()]).splitlines()
    assert lines[0] == table.BEGIN and lines[-1] == table.END
    assert "NVIDIA H200, driver 580.159.04, torch 2.11.0+cu130, diffusers 0.42.1, bfloat16" in lines[3]
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines if line.startswith("| label of")}
    assert all(len(cells) == 6 for cells in rows.values()) and len(rows) == 6
    assert lines[lines.index(table.HEADER) + 1] == "|---|---|---|---|---|---|"
    assert rows["label of t2v_640_dpm25"][1:] == ["<= 15 s, <= 40 GB", "12.5 s", "30 GB", "276 (28%)", "met |"]
    assert rows["label of t2v_640"][5] == "missed: end to end 32.2 s |"
    compile_cell = "eager 0.41 s, compiled 0.3 s (0.73x); compiling 95.2 s"
    assert rows["label of unet_compile"][1:4] == ["none (a comparison)", compile_cell, "20 GB"]
    assert rows["label of unet_compile"][4] == "144 (15%) eager, 197 (20%) compiled"
    assert rows["label of upscale_2160"][2:4] == ["10 s/frame (16 frames in 160 s; 48 frames PROJECTED 480 s)",
                                                  "30 GB (35.5 reserved)"]
    assert rows["label of t2v_1280"][2:] == ["not measured yet"] * 3 + ["killed: stopped at its 420 s cap |"]
    assert rows["label of budget22"][5].startswith("skipped: estimated 300 s")
    assert "DPM++ 2M 25 steps vs DDIM 50, end to end: 0.39" in lines


def test_a_figure_without_a_target_a_cache_comparison_and_an_unprojected_upscale_have_their_cells(bench):
    table = bench("speed_table")
    run = a_run()
    run["plan"] = [plan_entry("wan_upscale", kind="upscale", targets={}),
                   plan_entry("wan_cache", kind="wan_cache", targets={})]
    figures = {"seconds": 1.2, "wall_ratio": 0.6, "max_abs_deviation": 0.02, "mean_abs_deviation": 0.003,
               "mean_abs_deviation_over_rms": 0.0022}
    run["jobs"] = {"wan_upscale": {**measured(120.0, 100.0, 62682.0), "output": "2560x1440x81",
                                   "s_per_output_frame": 120.0 / 81},
                   "wan_cache": {"elapsed_s": 300.0, "none_s": 60.0, "peak_memory_gb": 30.0, "missed": [],
                                 "caches": {"first-block": {**figures, "wall_ratio": 0.8}, "mag": figures}}}
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.render([run]).splitlines()
            if line.startswith("| label of")}
    assert rows["label of wan_upscale"][1:3] == ["none (a figure only)", "1.48 s/frame (81 frames in 120 s)"]
    assert rows["label of wan_cache"][1:3] == [
        "none (a comparison)", "uncached 60 s; first-block 0.80x (latent off by 0.22% of its RMS), "
                               "mag 0.60x (latent off by 0.22% of its RMS)"]
    assert rows["label of wan_cache"][5] == "met |"


def test_a_later_run_fills_the_rows_an_earlier_one_did_not_measure(bench):
    table = bench("speed_table")
    first, second = a_run(), a_run()
    second["jobs"] = {"t2v_1280": {**measured(170.0, 160.0, 18898.0), "output": "2048x1280x16"}}
    second["date"], second["source"] = "2026-11-21T09:00:00+00:00", "benchmarks/results/y.json"
    rows = {line.split(" | ")[0][2:]: line for line in table.render([first, second]).splitlines()
            if line.startswith("| label of")}
    assert "| 170 s [2] |" in rows["label of t2v_1280"] and "| 12.5 s [1] |" in rows["label of t2v_640_dpm25"]
    assert "skipped" in rows["label of budget22"]


def test_the_readme_table_is_the_generated_one_and_says_not_measured_yet(bench):
    """The README's block is speed_table.py's rendering of speed.py's job list with no run: every
    figure cell says 'not measured yet', so no GPU figure in it was typed by hand."""
    speed, table = bench("speed"), bench("speed_table")
    listing = {"plan": speed.listing(speed.parse_args([]), torch.device("cuda"), torch.bfloat16),
               "source": "speed.py --list"}
    block = table.render([listing])
    text = README.read_text()
    assert block in text
    rows = [line for line in block.splitlines() if line.startswith("| ") and line != table.HEADER]
    assert len(rows) == len(speed.JOBS) and all(line.endswith("| not measured yet |") for line in rows)


def test_a_kept_run_is_named_by_date_gpu_driver_and_versions_and_the_readme_block_is_replaced(bench, tmp_path):
    table = bench("speed_table")
    run = a_run()
    run["environment"]["device"] = "NVIDIA H200 / SXM"
    source = tmp_path / "gpu_run.json"
    source.write_text(json.dumps(run))
    kept = table.keep(source, tmp_path / "results")
    assert kept.name == "2026-11-20_NVIDIA-H200-SXM_driver-580.159.04_torch-2.11.0-cu130_diffusers-0.42.1.json"
    assert json.loads(kept.read_text()) == run
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{table.BEGIN}\nold table\n{table.END}\nafter\n")
    table.rewrite_readme(readme, table.render([table.load_run(kept)]))
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n" + table.BEGIN) and text.endswith(table.END + "\nafter\n")
    assert "old table" not in text and "| 12.5 s |" in text
    with pytest.raises(SystemExit, match="no speed-table markers"):
        (tmp_path / "other.md").write_text("no markers")
        table.rewrite_readme(tmp_path / "other.md", "block")


# -- speed.py's job list and the one-step profiler ----------------------------------------------------

def test_speed_lists_its_jobs_in_order_of_value_with_what_the_driver_needs(bench):
    speed = bench("speed")
    full = speed.listing(speed.parse_args([]), torch.device("cuda"), torch.bfloat16)
    reduced = speed.listing(speed.parse_args(["--reduced"]), torch.device("cpu"), torch.float32)
    assert [e["name"] for e in full] == [e["name"] for e in reduced] == list(speed.JOBS)
    assert list(speed.JOBS)[:2] == ["t2v_640_dpm25", "t2v_640"]
    for entry in full + reduced:
        assert set(entry) == {"name", "label", "kind", "targets", "tflop", "assumed_s", "cap_s", "profiled"}
        assert 0 < entry["cap_s"] <= 600
    assert all(entry["tflop"] > 0 for entry in full)
    assert all(entry["tflop"] >= 0 for entry in reduced)  # wan-tiny's upscale plan rounds to 0.00 TFLOP a step
    tflop = {e["name"]: e["tflop"] for e in full}
    assert tflop["t2v_640"] == pytest.approx(2 * tflop["t2v_640_dpm25"], rel=0.1)  # 50 vs 25 steps
    assert tflop["t2v_1280"] > 3 * tflop["t2v_640"] and full[2]["profiled"] is False
    assert speed.missed_targets({"elapsed_s": 31.0, "peak_memory_gb": 12.0}, {"elapsed_s": 30.0, "peak_memory_gb": 40.0,
                                                                              "peak_reserved_gb": 40.0}) == \
        ["elapsed_s", "peak_reserved_gb"]  # a figure that was not measured counts as missed
    with pytest.raises(SystemExit):
        speed.parse_args(["--jobs", "t2v_640,nonsense"])


WAN_JOBS = ["wan_t2v_480", "wan_t2v_480_fbc", "wan_t2v_480_mag", "wan_t2v_960", "wan_upscale_1440", "wan_cache"]


def test_the_wan_jobs_follow_the_videocrafter2_jobs_with_their_targets(bench):
    """Issue #20's targets on one H200 in bf16: 81 x 480x832 in 60 s with 50 steps, 30 s with a
    cache, 960x1664 in 6 min, all within 40 GB; the 1440p upscale is a figure, wan_cache a comparison."""
    speed = bench("speed")
    assert list(speed.JOBS)[-len(WAN_JOBS):] == WAN_JOBS
    assert [name for name, job in speed.JOBS.items() if job.family == "wan"] == WAN_JOBS
    listed = {entry["name"]: entry for entry in speed.listing(speed.parse_args([]), torch.device("cuda"),
                                                               torch.bfloat16)}
    targets = {name: listed[name]["targets"] for name in WAN_JOBS}
    assert targets == {"wan_t2v_480": {"elapsed_s": 60.0, "peak_memory_gb": 40.0},
                       "wan_t2v_480_fbc": {"elapsed_s": 30.0, "peak_memory_gb": 40.0},
                       "wan_t2v_480_mag": {"elapsed_s": 30.0, "peak_memory_gb": 40.0},
                       "wan_t2v_960": {"elapsed_s": 360.0, "peak_memory_gb": 40.0},
                       "wan_upscale_1440": {}, "wan_cache": {}}
    assert [listed[name]["profiled"] for name in WAN_JOBS] == [True] * 5 + [False]
    tflop = {name: listed[name]["tflop"] for name in WAN_JOBS}
    assert tflop["wan_t2v_480_fbc"] == tflop["wan_t2v_480_mag"] == tflop["wan_t2v_480"]  # as if uncached
    assert tflop["wan_cache"] == pytest.approx(5 * tflop["wan_t2v_480"])  # a warm-up per cache, then 3 timed runs
    # 3-D attention over 21 latent frames: four times the tokens cost more than four times the FLOPs
    assert tflop["wan_t2v_960"] > tflop["wan_t2v_480"] * (1 + 4 * 30 / 50)
    # the --wan-model chosen is what the jobs are planned with
    tiny = {e["name"]: e["tflop"] for e in speed.listing(speed.parse_args(["--wan-model", "wan-tiny"]),
                                                          torch.device("cuda"), torch.bfloat16)}
    assert 0 < tiny["wan_t2v_480"] < tflop["wan_t2v_480"] / 1000 and tiny["t2v_640"] == listed["t2v_640"]["tflop"]


def test_a_generate_jobs_stages_add_up_to_the_plans_flops(bench):
    """speed.py's per-stage FLOPs (its TFLOP/s and the budget's estimates) are the cost model that
    ``vidscale generate`` plans with, for either family."""
    from vidscale.work.plan import generate_tflops

    speed = bench("speed")
    for reduced in ([], ["--reduced"]):
        args = speed.parse_args(reduced)
        for name, job in speed.JOBS.items():
            if job.kind == "t2v":
                spec = speed.family_spec(job.family, args)
                settings = speed.job_settings(job, args.reduced, torch.device("cpu"))
                work = speed.t2v_unet_work(settings, spec)
                assert [stage for stage, _, _ in work] == ["base"] + [f"x{f}" for f in speed.cascade_factors(settings)]
                total = sum(steps * tflop for _, steps, tflop in work)
                assert total == pytest.approx(generate_tflops(settings, spec.cost, spec.grid), abs=0.05), name


def test_the_profiled_stage_is_the_last_cascade_stage_or_the_base(bench):
    speed = bench("speed")
    stage = {name: speed.profile_stage(job, speed.job_settings(job, False, torch.device("cpu")))
             for name, job in speed.JOBS.items()}
    assert stage["t2v_1280"] == ("steps", 2) and stage["wan_t2v_960"] == ("steps", 1)
    assert stage["wan_t2v_480"] == ("base", 1) and stage["wan_upscale_1440"] == ("steps", 1)
    assert stage["wan_cache"] is None and stage["unet_compile"] is None


@pytest.mark.slow
def test_the_reduced_wan_jobs_run_on_wan_tiny_and_compare_the_caches(bench, tmp_path):
    """A reduced run of a Wan job and of the cache comparison: wan-tiny is built once,
    VideoCrafter2 never; the record's FLOPs are the listing's; each cache changes the latent a
    little and every figure is there. Then the base stage's second step is profiled."""
    speed = bench("speed")
    out = tmp_path / "run.json"
    options = ["--reduced", "--device", "cpu", "--json", str(out)]
    speed.main(options + ["--jobs", "wan_t2v_480,wan_cache"])
    run = json.loads(out.read_text())
    assert list(run["models"]) == ["wan"] and run["models"]["wan"]["name"].startswith("wan-tiny")
    base, cache = run["jobs"]["wan_t2v_480"], run["jobs"]["wan_cache"]
    assert base["output"] == "80x48x9" and list(base["s_per_unet_step"]) == ["base"] and base["denoise_s"] > 0
    assert "missed" not in base and base["settings"]["steps"] == 50  # reduced: no target applies
    listed = {e["name"]: e for e in speed.listing(speed.parse_args(["--reduced"]), torch.device("cpu"), torch.float32)}
    assert base["unet_tflop"] == pytest.approx(listed["wan_t2v_480"]["tflop"])
    assert set(cache["caches"]) == {"first-block", "mag"} and cache["none_s"] > 0 and cache["rounds"] == 5
    assert cache["elapsed_s"] > 5 * (cache["none_s"] + sum(c["seconds"] for c in cache["caches"].values()))
    for figures in cache["caches"].values():
        assert figures["wall_ratio"] == pytest.approx(figures["seconds"] / cache["none_s"])
        assert 0 < figures["mean_abs_deviation"] <= figures["max_abs_deviation"]
        assert 0 < figures["mean_abs_deviation_over_rms"] < 0.05
    speed.main(options + ["--jobs", "wan_t2v_480", "--profile-step", str(tmp_path)])
    assert json.loads(out.read_text())["jobs"]["wan_t2v_480"]["profile"]["stage"] == "base"
    assert "bar 'base' #1, step 2 of 50" in (tmp_path / "profile_wan_t2v_480.txt").read_text()


class Bar:
    def __init__(self):
        self.updates = 0

    def update(self, n=1):
        self.updates += n

    def set_postfix_str(self, s):
        pass


def test_the_step_profile_covers_one_step_of_the_chosen_stage_then_stops_the_job(bench, tmp_path):
    step_profile = bench("step_profile")
    profile = step_profile.StepProfile("job", "steps", 2, tmp_path, torch.device("cpu"), sync=lambda: None)
    bars = [Bar() for _ in range(3)]
    assert profile.watch("base", bars[0], 4) is bars[0]
    assert profile.watch("steps", bars[1], 4) is bars[1]  # the first "steps" bar: not the chosen one
    watched = profile.watch("steps", bars[2], 4)
    x = torch.randn(64, 64)
    watched.update(1)  # step 1 done: profiling starts
    torch.mm(x, x)
    with pytest.raises(step_profile.StepProfiled):
        watched.update(1)  # step 2 done: written, and the job stops
    assert bars[2].updates == 2
    summary = profile.summary
    assert summary["file"] == "profile_job.txt" and summary["step"] == 2 and summary["occurrence"] == 2
    assert any(row["name"] == "aten::mm" for row in summary["top"]) and summary["step_s"] > 0
    text = (tmp_path / "profile_job.txt").read_text()
    assert "step 2 of 4" in text and "aten::mm" in text and "memory peak" in text


@pytest.mark.slow
def test_speed_list_runs_as_a_script_and_writes_its_json(tmp_path):
    """The driver reads the job list from speed.py's process, not from an import."""
    out = tmp_path / "list.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--list", "--reduced", "--device", "cpu",
                    "--json", str(out)], check=True, cwd=BENCHMARKS.parent, timeout=300)
    listed = json.loads(out.read_text())
    assert listed["reduced"] is True and listed["environment"]["device"] != "cuda"
    assert [entry["name"] for entry in listed["plan"]][:2] == ["t2v_640_dpm25", "t2v_640"]


def test_a_reduced_run_never_fills_rows_of_the_gpu_table(bench):
    table = bench("speed_table")
    cpu = a_run(reduced=True)
    cpu["source"] = "out/rehearsal.json"
    with pytest.raises(SystemExit, match="out/rehearsal.json: a REDUCED run"):
        table.render([a_run(), cpu])
    alone = table.render([cpu])  # the rehearsal's own table says what it is
    assert "REDUCED sizes (ratios only)" in alone and "reduced run: no target applies" in alone
