"""The queue's state machine for one train, pure: a snapshot in, a decision out.

The gate calls :func:`decide`, carries the actions out (each idempotent and fenced), takes a fresh
snapshot and asks again, until the decision is to wait. Nothing here does I/O or reads a clock: ``now``
and every fact about the forge come in the snapshot. How batches form is the snapshot's
:class:`~bot.queue.policy.QueuePolicy`.

The train's active attempts form one chain: the first is built on the base tip, each next one on the
candidate of the one before (a red batch's parts under bisection are such a chain). Rules, in the order
they apply:

1. A bisected batch whose entries are all final is settled: flaky when every part landed.
2. The first attempt, being merged, finishes its bookkeeping once its candidate is in the base; while the
   base is still where it was built, the fast-forward is retried as long as its checks are still green (with
   the optimistic policy: as long as a candidate behind it is, as when the landing was first decided).
3. An entry someone asked to cancel, or whose PR was closed, merged outside the queue, or got a head other
   than the approved one (the bot's own rebase excepted) is cancelled; the attempt carrying it and those
   behind it are rebuilt without it, those ahead are untouched.
4. An attempt that lost its candidate mid-build is rebuilt (before anything behind it is judged by rule 3);
   one whose parent was rebuilt (so it no longer sits on the parent's candidate) is rebuilt on it.
5. When the base moved outside the chain (a human push), the whole chain is rebuilt on the new tip,
   without penalty.
6. An urgent entry in line aborts the chain (its entries go back in line, behind it).
7. Checks, along the chain: the longest green prefix lands, by one fast-forward to its deepest candidate
   (with the optimistic policy, the deepest green candidate lands everything ahead of it, pending or red, and
   a red first attempt waits while one behind it is still under test). Only the first attempt's failure is
   acted on (a red attempt behind a pending one waits: an innocent entry is never rejected): a batch of one
   is re-tested on the same candidate while it has ``flaky_retries`` left (what is built on it stays; never a
   PR tested on its own branch, which holds the candidate already: nothing would be pushed, CI would not run
   again), then fails, naming the check; a larger batch is bisected — its first half is
   tested on its base, the second on top of the first, priorities kept (the second half on top of the first
   is the very tree that failed: the gate marks it known red instead of running CI on it again, unless it is a
   single PR, which is always tested itself). The first half is cut into parts, each on the one before, as
   many as the CI budget allows (``QueuePolicy.bisect_width``, :func:`~bot.queue.policy.bisect_parts`): PR by
   PR for a batch of up to twice that width, so one cycle finds a culprit in it. What was behind a red
   attempt carries its red changes and can tell nothing: it ends (from the chain's end), its entries back in
   line. A deadline passed with checks pending counts as a failure.
8. While the chain waits for checks: queued entries whose PR changed are cancelled, and a waiting entry whose
   dependencies are all merged joins the queue.
9. The head of the line starts an attempt of up to ``batch_max`` entries (:func:`~bot.queue.policy.next_batch`),
   after waiting up to ``batch_wait_seconds`` for a short batch: on the base tip when no attempt is active, else
   on the candidate at the chain's end (a speculative chain), as long as the chain is shorter than the window
   (``QueuePolicy.depth``) and nothing in it is red or still building.

Before all of these, an entry marked testing that no active attempt carries (a crash between two steps)
goes back in line.

Holds (``TrainSnapshot.holds``, each in force until its ``until``): a frozen train never lands — a green
candidate waits (it lands once the freeze lifts, if still green on an unmoved base), while the rules above go on,
so PRs are still queued and tested; a paused train never starts an attempt (rule 9), and a pause with
``cancel_running`` first abandons the attempts not yet being merged, their entries back in line. A rebuild or a
bisection of attempts already running goes on under a pause: it is the same work, not new work.

Rebuilding a chain sends plain attempts' entries back in line, where they line up again by priority and
age and may share a batch with newcomers; attempts that are parts of a bisection keep their grouping
(:class:`ReplaceChain`), so a bisection goes on where it was.

A build that stops (:func:`after_build`) fails the entry it stopped at — a conflict with what comes before
it, or nothing left to add — and sends the attempt's other entries back in line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.queue.checks import Verdict, evaluate
from bot.queue.model import (
    FINAL_ENTRY_STATES,
    AttemptState,
    AttemptView,
    BisectionOutcome,
    BisectionView,
    BuildFailure,
    EntryBadConfig,
    EntryConflicts,
    EntryState,
    EntryView,
    HoldKind,
    Reason,
    Strategy,
    TrainSnapshot,
)
from bot.queue.policy import Batch, bisect_parts, next_batch


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
    """Move the base from ``base_sha`` to ``candidate_sha`` (attempt ``attempt_id``'s) by a fast-forward only.
    ``through``: the attempts ahead of it in the chain that land with it in the same push — green, or, with
    the optimistic policy, still pending or red (``optimistic``: those, each with the context it was red on,
    or "" while pending: what they carry was tested as part of this green candidate)."""

    attempt_id: int
    base_sha: str
    candidate_sha: str
    through: tuple[int, ...] = ()
    optimistic: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """The attempt's single PR is red alone: test the very same candidate again on a fresh ref (a re-test of a
    possibly flaky check), counting only statuses posted after it; ``detail``: the failure being re-tested.
    What is built on the candidate stays: it is built on the same commit."""

    attempt_id: int
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Group:
    """The entries of one attempt to be, in order; ``split_from``: the red batch it is a part of."""

    entry_ids: tuple[int, ...]
    split_from: int | None = None


@dataclass(frozen=True, slots=True)
class ReplaceChain:
    """End ``attempt_ids`` (a tail of the chain) and build ``groups`` in their place, in order: the first on
    ``base_sha`` (the candidate of attempt ``parent_id``, or the base tip when None), each next one on the one
    before. The groups' entries stay under test. ``bisected``: the attempt among them that failed and is
    being split (it ends failed, with ``detail``); the others end abandoned for ``reason``."""

    attempt_ids: tuple[int, ...]
    base_sha: str
    parent_id: int | None
    groups: tuple[Group, ...]
    reason: Reason
    bisected: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SettleBisection:
    """Every entry of the bisected batch (the failed attempt ``attempt_id``) is final: record the outcome
    (flaky: the batch failed on ``context`` yet every part of it passed)."""

    attempt_id: int
    outcome: BisectionOutcome
    context: str = ""


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
    | ReplaceChain
    | SettleBisection
    | RetryAttempt
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
    settled = [settle for bisection in snapshot.bisections if (settle := _settled(bisection)) is not None]
    if settled:
        return Decision(tuple(settled), Reason.FLAKY if _any_flaky(settled) else Reason.BISECTED)
    pause = snapshot.held(HoldKind.PAUSE)
    if pause is not None and pause.cancel_running:
        running = [a for a in snapshot.attempts if a.state is not AttemptState.MERGING]  # a landing one finishes
        running.reverse()  # from the chain's end: a crash between two of them leaves one chain
        if running:
            ended = tuple(AbandonAttempt(a.id, Reason.PAUSED, a.entry_ids) for a in running)
            return Decision(ended, Reason.PAUSED, _hold_detail(snapshot, HoldKind.PAUSE))
    pending: Decision | None = None
    if snapshot.attempts:
        pending = _unless_frozen(snapshot, _chain_step(snapshot, snapshot.attempts))
        if not pending.waits:
            return pending
    cancels = [  # the chain's own entries were judged by the chain step, against their attempts
        cancel for entry in snapshot.entries if entry.id not in carried and (cancel := _stale(entry, None)) is not None
    ]
    if cancels:
        return Decision(tuple(cancels), cancels[0].reason)
    promotions = [
        PromoteEntry(entry.id) for entry in snapshot.entries if entry.state is EntryState.WAITING and entry.ready
    ]
    if promotions:
        return Decision(tuple(promotions), Reason.DEPENDENCIES_MET)
    start = _next_attempt(snapshot)
    if start is None and pause is not None and queue_order(snapshot.entries):
        at = _earliest([*_wait_at(pending), *_lifts(snapshot, HoldKind.PAUSE)])
        return Decision((WaitUntil(at),), Reason.PAUSED, _hold_detail(snapshot, HoldKind.PAUSE))
    if start is None:
        return pending or Decision((WaitUntil(),), Reason.IDLE)
    batch, base_sha, parent_id = start
    if batch.wait_until is not None:
        at = min(batch.wait_until, *(_wait_at(pending) or [batch.wait_until]))
        return Decision((WaitUntil(at),), Reason.BATCH_WAIT, {"entries": list(batch.entry_ids)})
    return Decision((StartAttempt(batch.entry_ids, base_sha, parent_id),), Reason.STARTED)


def _unless_frozen(snapshot: TrainSnapshot, decision: Decision) -> Decision:
    """The chain's step, or, when it would land something on a frozen train, a wait for the freeze to lift."""
    landing = [action.attempt_id for action in decision.actions if isinstance(action, MergeAttempt)]
    if not landing or snapshot.held(HoldKind.FREEZE) is None:
        return decision
    detail = {**_hold_detail(snapshot, HoldKind.FREEZE), "green": landing}
    return Decision((WaitUntil(_earliest(_lifts(snapshot, HoldKind.FREEZE))),), Reason.FROZEN, detail)


