"""Named steps of the gate where the crash-test harness kills the bot (SIGKILL), one at a time.

Inert unless the setting ``crash_at`` (``MERGE_BOT_CRASH_AT``) names a step: the harness starts the bot
with it, lets it die there, restarts it without it, and checks that nothing was lost or merged twice.
"""

from __future__ import annotations

import os
import signal

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
)


def reached(step: str, crash_at: str | None) -> None:
    """Kill this process, hard, when ``step`` is the one the harness asked for."""
    assert step in STEPS or step in CHAIN_STEPS, step
    if crash_at == step:
        os.kill(os.getpid(), signal.SIGKILL)
