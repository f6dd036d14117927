"""Demo wall time: ``merge-bot demo --once --json`` run as a user runs it, K times, from process start to exit.

What it measures
    The whole demo in a fresh process each run (embedded PostgreSQL cold start, the simulator, twelve PRs, CI
    runs, the bot draining the queue): wall time per run, and in the same invocation a baseline, the
    interpreter starting and importing the bot (``python -c "import bot.demo"``), so the figure can be read
    against what merely starting costs on this machine. Each run must end with the demo's own verdict
    ``ok: true`` (the expected set merged and rejected); a run that does not is reported and the exit status
    is 1.

Run it (from the repository root, with the venv active)::

    python bench/demo.py             # 3 runs
    python bench/demo.py --runs 5 --json

It stops by itself: each run has a deadline (``--timeout``, 180 s) after which the demo is killed. Only
127.0.0.1 is contacted (the demo binds everything there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Run:
    seconds: float
    ok: bool
    merged: int
    failed: int


def _env(tmp: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env["TMPDIR"] = tmp  # short path: PostgreSQL's socket path must fit in 107 bytes
    return env


def run_demo(timeout: float) -> Run:
    tmp = tempfile.mkdtemp(prefix="mb-bench-demo-")
    try:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bot", "demo", "--once", "--port", "0", "--json"],
                env=_env(tmp),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Run(time.monotonic() - started, False, 0, 0)
        took = time.monotonic() - started
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-2000:])
            return Run(took, False, 0, 0)
        summary = json.loads(done.stdout)
        outcomes = [pull["outcome"] for pull in summary["pulls"]]
        return Run(took, bool(summary["ok"]), outcomes.count("merged"), outcomes.count("failed"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def startup_seconds() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import bot.demo"], check=True, timeout=60)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds before a run is killed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    baseline = statistics.median(startup_seconds() for _ in range(3))
    runs = [run_demo(args.timeout) for _ in range(max(1, args.runs))]
    times = [run.seconds for run in runs]
    report = {
        "runs": [asdict(run) for run in runs],
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "startup_baseline_s": baseline,
        "median_over_baseline": statistics.median(times) / baseline,
        "load_average": os.getloadavg()[0],
        "all_ok": all(run.ok for run in runs),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for i, run in enumerate(runs, 1):
            print(f"run {i}: {run.seconds:6.1f} s  ok={run.ok}  merged={run.merged} failed={run.failed}")
        print(
            f"median {report['median_s']:.1f} s (min {report['min_s']:.1f}, max {report['max_s']:.1f}); "
            f"starting the interpreter and importing the bot: {baseline:.2f} s "
            f"(demo = {report['median_over_baseline']:.0f}x that); load average {report['load_average']:.1f}"
        )
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