def _lifts(snapshot: TrainSnapshot, kind: HoldKind) -> list[datetime]:
    """When the holds of that kind in force now lift by themselves."""
    return [h.until for h in snapshot.holds if h.kind is kind and h.active(snapshot.now) and h.until is not None]


def _earliest(times: list[datetime]) -> datetime | None:
    return min(times) if times else None


def _hold_detail(snapshot: TrainSnapshot, kind: HoldKind) -> dict[str, Any]:
    hold = snapshot.held(kind)
    assert hold is not None
    until = hold.until.isoformat() if hold.until is not None else None
    return {"reason": hold.reason, "by": hold.by, "scope": hold.scope, "until": until}


def _wait_at(decision: Decision | None) -> list[datetime]:
    if decision is None:
        return []
    return [action.at for action in decision.actions if isinstance(action, WaitUntil) and action.at is not None]


def _landed_prefix(snapshot: TrainSnapshot, chain: tuple[AttemptView, ...]) -> list[AttemptView]:
    """The attempts at the head of the chain being merged whose candidates are in the base now."""
    landed: list[AttemptView] = []
    for attempt in chain:
        in_base = attempt.landed or snapshot.base_tip == attempt.candidate_sha
        if attempt.state is not AttemptState.MERGING or attempt.candidate_sha is None or not in_base:
            break
        landed.append(attempt)
    return landed


