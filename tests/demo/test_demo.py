"""``merge-bot demo --once``, as a user runs it: a fresh process, no settings, everything embedded. It must
end with the expected set merged and rejected, and leave nothing behind. How long it takes is
``bench/demo.py``'s output, not asserted here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXPECTED = {
    1: ("merged", "merged"),
    2: ("merged", "merged"),
    3: ("failed", "checks_failed"),  # green alone, red on top of #2: the semantic conflict, found by bisection
    4: ("failed", "conflict"),  # edits the lines #2 renamed
    5: ("merged", "merged"),  # flaky: red once, re-tested on the same commit, merged
    6: ("merged", "merged"),  # waited for #5
    **{n: ("merged", "merged") for n in range(7, 13)},
}


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path: PostgreSQL's socket path must fit in 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="mb-demo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_once_merges_the_expected_set(short_tmp: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env["TMPDIR"] = str(short_tmp)  # the demo's temporary directory lands here, so leftovers would show
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--once", "--port", "0", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    outcomes = {pull["number"]: (pull["outcome"], pull["reason"]) for pull in summary["pulls"]}
    assert outcomes == EXPECTED
    assert summary["ok"] is True
    assert summary["base_green"] is True and summary["untested_base_moves"] == []
    assert [pull["number"] for pull in summary["pulls"] if pull["retested"]] == [3, 5]  # red alone: tested again
    ci = summary["ci"]
    assert ci["bisections"] >= 1 and ci["retests"] >= 2
    assert ci["most_at_once"] >= 2  # a chain: several candidates under CI at once
    assert "a serial queue would have needed" in done.stderr
    assert summary["queue_page"].startswith("http://127.0.0.1:")
    assert "Queue page: http://127.0.0.1:" in done.stderr
    assert "as expected" in done.stderr
    assert not list(short_tmp.glob("merge-bot-demo-*")), "the demo left its temporary directory behind"
