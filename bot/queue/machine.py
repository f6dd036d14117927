"""The queue's state machine for one train, pure: a snapshot in, a decision out.

The gate calls :func:`decide`, carries the actions out (each idempotent and fenced), takes a fresh
snapshot and asks again, until the decision is to wait. Nothing here does I/O or reads a clock: ``now``
and every fact about the forge come in the snapshot.

Rules, in the order they apply:

1. An attempt being merged finishes its bookkeeping once its candidate is in the base, retries the
   fast-forward while the base is still where the candidate was built and its checks are still green (a
   check that turned red fails it), and is rebuilt if the base moved
   elsewhere (the forge refused the fast-forward, so nothing untested landed).
2. An entry someone asked to cancel, or whose PR was closed, merged outside the queue, or got a head
   other than the approved one (the bot's own rebase excepted) is cancelled; an attempt carrying it is
   abandoned and its other entries go back to the queue without penalty.
3. An attempt that lost its candidate mid-build is rebuilt.
4. An attempt under test is rebuilt when the base moved; fails on the first red required check (naming it);
   fails when the deadline passes with checks still pending; goes to merge when all are green.
5. A waiting entry whose dependencies are all merged joins the queue.
6. With no attempt running, the head of the queue — highest priority, then oldest — starts one.

Before all of these, an entry marked testing that no active attempt carries (a crash between two steps)
goes back in line.

A build that stops (:func:`after_build`) fails the entry it stopped at — a conflict with what comes before
it, or nothing left to add — and sends the attempt's other entries back in line.

The snapshot carries the train's active attempts in chain order, and every action names the attempt it is
for. The rules above work on the first attempt of the chain (the one built on the base); today's policy
starts an attempt only when none is active, so it is the only one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.queue.checks import Verdict, evaluate
from bot.queue.model import (
    AttemptState,
    AttemptView,
    BuildFailure,
    EntryConflicts,
    EntryState,
    EntryView,
    Reason,
    Strategy,
    TrainSnapshot,
)


@dataclass(frozen=True, slots=True)
class CancelEntry:
    entry_id: int
    reason: Reason
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """A new attempt for ``entry_ids`` (in this order) on ``base_sha``: the base tip, or the candidate of
    attempt ``parent_id``."""

    entry_ids: tuple[int, ...]
    base_sha: str
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class BuildCandidate:
    attempt_id: int


@dataclass(frozen=True, slots=True)
class AbandonAttempt:
    """Stop the attempt; ``requeue`` entries go back to the queue as they were."""

    attempt_id: int
    reason: Reason
    requeue: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FailAttempt:
    """The attempt failed; ``entry_ids`` fail with the same reason, ``requeue`` (its other entries, which
    were not at fault) go back to the queue as they were."""

    attempt_id: int
    entry_ids: tuple[int, ...]
    reason: Reason
    detail: Mapping[str, Any] = field(default_factory=dict)
    requeue: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MergeAttempt:
    """Move the base from ``base_sha`` to ``candidate_sha`` by a fast-forward only."""

    attempt_id: int
    base_sha: str
    candidate_sha: str


@dataclass(frozen=True, slots=True)
class FinishMerged:
    """The candidate is in the base: mark the PRs merged, the entries merged, the attempt done."""

    attempt_id: int
    entry_ids: tuple[int, ...]
    candidate_sha: str


@dataclass(frozen=True, slots=True)
class PromoteEntry:
    """A waiting entry's dependencies are merged: it joins the queue."""

    entry_id: int


@dataclass(frozen=True, slots=True)
class RequeueEntry:
    """An entry marked testing that no active attempt carries (a crash between two steps): back in line."""

    entry_id: int


@dataclass(frozen=True, slots=True)
class WaitUntil:
    """Nothing to do until an event arrives, or until ``at`` (a deadline) passes."""

    at: datetime | None = None


Action = (
    CancelEntry
    | StartAttempt
    | BuildCandidate
    | AbandonAttempt
    | FailAttempt
    | MergeAttempt
    | FinishMerged
    | PromoteEntry
    | RequeueEntry
    | WaitUntil
)


