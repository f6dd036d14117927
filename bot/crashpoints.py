"""Named steps of the gate where the crash-test harness kills the bot (SIGKILL), one at a time.

Inert unless the setting ``crash_at`` (``MERGE_BOT_CRASH_AT``) names a step: the harness starts the bot
with it, lets it die there, restarts it without it, and checks that nothing was lost or merged twice.
``<step>`` kills the process the first time a gate reaches the step, ``<step>@<n>`` the n-th time (counted
in this process, over all its trains): ``attempt_created@2`` dies in the second attempt it opens, which in a
chain is the one built on the first one's candidate.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

STEPS = (
    "attempt_created",  # the attempt row is committed; nothing built yet
    "candidate_recorded",  # the candidate SHA and ref are recorded; not pushed yet
    "candidate_pushed",  # the candidate is on the forge; the database does not say "testing" yet
    "testing_recorded",  # waiting for CI
    "merge_intent",  # "merging" is recorded; the base has not moved
    "base_pushed",  # the base moved to the candidate (or the merge call returned); no bookkeeping yet
    "marked_merged",  # the PRs are marked merged on the forge; the database does not know yet
    "merge_recorded",  # the entries are merged in the database; users not told yet
)
# Steps only a batch or a chain reaches (the serial crash matrix never gets there).
CHAIN_STEPS = (
    "chain_replaced",  # a chain's tail (or a red batch being bisected) is ended; its new attempts not made yet
    "retry_opened",  # a red single is being re-tested: the new attempt is recorded, its ref not pushed yet
    "rerun_requested",  # Gitea Actions re-runs a red single's failed runs; the re-test is not recorded yet
)

_times: Counter[str] = Counter()  # how often this process reached each step


def parse(crash_at: str) -> tuple[str, int]:
    """``<step>`` or ``<step>@<n>`` → (step, n); a ValueError saying what is wrong otherwise."""
    step, at, count = crash_at.strip().partition("@")
    if step not in STEPS and step not in CHAIN_STEPS:
        raise ValueError(f"unknown crash step {step!r}: expected one of {', '.join(STEPS + CHAIN_STEPS)}")
    if not at:
        return step, 1
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"expected <step>@<n> with n a whole number from 1, got {crash_at!r}")
    return step, int(count)


def due(step: str, crash_at: str | None, times: int) -> bool:
    """Whether reaching ``step`` for the ``times``-th time is where ``crash_at`` says to die."""
    return crash_at is not None and parse(crash_at) == (step, times)


def reached(step: str, crash_at: str | None) -> None:
    """Kill this process, hard, when this is the step (and the time it is reached) the harness asked for."""
    assert step in STEPS or step in CHAIN_STEPS, step
    _times[step] += 1
    if due(step, crash_at, _times[step]):
        os.kill(os.getpid(), signal.SIGKILL)