def _next_attempt(snapshot: TrainSnapshot, occupied: int | None = None) -> tuple[Batch, str, int | None] | None:
    """The batch the next attempt carries and where it is built: on the base tip when the chain is empty,
    else on the candidate at the chain's end — while the chain is shorter than the window allows, and only
    on a candidate that is built and not red (what is built on a red one would carry its red changes).
    ``occupied``: how many of the chain's attempts count against the window (default: all of them)."""
    chain = snapshot.attempts
    if snapshot.held(HoldKind.PAUSE) is not None:
        return None  # a paused train starts nothing new
    if chain:
        last = chain[-1]
        taken = len(chain) if occupied is None else occupied
        if taken >= snapshot.policy.depth(snapshot.window) or last.candidate_sha is None:
            return None
        if last.state is AttemptState.BUILDING or any(attempt.strategy is Strategy.PR_BRANCH for attempt in chain):
            return None
        if any(_red(snapshot, attempt) for attempt in chain):
            return None
    batch = next_batch(queue_order(snapshot.entries), snapshot.policy, snapshot.now)
    if batch is None:
        return None
    if not chain:
        return batch, snapshot.base_tip, None
    last = chain[-1]
    assert last.candidate_sha is not None
    return batch, last.candidate_sha, last.id


def _red(snapshot: TrainSnapshot, attempt: AttemptView) -> bool:
    if attempt.known_red is not None:
        return True
    return evaluate(snapshot.required, attempt.statuses, snapshot.own_context).verdict is Verdict.FAILURE