@dataclass(frozen=True, slots=True)
class Decision:
    actions: tuple[Action, ...]
    reason: Reason
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def waits(self) -> bool:
        return all(isinstance(action, WaitUntil) for action in self.actions)


def queue_order(entries: Iterable[EntryView]) -> list[EntryView]:
    """Queued entries in the order they will be tested: priority (higher first), then time queued."""
    queued = [entry for entry in entries if entry.state is EntryState.QUEUED]
    return sorted(queued, key=lambda entry: (-entry.priority, entry.queued_at, entry.id))


def decide(snapshot: TrainSnapshot) -> Decision:
    """The next step for a train."""
    carried = {entry_id for attempt in snapshot.attempts for entry_id in attempt.entry_ids}
    orphans = [
        RequeueEntry(entry.id)
        for entry in snapshot.entries
        if entry.state is EntryState.TESTING and entry.id not in carried
    ]
    if orphans:
        return Decision(tuple(orphans), Reason.ORPHANED)
    if snapshot.attempts:
        decision = _attempt_step(snapshot, snapshot.attempts[0])
        if decision is not None:
            return decision
    cancels = [cancel for entry in snapshot.entries if (cancel := _stale(entry, None)) is not None]
    if cancels:
        return Decision(tuple(cancels), cancels[0].reason)
    promotions = [
        PromoteEntry(entry.id) for entry in snapshot.entries if entry.state is EntryState.WAITING and entry.ready
    ]
    if promotions:
        return Decision(tuple(promotions), Reason.DEPENDENCIES_MET)
    if not snapshot.attempts:
        line = queue_order(snapshot.entries)
        if line:
            return Decision((StartAttempt((line[0].id,), snapshot.base_tip),), Reason.STARTED)
    return Decision((WaitUntil(),), Reason.IDLE)


def after_build(attempt: AttemptView, failure: BuildFailure) -> Decision:
    """The attempt's candidate could not be built: the entry it stopped at fails (naming the conflicting
    paths), and the attempt's other entries go back to the queue without penalty."""
    others = tuple(entry_id for entry_id in attempt.entry_ids if entry_id != failure.entry_id)
    if isinstance(failure, EntryConflicts):
        reason, detail = Reason.CONFLICT, {"paths": list(failure.paths)}
    else:
        reason, detail = Reason.ALREADY_IN_BASE, {}
    return Decision((FailAttempt(attempt.id, (failure.entry_id,), reason, detail, others),), reason, detail)


def _attempt_step(snapshot: TrainSnapshot, attempt: AttemptView) -> Decision | None:
    carried = [entry for entry in snapshot.entries if entry.id in attempt.entry_ids]
    if attempt.state is AttemptState.MERGING and attempt.candidate_sha is not None:
        merging = _merging_step(snapshot, attempt)
        if merging is not None:
            return merging
    stale = [cancel for entry in carried if (cancel := _stale(entry, attempt)) is not None]
    if stale:
        keep = tuple(entry_id for entry_id in attempt.entry_ids if entry_id not in {c.entry_id for c in stale})
        return Decision((AbandonAttempt(attempt.id, stale[0].reason, keep), *stale), stale[0].reason)
    if attempt.state is AttemptState.BUILDING or attempt.candidate_sha is None:
        return Decision((BuildCandidate(attempt.id),), Reason.RESUMED_BUILD)
    if snapshot.base_tip != attempt.base_sha:
        return Decision(
            (AbandonAttempt(attempt.id, Reason.BASE_MOVED, attempt.entry_ids),),
            Reason.BASE_MOVED,
            {"built_on": attempt.base_sha, "base_now": snapshot.base_tip},
        )
    urgent = _urgent(snapshot, carried)
    if urgent is not None:
        return Decision(
            (AbandonAttempt(attempt.id, Reason.PREEMPTED, attempt.entry_ids),),
            Reason.PREEMPTED,
            {"by": urgent.id, "priority": urgent.priority},
        )
    return _checks_step(snapshot, attempt)


