"""A train's recent record, read for the adaptive choice (:mod:`bot.queue.adaptive`). Takes the session it runs
in; commits nothing.

- Outcomes: the train's newest final entries that count — merged, or failed as the culprit (reason
  ``checks_failed`` or ``ci_timeout``) — newest ``finished_at`` first.
- Runs: the candidates of the train's newest ended attempts that had a CI run of their own (not a split part
  whose tree was the batch's, marked ``inherits``), one per candidate commit however often it was tested;
  for each, every check context that reported a final state (``success`` or red) in ``commit_statuses``, or
  that the candidate was found flaky on. The bot's own context never counts.

An attempt's failure was flaky on context ``c`` when its ``reason_detail`` says ``"outcome": "flaky"`` and
``"context": c``, and it is one of: a bisected batch whose parts all passed (reason ``bisected``), a candidate
that passed when tested again (reason ``retried``), or a red attempt that landed through a green one behind
it (state ``done``, ``reason_detail.optimistic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Attempt, CommitStatus, Entry, Train
from bot.queue.adaptive import CULPRIT_REASONS, HISTORY_WINDOW, History, Run, outcome_of
from bot.queue.checks import RED_STATES, is_own
from bot.queue.model import ACTIVE_ATTEMPT_STATES, AttemptState, EntryState, Reason

FLAKY_REASONS = frozenset({Reason.BISECTED.value, "retried"})  # attempts whose outcome may say flaky
FINAL_STATUS_STATES = frozenset({"success", *RED_STATES})


def flaky_context(state: str, reason: str | None, detail: Mapping[str, Any] | None) -> str | None:
    """The check context an ended attempt's failure was found flaky on, or None."""
    detail = detail or {}
    context = detail.get("context")
    if detail.get("outcome") != "flaky" or "inherits" in detail or not isinstance(context, str) or not context:
        return None
    if reason in FLAKY_REASONS or (state == AttemptState.DONE and detail.get("optimistic")):
        return context
    return None


async def train_history(
    session: AsyncSession, train_id: int, limit: int = HISTORY_WINDOW, *, own_context: str = "merge-bot"
) -> History:
    """The train's newest ``limit`` counted outcomes, and the runs of its newest ``limit`` candidates (each
    candidate commit once, however often it was tested)."""
    counted = or_(
        Entry.state == EntryState.MERGED.value,
        and_(Entry.state == EntryState.FAILED.value, Entry.reason.in_([reason.value for reason in CULPRIT_REASONS])),
    )
    entries = await session.execute(
        select(Entry.state, Entry.reason)
        .where(Entry.train_id == train_id, counted)
        .order_by(Entry.finished_at.desc().nulls_last(), Entry.id.desc())
        .limit(limit)
    )
    outcomes = tuple(outcome for state, reason in entries if (outcome := outcome_of(state, reason)) is not None)
    ended = (
        Attempt.train_id == train_id,
        Attempt.candidate_sha.is_not(None),
        Attempt.state.not_in([state.value for state in ACTIVE_ATTEMPT_STATES]),
        Attempt.reason_detail["inherits"].astext.is_(None),
    )
    newest = func.max(Attempt.id)
    candidates = await session.execute(
        select(Attempt.candidate_sha).where(*ended).group_by(Attempt.candidate_sha).order_by(newest.desc()).limit(limit)
    )
    flaky: dict[str, set[str]] = {sha: set() for sha in candidates.scalars() if sha}  # newest candidate first
    if not flaky:
        return History(outcomes)
    attempts = await session.execute(
        select(Attempt.candidate_sha, Attempt.state, Attempt.reason, Attempt.reason_detail).where(
            *ended, Attempt.candidate_sha.in_(list(flaky))
        )
    )
    for sha, state, reason, detail in attempts:  # the contexts each candidate was found flaky on
        if (context := flaky_context(state, reason, detail)) is not None:
            flaky[sha].add(context)
    reported: dict[str, set[str]] = {sha: set() for sha in flaky}
    statuses = await session.execute(
        select(CommitStatus.sha, CommitStatus.context)
        .join(Train, Train.repository_id == CommitStatus.repository_id)
        .where(
            Train.id == train_id,
            CommitStatus.sha.in_(list(flaky)),
            CommitStatus.state.in_(sorted(FINAL_STATUS_STATES)),
        )
    )
    for sha, context in statuses:
        reported[sha].add(context)
    runs = tuple(
        Run(context, context in flaky[sha])
        for sha in flaky
        for context in sorted(reported[sha] | flaky[sha])
        if not is_own(context, own_context)
    )
    return History(outcomes, runs)