def after_build(attempt: AttemptView, failure: BuildFailure) -> Decision:
    """The attempt's candidate could not be built: the entry it stopped at fails (naming the conflicting
    paths), and the attempt's other entries go back to the queue without penalty."""
    others = tuple(entry_id for entry_id in attempt.entry_ids if entry_id != failure.entry_id)
    detail: dict[str, Any]
    if isinstance(failure, EntryConflicts):
        reason, detail = Reason.CONFLICT, {"paths": list(failure.paths)}
    elif isinstance(failure, EntryBadConfig):
        reason, detail = Reason.BAD_CONFIG, {"path": failure.path, "problem": failure.problem}
    else:
        reason, detail = Reason.ALREADY_IN_BASE, {}
    return Decision((FailAttempt(attempt.id, (failure.entry_id,), reason, detail, others),), reason, detail)


def _settled(bisection: BisectionView) -> SettleBisection | None:
    states = [state for _, state in bisection.entries]
    if not states or any(state not in FINAL_ENTRY_STATES for state in states):
        return None
    if all(state is EntryState.MERGED for state in states):
        outcome = BisectionOutcome.FLAKY
    elif any(state is EntryState.FAILED for state in states):
        outcome = BisectionOutcome.CULPRIT
    else:
        outcome = BisectionOutcome.INCONCLUSIVE
    return SettleBisection(bisection.attempt_id, outcome, bisection.context)


def _any_flaky(settled: list[SettleBisection]) -> bool:
    return any(settle.outcome is BisectionOutcome.FLAKY for settle in settled)


def _chain_step(snapshot: TrainSnapshot, chain: tuple[AttemptView, ...]) -> Decision:
    first = chain[0]
    landed = _landed_prefix(snapshot, chain)
    if landed:
        finish = tuple(FinishMerged(a.id, a.entry_ids, a.candidate_sha or "") for a in landed)
        if len(landed) == len(chain) and snapshot.base_tip == landed[-1].candidate_sha:
            # The next candidate goes under CI before the bookkeeping of the last one (marking each PR merged):
            # built on the base tip, which is the landed candidate (so on that attempt, as its parent).
            start = _next_attempt(snapshot, occupied=0)
            if start is not None and start[0].wait_until is None:
                batch, base_sha, parent_id = start
                return Decision((StartAttempt(batch.entry_ids, base_sha, parent_id), *finish), Reason.MERGED)
        return Decision(finish, Reason.MERGED)
    for index, attempt in enumerate(chain):
        if index and chain[index - 1].candidate_sha is None:
            # What is behind an attempt without a candidate yet (a re-test whose build was cut short) is judged
            # once that one is built (rule 4): rebuilt now, it could only go on the base tip, off the chain.
            break
        stale = [
            cancel
            for entry in snapshot.entries
            if entry.id in attempt.entry_ids and (cancel := _stale(entry, attempt)) is not None
        ]
        if stale:
            gone = {cancel.entry_id for cancel in stale}
            keep = Group(tuple(e for e in attempt.entry_ids if e not in gone), attempt.split_from)
            rebuilt = _rebuild(snapshot, chain, index, [keep], stale[0].reason)
            return Decision((*rebuilt, *stale), stale[0].reason)
    for index, attempt in enumerate(chain):
        if attempt.state is AttemptState.BUILDING or attempt.candidate_sha is None:
            return Decision((BuildCandidate(attempt.id),), Reason.RESUMED_BUILD)
        parent = chain[index - 1] if index else None
        if parent is not None and attempt.base_sha != parent.candidate_sha:
            rebuilt = _rebuild(snapshot, chain, index, [], Reason.CHAIN_BROKEN)
            return Decision(rebuilt, Reason.CHAIN_BROKEN, {"attempt": attempt.id})
    if snapshot.base_tip != first.base_sha and not first.landed:
        detail = {"built_on": first.base_sha, "base_now": snapshot.base_tip}
        return Decision(_rebuild(snapshot, chain, 0, [], Reason.BASE_MOVED), Reason.BASE_MOVED, detail)
    if first.state is not AttemptState.MERGING:
        carried = [entry for entry in snapshot.entries if any(entry.id in a.entry_ids for a in chain)]
        urgent = _urgent(snapshot, carried)
        if urgent is not None:
            aborted = tuple(AbandonAttempt(a.id, Reason.PREEMPTED, a.entry_ids) for a in chain)
            return Decision(aborted, Reason.PREEMPTED, {"by": urgent.id, "priority": urgent.priority})
    return _checks_step(snapshot, chain)


