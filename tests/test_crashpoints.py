"""The crash-test setting ``crash_at``: ``<step>`` or ``<step>@<n>``, and the process dying exactly there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.crashpoints import CHAIN_STEPS, STEPS, due, parse


@pytest.mark.parametrize("step", STEPS + CHAIN_STEPS)
def test_a_step_alone_is_its_first_time(step: str) -> None:
    assert parse(step) == (step, 1)
    assert parse(f"{step}@3") == (step, 3)


@pytest.mark.parametrize(
    ("crash_at", "message"),
    [
        ("attempt_made", "unknown crash step 'attempt_made'"),
        ("@2", "unknown crash step ''"),
        ("retry_opened@", "expected <step>@<n>"),
        ("retry_opened@0", "expected <step>@<n>"),
        ("retry_opened@-1", "expected <step>@<n>"),
        ("retry_opened@2@3", "expected <step>@<n>"),
    ],
)
def test_a_malformed_setting_says_what_is_wrong(crash_at: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(crash_at)


def test_due_only_at_that_step_and_that_time() -> None:
    assert due("base_pushed", "base_pushed", 1)
    assert not due("base_pushed", "base_pushed", 2)  # the first time only
    assert [n for n in range(1, 6) if due("attempt_created", "attempt_created@3", n)] == [3]
    assert not due("candidate_recorded", "attempt_created@1", 1)
    assert not due("attempt_created", None, 1)


def test_the_process_is_killed_the_nth_time_the_step_is_reached() -> None:
    script = (
        "import sys\n"
        "from bot import crashpoints\n"
        "for n in range(1, 5):\n"
        "    crashpoints.reached('candidate_recorded', 'attempt_created@2')\n"  # another step: not counted
        "    print(n, flush=True)\n"
        "    crashpoints.reached('attempt_created', 'attempt_created@2')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert done.stdout.split() == ["1", "2"]  # died at the second attempt_created, before printing 3
