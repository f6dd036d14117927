"""``bench/scale.py`` keeps working: run at a tiny size (three repositories), it stops by itself and prints its
table. The figures are its output, not asserted here (a benchmark is not a test), except that every pass it
reports made some forge call and the table has one row per size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_the_scale_benchmark_runs_at_a_tiny_size(pg_server_url: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "bench/scale.py", "--sizes", "3", "--idle", "1", "--changes", "1", "--json",
         "--database", pg_server_url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert [row["repos"] for row in rows] == [3]
    row = rows[0]
    assert row["prs"] == 30 and row["active"] == 3
    assert row["first"]["calls"] > 0 and row["idle"][0]["calls"] > 0 and row["changed"]["calls"] > 0
    assert row["peak_rss_mb"] > 0


def test_the_scale_benchmark_explains_itself() -> None:
    done = subprocess.run([sys.executable, "bench/scale.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0
    assert "forge calls" in done.stdout and "RSS" in done.stdout