def _rebuild(
    snapshot: TrainSnapshot, chain: tuple[AttemptView, ...], index: int, first: list[Group], reason: Reason
) -> tuple[AbandonAttempt | ReplaceChain, ...]:
    """End ``chain[index:]`` and build it again: ``first`` (or, when empty, ``chain[index]``'s entries)
    then what was behind it, on what is ahead of it. Plain attempts' entries go back in line; a bisection's
    parts are rebuilt as they were grouped."""
    tail = chain[index:]
    groups = [g for g in first if g.entry_ids] if first else [Group(tail[0].entry_ids, tail[0].split_from)]
    groups += [Group(a.entry_ids, a.split_from) for a in tail[1:]]
    if index == 0 and all(group.split_from is None for group in groups):
        kept = {entry_id for group in groups for entry_id in group.entry_ids}
        return tuple(AbandonAttempt(a.id, reason, tuple(e for e in a.entry_ids if e in kept)) for a in tail)
    parent = chain[index - 1] if index else None
    base = parent.candidate_sha if parent is not None and parent.candidate_sha else snapshot.base_tip
    return (ReplaceChain(tuple(a.id for a in tail), base, parent.id if parent else None, tuple(groups), reason),)


def _urgent(snapshot: TrainSnapshot, carried: list[EntryView]) -> EntryView | None:
    """A queued entry urgent enough to abort the running test, or None (a running attempt normally finishes)."""
    urgent_priority = snapshot.policy.urgent_priority
    if urgent_priority is None:
        return None
    line = queue_order(snapshot.entries)
    if not line or line[0].priority < urgent_priority:
        return None
    if line[0].priority <= max((entry.priority for entry in carried), default=0):
        return None
    return line[0]


def _checks_step(snapshot: TrainSnapshot, chain: tuple[AttemptView, ...]) -> Decision:
    """Land the longest green prefix of the chain; act on the first attempt's failure; else wait."""
    first = chain[0]
    results = [evaluate(snapshot.required, attempt.statuses, snapshot.own_context) for attempt in chain]
    green = 0
    while green < len(chain) and results[green].verdict is Verdict.SUCCESS and chain[green].known_red is None:
        green += 1
    optimistic: dict[int, str] = {}
    if snapshot.policy.optimistic:
        # The deepest green candidate lands what is ahead of it too, pending or red: it was tested inside it.
        # Also when the landing is retried (the first attempt merging, the push cut short): decided again the
        # same way, never turned into a failure of what a green candidate proved.
        deepest_green = max(
            (i for i, r in enumerate(results) if r.verdict is Verdict.SUCCESS and chain[i].known_red is None),
            default=-1,
        )
        if deepest_green + 1 > green:
            for attempt, result in zip(chain[:deepest_green], results[:deepest_green], strict=True):
                if result.verdict is not Verdict.SUCCESS or attempt.known_red is not None:
                    optimistic[attempt.id] = result.failed.context if result.failed is not None else ""
            green = deepest_green + 1
    if green:
        deepest = chain[green - 1]
        assert deepest.candidate_sha is not None
        through = tuple(attempt.id for attempt in chain[: green - 1])
        reason = Reason.MERGE_RETRY if first.state is AttemptState.MERGING else Reason.CHECKS_PASSED
        land = MergeAttempt(deepest.id, first.base_sha, deepest.candidate_sha, through, optimistic)
        return Decision((land,), reason, {"optimistic": sorted(optimistic)} if optimistic else {})
    result = results[0]
    assert first.candidate_sha is not None
    if snapshot.policy.optimistic and (first.known_red is not None or result.verdict is Verdict.FAILURE):
        # A candidate behind the red one still under test may turn green and land it: wait for it.
        behind = [r for a, r in zip(chain[1:], results[1:], strict=True) if a.known_red is None]
        if any(r.verdict is Verdict.PENDING for r in behind) and (
            first.deadline_at is None or snapshot.now < first.deadline_at
        ):
            deadlines = [a.deadline_at for a in chain if a.deadline_at is not None]
            wait = WaitUntil(min(deadlines) if deadlines else None)
            return Decision((wait,), Reason.CHECKS_PENDING, {"red": first.id, "waiting_behind": True})
    if first.known_red is not None:  # the very tree a batch failed on: split it without asking CI again
        return _fault(snapshot, chain, Reason.CHECKS_FAILED, dict(first.known_red))
    if result.verdict is Verdict.FAILURE:
        assert result.failed is not None
        detail: dict[str, Any] = {
            "context": result.failed.context,
            "state": result.failed.state,
            "target_url": result.failed.target_url,
            "description": result.failed.description,
            "sha": first.candidate_sha,
        }
        return _fault(snapshot, chain, Reason.CHECKS_FAILED, detail)
    if first.deadline_at is not None and snapshot.now >= first.deadline_at:
        timed_out: dict[str, Any] = {
            "missing": list(result.missing),
            "pending": list(result.pending),
            "sha": first.candidate_sha,
        }
        return _fault(snapshot, chain, Reason.CI_TIMEOUT, timed_out)
    deadlines = [attempt.deadline_at for attempt in chain if attempt.deadline_at is not None]
    return Decision(
        (WaitUntil(min(deadlines) if deadlines else None),),
        Reason.CHECKS_PENDING,
        {"missing": list(result.missing), "pending": list(result.pending)},
    )


