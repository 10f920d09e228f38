"""The GPU run: environment, the GPU tests, then speed.py's jobs in order of value, each in its own
process under its own time cap, the run's JSON rewritten after every step so that a run cut off
anywhere still returns what it measured.

A GPU machine may be lent for minutes, so everything is bounded by ``--budget`` (seconds since the
run started, ``gpu_run.sh``'s install included): a job is skipped when the time left cannot hold
it, estimated as the first measured job's fixed cost (process start, model, text, VAE, writing)
plus the job's UNet TFLOP (from the plan) at the throughput that job achieved, plus the seconds
its FLOPs do not cover (compiling: an assumption speed.py states), plus a quarter for margin. Each job's process is also
killed at its own cap (speed.py's ``cap_s``) or at the end of the budget, whichever is first, and
recorded as killed. A job that missed a target (or every job with ``--profile all``) is then run
once more, only up to one step of its highest stage, for a torch.profiler summary of that step.

The jobs, their order, FLOPs, caps and targets come from ``speed.py --list``: a job added there
needs nothing here. Standard library only; run it through ``gpu_run.sh``, which installs the
carried wheels and vidscale first:

    benchmarks/gpu_run.sh                                  # a GPU: every job, 540 s budget
    benchmarks/gpu_run.sh --jobs t2v_1280,upscale_2160     # a later run for what did not fit
    benchmarks/gpu_run.sh --reduced --device cpu           # the CPU rehearsal

Writes ``gpu_run.json``, ``gpu_run.log`` (every process's output) and ``profile_<job>.txt`` into
``--out`` (default ``$OUT``, else ``out/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from speed_table import outcome, render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUN_JSON = "gpu_run.json"
LOG = "gpu_run.log"
DEFAULT_BUDGET_S = 540.0  # one 10-minute call on the device, with a minute to spare
SETUP_CAP_S = 180.0  # the presets check and speed.py --list (each imports torch)
TESTS_CAP_S = 180.0
# Estimates are this much above the FLOP model's: what the first job's fixed cost leaves out (a 4K
# VAE decode and ProRes encode, a deeper cascade's extra stage) made the CPU rehearsal's jobs take
# 1.15 to 1.39 times their plain estimate. A job started without the time to finish is time lost.
ESTIMATE_MARGIN = 1.25
MIN_JOB_S = 20.0  # less than this left: no job starts (a process takes about that to import torch)
MAX_PROFILES = 5  # the device returns at most 8 files: the JSON, the log and these


@dataclass
class Finished:
    """How a capped process ended."""

    rc: int | None  # None: killed at its cap
    seconds: float
    output: str

    @property
    def killed(self) -> bool:
        return self.rc is None


def run_capped(cmd: list[str], cap_s: float, log: Path) -> Finished:
    """Run ``cmd`` in the repository's root in a process group of its own, for at most ``cap_s``
    seconds; its output is appended to ``log`` and returned. At the cap the whole group is killed
    (compile workers too, so no straggler holds the GPU's memory)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as output:
        with subprocess.Popen(cmd, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) as process:
            try:
                rc: int | None = process.wait(timeout=max(cap_s, 0.0))
            except subprocess.TimeoutExpired:
                rc = None
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the group's leftovers (or all of it, at the cap)
            except ProcessLookupError:
                pass
            process.wait()
        output.seek(0)
        text = output.read()
    seconds = time.monotonic() - started
    end = f"killed at its {cap_s:.0f} s cap" if rc is None else f"exit {rc}"
    with open(log, "a") as file:
        file.write(f"$ {shlex.join(cmd)}\n{text}[{end} after {seconds:.1f} s]\n\n")
    return Finished(rc, seconds, text)


def estimate_s(entry: dict[str, Any], rate: dict[str, Any] | None) -> float | None:
    """Seconds a job's process should take, from the rate the first measured job gave (None before)."""
    if rate is None:
        return None
    return ESTIMATE_MARGIN * (rate["overhead_s"] + entry["tflop"] / rate["tflops_per_s"] + entry["assumed_s"])


def skip_reason(estimate: float | None, left: float, budget: float) -> str | None:
    """Why a job must not start with ``left`` seconds of ``budget``; None: start it."""
    if left < MIN_JOB_S:
        return f"{max(left, 0):.0f} s left of --budget {budget:.0f}: too little to start a job"
    if estimate is not None and estimate > left:
        return f"estimated {estimate:.0f} s > {left:.0f} s left of --budget {budget:.0f}"
    return None


def measured_rate(record: dict[str, Any], process_s: float, name: str) -> dict[str, Any] | None:
    """The budget's yardstick from a measured job: UNet TFLOP/s and the process's other seconds."""
    if outcome(record) != "measured" or not record.get("denoise_s") or not record.get("unet_tflop"):
        return None
    return {"from_job": name, "tflops_per_s": record["unet_tflop"] / record["denoise_s"],
            "overhead_s": max(0.0, process_s - record["denoise_s"])}


def wants_profile(entry: dict[str, Any], record: dict[str, Any] | None, mode: str) -> bool:
    """``missed``: a job measured over a target, or killed at its cap; ``all``: every job measured."""
    if mode == "none" or record is None or not entry["profiled"]:
        return False
    if mode == "all":
        return outcome(record) == "measured"
    return bool(record.get("missed")) or outcome(record) == "killed"


def save_json(data: dict[str, Any], path: Path) -> None:
    """Write through a temporary name: a run killed mid-write keeps the previous complete file."""
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(temp, path)


def read_json(path: Path) -> dict[str, Any]:
    """A speed.py process's JSON, or {} when it wrote none (killed before, or mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Driver:
    """One run: its options, its clock, and the JSON it keeps up to date."""

    def __init__(self, args: argparse.Namespace, speed: Path = HERE / "speed.py", python: str = sys.executable,
                 clock: Callable[[], float] = time.time):
        self.args, self.speed, self.python, self.clock = args, speed, python, clock
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.json_path, self.log = self.out / RUN_JSON, self.out / LOG
        self.scratch = Path(tempfile.mkdtemp(prefix="gpu_run."))
        self.rate: dict[str, Any] | None = None
        self.run: dict[str, Any] = {
            "schema": 1, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv), "device": args.device, "reduced": args.reduced,
            "budget_s": args.budget, "profile": args.profile, "finished": False, "jobs": {},
        }

    def left(self) -> float:
        return self.args.budget - (self.clock() - self.args.started)

    def save(self) -> None:
        save_json(self.run, self.json_path)

    def say(self, line: str) -> None:
        print(f"[{self.clock() - self.args.started:5.0f} s] {line}", flush=True)

    def speed_cmd(self, *extra: str) -> list[str]:
        return [self.python, str(self.speed), "--device", self.args.device,
                *(["--reduced"] if self.args.reduced else []), *extra]

    def main(self) -> int:
        try:
            if not self.setup():
                return 2
            if self.args.tests:
                self.tests()
            for entry in self.plan():
                self.job(entry)
            self.profiles()
            self.run["finished"] = True
            self.save()
            print(render([{**self.run, "source": str(self.json_path)}]), flush=True)
            failed = [name for name, record in self.run["jobs"].items() if outcome(record) in ("error", "killed")]
            return 1 if failed else 0
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def setup(self) -> bool:
        """Log nvidia-smi, check that vidscale and its presets load, and read speed.py's jobs."""
        if shutil.which("nvidia-smi"):
            run_capped(["nvidia-smi"], 60, self.log)
        presets = run_capped([self.python, "-P", "-m", "vidscale", "presets"], SETUP_CAP_S, self.log)
        if presets.rc != 0:
            return self.fail("`python -m vidscale presets` failed: vidscale is not installed with its presets "
                             f"(gpu_run.sh installs it from this tree); its output is in {self.log}")
        listing_path = self.scratch / "list.json"
        listing = run_capped(self.speed_cmd("--list", "--json", str(listing_path)), SETUP_CAP_S, self.log)
        listed = read_json(listing_path)
        if "plan" not in listed:
            return self.fail(f"speed.py --list gave no job list (exit {listing.rc}); its output is in {self.log}")
        env = listed["environment"]
        self.run.update(environment=env, dtype=listed["dtype"], plan=listed["plan"])
        names = [entry["name"] for entry in listed["plan"]]
        unknown = [name for name in self.args.jobs or [] if name not in names]
        if unknown:
            return self.fail(f"--jobs: unknown job {', '.join(unknown)}; speed.py has {', '.join(names)}")
        if self.args.device == "cuda" and not env["cuda_available"]:
            return self.fail(f"no CUDA device visible to torch {env['torch']}: run this on a GPU machine, "
                             "or rehearse with --reduced --device cpu")
        versions = env["versions"]
        gpu = f" (driver {env.get('gpu_driver')}, {env['gpu_memory_gb']:.0f} GB)" if "gpu_memory_gb" in env else ""
        self.say(f"{env['device']}{gpu}, python {env['python']}, torch {env['torch']} (CUDA {env['torch_cuda']}), "
                 f"diffusers {versions['diffusers']}, transformers {versions['transformers']}, av {versions['av']}, "
                 f"vidscale {versions['vidscale']} from {env['vidscale_from']}")
        self.save()
        return True

    def fail(self, message: str) -> bool:
        self.run["error"] = message
        self.save()
        print(f"gpu_run: {message}", file=sys.stderr, flush=True)
        return False

    def plan(self) -> list[dict[str, Any]]:
        chosen = self.args.jobs
        return [entry for entry in self.run["plan"] if chosen is None or entry["name"] in chosen]

    def tests(self) -> None:
        """The tests marked gpu, from the installed vidscale (-P: not the tree's folder)."""
        files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
                       if "pytest.mark.gpu" in path.read_text())
        cap = min(self.args.tests_cap, self.left())
        done = run_capped([self.python, "-P", "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files],
                          cap, self.log)
        lines = done.output.strip().splitlines()
        summary = f"killed at its {cap:.0f} s cap" if done.killed else (lines[-1] if lines else "")
        self.run["tests"] = {"files": files, "rc": done.rc, "seconds": done.seconds, "summary": summary}
        self.save()
        self.say(f"tests marked gpu: {summary}")

    def job(self, entry: dict[str, Any]) -> None:
        name, left = entry["name"], self.left()
        estimate = estimate_s(entry, self.rate)
        reason = skip_reason(estimate, left, self.args.budget)
        if reason is not None:
            self.record(name, {"skipped": reason, "estimate_s": estimate})
            return
        cap = min(entry["cap_s"], left)
        part = self.scratch / f"{name}.json"
        done = run_capped(self.speed_cmd("--jobs", name, "--json", str(part)), cap, self.log)
        result = read_json(part)
        record = result.get("jobs", {}).get(name)
        if record is None:
            record = ({"killed": f"stopped at its {cap:.0f} s cap"} if done.killed else
                      {"error": f"speed.py exited {done.rc} without a result; see {LOG}"})
        builds = [model["build_s"] for model in result.get("models", {}).values()]
        record["process"] = {"seconds": done.seconds, "cap_s": cap, "rc": done.rc,
                             "model_build_s": sum(builds) if builds else None}
        record["estimate_s"] = estimate
        if self.rate is None:
            self.rate = measured_rate(record, done.seconds, name)
            if self.rate is not None:
                self.run["rate"] = self.rate
        self.record(name, record)

    def record(self, name: str, record: dict[str, Any]) -> None:
        self.run["jobs"][name] = record
        self.save()
        kind = outcome(record)
        if kind == "measured":
            figure = record.get("elapsed_s", record.get("compiled_s"))
            missed = record.get("missed")
            self.say(f"{name}: {figure:.2f} s, peak {record['peak_memory_gb']:.1f} GB"
                     + (f", missed {', '.join(missed)}" if missed else ""))
        else:
            self.say(f"{name}: {kind}: {record[kind]}")

    def profiles(self) -> None:
        """One profiled step of each job that missed a target (or of all, with --profile all)."""
        wanted = [entry for entry in self.plan() if wants_profile(entry, self.run["jobs"].get(entry["name"]),
                                                                  self.args.profile)]
        for entry in wanted[:MAX_PROFILES]:
            name, left = entry["name"], self.left()
            record = self.run["jobs"][name]
            estimate = record["process"]["seconds"]  # no more than the whole job: it stops one step in
            reason = skip_reason(estimate, left, self.args.budget)
            if reason is not None:
                record["profile"] = {"skipped": reason}
                self.save()
                continue
            cap = min(entry["cap_s"], left)
            part = self.scratch / f"{name}.profile.json"
            done = run_capped(self.speed_cmd("--jobs", name, "--profile-step", str(self.out), "--json", str(part)),
                              cap, self.log)
            got = read_json(part).get("jobs", {}).get(name, {})
            record["profile"] = got.get("profile") or (
                {"killed": f"stopped at its {cap:.0f} s cap"} if done.killed else
                {"error": got.get("error", f"speed.py exited {done.rc} without a profile; see {LOG}")})
            self.save()
            self.say(f"{name}: profile " + (record["profile"].get("file") or json.dumps(record["profile"])))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--reduced", action="store_true", help="speed.py's reduced sizes (the CPU rehearsal)")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                        help=f"seconds for the whole run from --started (default {DEFAULT_BUDGET_S:.0f})")
    parser.add_argument("--jobs", type=lambda text: text.split(","), default=None,
                        help="comma-separated subset of speed.py's jobs (default: all, in order of value)")
    parser.add_argument("--no-tests", dest="tests", action="store_false", help="skip the tests marked gpu")
    parser.add_argument("--tests-cap", type=float, default=TESTS_CAP_S, metavar="SECONDS")
    parser.add_argument("--profile", choices=["missed", "all", "none"], default="missed",
                        help="profile one step of the jobs that missed a target (default), of all, or none")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "out"),
                        help="where gpu_run.json, gpu_run.log and the profiles go (default $OUT, else out/)")
    parser.add_argument("--started", type=float, default=None, metavar="EPOCH",
                        help="when the budget's clock started (gpu_run.sh passes its own start; default now)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error("--budget must be a positive number of seconds")
    if args.started is None:
        args.started = time.time()
    return args


if __name__ == "__main__":
    sys.exit(Driver(parse_args()).main())