def _urgent(snapshot: TrainSnapshot, carried: list[EntryView]) -> EntryView | None:
    """A queued entry urgent enough to abort the running test, or None (a running attempt normally finishes)."""
    if snapshot.urgent_priority is None:
        return None
    line = queue_order(snapshot.entries)
    if not line or line[0].priority < snapshot.urgent_priority:
        return None
    if line[0].priority <= max((entry.priority for entry in carried), default=0):
        return None
    return line[0]


def _merging_step(snapshot: TrainSnapshot, attempt: AttemptView) -> Decision | None:
    assert attempt.candidate_sha is not None
    if attempt.landed or snapshot.base_tip == attempt.candidate_sha:
        return Decision((FinishMerged(attempt.id, attempt.entry_ids, attempt.candidate_sha),), Reason.MERGED)
    if snapshot.base_tip == attempt.base_sha:
        if any(_stale(entry, attempt) for entry in snapshot.entries if entry.id in attempt.entry_ids):
            return None  # rule 2 abandons it before anything is pushed
        # The push is tried again only while the candidate is still green: a check that turned red (or is
        # running again) since the decision stops it (docs/faults.md #12: the latest status per context wins).
        checked = _checks_step(snapshot, attempt)
        if checked.reason is Reason.CHECKS_PASSED:
            return Decision(checked.actions, Reason.MERGE_RETRY)
        return checked
    return Decision(
        (AbandonAttempt(attempt.id, Reason.BASE_MOVED, attempt.entry_ids),),
        Reason.BASE_MOVED,
        {"built_on": attempt.base_sha, "base_now": snapshot.base_tip},
    )


def _checks_step(snapshot: TrainSnapshot, attempt: AttemptView) -> Decision:
    assert attempt.candidate_sha is not None
    result = evaluate(snapshot.required, attempt.statuses, snapshot.own_context)
    if result.verdict is Verdict.FAILURE:
        assert result.failed is not None
        detail = {
            "context": result.failed.context,
            "state": result.failed.state,
            "target_url": result.failed.target_url,
            "description": result.failed.description,
            "sha": attempt.candidate_sha,
        }
        return Decision(
            (FailAttempt(attempt.id, attempt.entry_ids, Reason.CHECKS_FAILED, detail),),
            Reason.CHECKS_FAILED,
            detail,
        )
    if result.verdict is Verdict.SUCCESS:
        return Decision((MergeAttempt(attempt.id, attempt.base_sha, attempt.candidate_sha),), Reason.CHECKS_PASSED)
    if attempt.deadline_at is not None and snapshot.now >= attempt.deadline_at:
        timed_out: dict[str, Any] = {
            "missing": list(result.missing),
            "pending": list(result.pending),
            "sha": attempt.candidate_sha,
        }
        return Decision(
            (FailAttempt(attempt.id, attempt.entry_ids, Reason.CI_TIMEOUT, timed_out),),
            Reason.CI_TIMEOUT,
            timed_out,
        )
    return Decision(
        (WaitUntil(attempt.deadline_at),),
        Reason.CHECKS_PENDING,
        {"missing": list(result.missing), "pending": list(result.pending)},
    )


def _stale(entry: EntryView, attempt: AttemptView | None) -> CancelEntry | None:
    """A cancellation when the entry's PR no longer is what was approved, else None."""
    if entry.state not in (EntryState.WAITING, EntryState.QUEUED, EntryState.TESTING):
        return None
    pull = entry.pull
    if entry.cancel_requested_by is not None:
        return CancelEntry(entry.id, Reason.CANCELLED_BY_USER, {"by": entry.cancel_requested_by})
    if pull.merged:
        return CancelEntry(entry.id, Reason.PR_MERGED_OUTSIDE, {"merge_commit_sha": pull.merge_commit_sha})
    if not pull.open:
        return CancelEntry(entry.id, Reason.PR_CLOSED)
    expected = {entry.approved_sha}
    if (
        attempt is not None
        and attempt.strategy is Strategy.PR_BRANCH
        and attempt.candidate_sha is not None
        and entry.id in attempt.entry_ids
    ):
        expected.add(attempt.candidate_sha)  # the bot's own rebase of the PR branch
    if pull.head_sha not in expected:
        return CancelEntry(entry.id, Reason.HEAD_CHANGED, {"approved": entry.approved_sha, "head": pull.head_sha})
    return None