def _fault(snapshot: TrainSnapshot, chain: tuple[AttemptView, ...], reason: Reason, detail: dict[str, Any]) -> Decision:
    """The first attempt of the chain is red (or timed out) on top of everything green before it: a batch of
    one fails, a larger batch is bisected. Every attempt behind it carries its red changes, so none of them
    can tell anything: they end, from the chain's end, and their entries go back in line (as old as they were,
    so they are next)."""
    first = chain[0]
    if (
        len(first.entry_ids) == 1
        and reason is Reason.CHECKS_FAILED
        and first.known_red is None
        and first.strategy is not Strategy.PR_BRANCH  # its re-test would push nothing: no CI run, a timeout
        and first.retries < snapshot.policy.flaky_retries
    ):
        # Red alone, maybe by a flaky check: the same candidate is tested once more before its PR is rejected.
        # What is built on it stays, since it is built on the very same commit.
        return Decision((RetryAttempt(first.id, detail),), Reason.RETRIED, {**detail, "retry": first.retries + 1})
    # From the chain's end: the gate ends each in its own transaction, and a crash between two of them must leave
    # one chain (ended from the front, the rest would sit on an ended candidate beside the head).
    behind = tuple(AbandonAttempt(a.id, reason, a.entry_ids) for a in reversed(chain[1:]))
    if len(first.entry_ids) > 1 and snapshot.policy.bisect:
        parts = bisect_parts(first.entry_ids, snapshot.policy.bisect_width)
        groups = tuple(Group(part, first.id) for part in parts)
        recorded = {**detail, "parts": [list(part) for part in parts]}  # the bisected attempt keeps its parts
        split = ReplaceChain((first.id,), first.base_sha, None, groups, reason, bisected=first.id, detail=recorded)
        return Decision((*behind, split), Reason.BISECTED, recorded)
    return Decision((FailAttempt(first.id, first.entry_ids, reason, detail), *behind), reason, detail)


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


def retire(
    entries: Iterable[EntryView], attempts: Iterable[AttemptView], why: str
) -> Decision:
    """The train's repository is no longer managed (``why``: deleted, archived, admin lost, topic removed):
    every active attempt ends and every active entry is cancelled for it, told on its PR where the forge still
    lets the bot. An entry whose attempt was being merged says so (the base may already carry it)."""
    attempts = tuple(attempts)
    merging = {entry_id for a in attempts if a.state is AttemptState.MERGING for entry_id in a.entry_ids}
    actions: list[Action] = [
        AbandonAttempt(attempt.id, Reason.REPOSITORY_UNMANAGED, ()) for attempt in reversed(attempts)
    ]
    for entry in entries:
        if entry.state in FINAL_ENTRY_STATES:
            continue
        detail: dict[str, Any] = {"why": why}
        if entry.id in merging:
            detail["was_merging"] = True
        actions.append(CancelEntry(entry.id, Reason.REPOSITORY_UNMANAGED, detail))
    return Decision(tuple(actions), Reason.REPOSITORY_UNMANAGED, {"why": why})
