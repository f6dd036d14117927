"""The queue machine, rule by rule (bot/queue/machine.py). Pure: no database, no forge, no clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.queue.machine import (
    AbandonAttempt,
    BuildCandidate,
    CancelEntry,
    Decision,
    FailAttempt,
    FinishMerged,
    MergeAttempt,
    PromoteEntry,
    RequeueEntry,
    StartAttempt,
    WaitUntil,
    after_build,
    decide,
    queue_order,
)
from bot.queue.model import (
    AttemptState,
    AttemptView,
    EntryAddsNothing,
    EntryConflicts,
    EntryState,
    EntryView,
    PullView,
    Reason,
    RequiredChecks,
    StatusView,
    Strategy,
    TrainSnapshot,
)
from bot.queue.policy import QueuePolicy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
BASE = "b" * 40
BASE2 = "c" * 40
CAND = "d" * 40
HEAD = {n: f"{n:x}".rjust(40, "a") for n in range(1, 10)}


def entry(
    n: int, state: EntryState = EntryState.QUEUED, *, priority: int = 0, minutes: int = 0, **pull: object
) -> EntryView:
    if "pr_state" in pull:
        pull["state"] = pull.pop("pr_state")
    view = replace(PullView(number=n, head_sha=HEAD[n]), **pull)  # type: ignore[arg-type]
    return EntryView(
        id=n, pull=view, state=state, approved_sha=HEAD[n], queued_at=T0 + timedelta(minutes=minutes), priority=priority
    )


def attempt(
    state: AttemptState = AttemptState.TESTING, *, ids: tuple[int, ...] = (1,), **fields: object
) -> AttemptView:
    view = AttemptView(
        id=100, state=state, base_sha=BASE, entry_ids=ids, candidate_sha=CAND, deadline_at=T0 + timedelta(hours=1)
    )
    return replace(view, **fields)  # type: ignore[arg-type]


def snap(
    *entries: EntryView,
    attempt_: AttemptView | None = None,
    statuses: tuple[StatusView, ...] = (),
    **fields: object,
) -> TrainSnapshot:
    """A train with ``entries`` and at most one active attempt, whose candidate has ``statuses``."""
    attempts = (replace(attempt_, statuses=statuses),) if attempt_ is not None else ()
    snapshot = TrainSnapshot(
        train_id=1, base_branch="main", base_tip=BASE, entries=entries, attempts=attempts, now=T0 + timedelta(minutes=5)
    )
    return replace(snapshot, **fields)  # type: ignore[arg-type]


GREEN = (StatusView("ci/test", "success"),)
RED = (StatusView("ci/test", "failure", "http://ci/run/7", "2 tests failed"),)
PENDING = (StatusView("ci/test", "pending"),)


CASES: list[tuple[str, TrainSnapshot, Decision]] = [
    ("empty train waits for events", snap(), Decision((WaitUntil(),), Reason.IDLE)),
    (
        "head of queue starts an attempt on the base tip",
        snap(entry(1)),
        Decision((StartAttempt((1,), BASE),), Reason.STARTED),
    ),
    (
        "higher priority goes first",
        snap(entry(1, minutes=0), entry(2, priority=5, minutes=10)),
        Decision((StartAttempt((2,), BASE),), Reason.STARTED),
    ),
    (
        "same priority: oldest first",
        snap(entry(2, minutes=3), entry(1, minutes=1), entry(3, minutes=2)),
        Decision((StartAttempt((1,), BASE),), Reason.STARTED),
    ),
    (
        "waiting entries (dependencies unmet) do not start",
        snap(entry(1, EntryState.WAITING)),
        Decision((WaitUntil(),), Reason.IDLE),
    ),
    (
        "a running attempt is not preempted by a new high-priority entry",
        snap(entry(1, EntryState.TESTING), entry(2, priority=9), attempt_=attempt(), statuses=PENDING),
        Decision((WaitUntil(T0 + timedelta(hours=1)),), Reason.CHECKS_PENDING, {"missing": [], "pending": ["ci/test"]}),
    ),
    (
        "green on the candidate: merge",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(), statuses=GREEN),
        Decision((MergeAttempt(100, BASE, CAND),), Reason.CHECKS_PASSED),
    ),
    (
        "red: fail with the failing context and its link",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(), statuses=RED),
        Decision(
            (
                FailAttempt(
                    100,
                    (1,),
                    Reason.CHECKS_FAILED,
                    {
                        "context": "ci/test",
                        "state": "failure",
                        "target_url": "http://ci/run/7",
                        "description": "2 tests failed",
                        "sha": CAND,
                    },
                ),
            ),
            Reason.CHECKS_FAILED,
            {
                "context": "ci/test",
                "state": "failure",
                "target_url": "http://ci/run/7",
                "description": "2 tests failed",
                "sha": CAND,
            },
        ),
    ),
    (
        "deadline passed with checks pending: timeout",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(), statuses=PENDING, now=T0 + timedelta(hours=2)),
        Decision(
            (FailAttempt(100, (1,), Reason.CI_TIMEOUT, {"missing": [], "pending": ["ci/test"], "sha": CAND}),),
            Reason.CI_TIMEOUT,
            {"missing": [], "pending": ["ci/test"], "sha": CAND},
        ),
    ),
    (
        "a required context that never appears times out, never passes",
        snap(
            entry(1, EntryState.TESTING),
            attempt_=attempt(),
            statuses=GREEN,
            required=RequiredChecks(("ci/test", "ci/e2e")),
            now=T0 + timedelta(hours=2),
        ),
        Decision(
            (FailAttempt(100, (1,), Reason.CI_TIMEOUT, {"missing": ["ci/e2e"], "pending": [], "sha": CAND}),),
            Reason.CI_TIMEOUT,
            {"missing": ["ci/e2e"], "pending": [], "sha": CAND},
        ),
    ),
    (
        "base moved during the test: rebuild and retest without penalty",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(), statuses=GREEN, base_tip=BASE2),
        Decision(
            (AbandonAttempt(100, Reason.BASE_MOVED, (1,)),),
            Reason.BASE_MOVED,
            {"built_on": BASE, "base_now": BASE2},
        ),
    ),
    (
        "PR head changed by someone else: cancel, abandon the attempt",
        snap(entry(1, EntryState.TESTING, head_sha=HEAD[9]), attempt_=attempt(), statuses=GREEN),
        Decision(
            (
                AbandonAttempt(100, Reason.HEAD_CHANGED, ()),
                CancelEntry(1, Reason.HEAD_CHANGED, {"approved": HEAD[1], "head": HEAD[9]}),
            ),
            Reason.HEAD_CHANGED,
        ),
    ),
    (
        "pr-branch strategy: the bot's own rebase is not a head change",
        snap(
            entry(1, EntryState.TESTING, head_sha=CAND),
            attempt_=attempt(strategy=Strategy.PR_BRANCH),
            statuses=GREEN,
        ),
        Decision((MergeAttempt(100, BASE, CAND),), Reason.CHECKS_PASSED),
    ),
    (
        "PR closed during the test: clean abort",
        snap(entry(1, EntryState.TESTING, pr_state="closed"), attempt_=attempt(), statuses=PENDING),
        Decision(
            (AbandonAttempt(100, Reason.PR_CLOSED, ()), CancelEntry(1, Reason.PR_CLOSED)),
            Reason.PR_CLOSED,
        ),
    ),
    (
        "PR merged by a human during the test: clean abort",
        snap(
            entry(1, EntryState.TESTING, pr_state="closed", merged=True, merge_commit_sha=HEAD[8]),
            attempt_=attempt(),
            statuses=PENDING,
        ),
        Decision(
            (
                AbandonAttempt(100, Reason.PR_MERGED_OUTSIDE, ()),
                CancelEntry(1, Reason.PR_MERGED_OUTSIDE, {"merge_commit_sha": HEAD[8]}),
            ),
            Reason.PR_MERGED_OUTSIDE,
        ),
    ),
    (
        "queued entry whose PR got new commits is cancelled before anything starts",
        snap(entry(1, head_sha=HEAD[9]), entry(2)),
        Decision((CancelEntry(1, Reason.HEAD_CHANGED, {"approved": HEAD[1], "head": HEAD[9]}),), Reason.HEAD_CHANGED),
    ),
    (
        "attempt lost its candidate mid-build: rebuild it",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.BUILDING, candidate_sha=None)),
        Decision((BuildCandidate(100),), Reason.RESUMED_BUILD),
    ),
    (
        "merging, base already at the candidate (crash after the push): finish the bookkeeping",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.MERGING), base_tip=CAND),
        Decision((FinishMerged(100, (1,), CAND),), Reason.MERGED),
    ),
    (
        "merging, and the PR already shows merged by our own merge: finish, do not cancel",
        snap(
            entry(1, EntryState.TESTING, pr_state="closed", merged=True, merge_commit_sha=CAND),
            attempt_=attempt(AttemptState.MERGING),
            base_tip=CAND,
        ),
        Decision((FinishMerged(100, (1,), CAND),), Reason.MERGED),
    ),
    (
        "merging, base still at the tested base: push the fast-forward again",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.MERGING), statuses=GREEN),
        Decision((MergeAttempt(100, BASE, CAND),), Reason.MERGE_RETRY),
    ),
    (
        "merging, but a check turned red since the decision: fail, never push",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.MERGING), statuses=RED),
        Decision(
            (
                FailAttempt(
                    100,
                    (1,),
                    Reason.CHECKS_FAILED,
                    {
                        "context": "ci/test",
                        "state": "failure",
                        "target_url": "http://ci/run/7",
                        "description": "2 tests failed",
                        "sha": CAND,
                    },
                ),
            ),
            Reason.CHECKS_FAILED,
            {
                "context": "ci/test",
                "state": "failure",
                "target_url": "http://ci/run/7",
                "description": "2 tests failed",
                "sha": CAND,
            },
        ),
    ),
    (
        "merging, base moved elsewhere: the fast-forward was refused, rebuild",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.MERGING), base_tip=BASE2),
        Decision(
            (AbandonAttempt(100, Reason.BASE_MOVED, (1,)),),
            Reason.BASE_MOVED,
            {"built_on": BASE, "base_now": BASE2},
        ),
    ),
    (
        "merging, base moved on past the landed candidate: finish",
        snap(entry(1, EntryState.TESTING), attempt_=attempt(AttemptState.MERGING), base_tip=BASE2),
        Decision((FinishMerged(100, (1,), CAND),), Reason.MERGED),
    ),
    (
        "merging, PR closed before the push: abort instead of pushing",
        snap(entry(1, EntryState.TESTING, pr_state="closed"), attempt_=attempt(AttemptState.MERGING)),
        Decision(
            (AbandonAttempt(100, Reason.PR_CLOSED, ()), CancelEntry(1, Reason.PR_CLOSED)),
            Reason.PR_CLOSED,
        ),
    ),
]


@pytest.mark.parametrize(("name", "snapshot", "expected"), CASES, ids=[case[0] for case in CASES])
def test_rule(name: str, snapshot: TrainSnapshot, expected: Decision) -> None:
    if name == "merging, base moved on past the landed candidate: finish":
        snapshot = replace(snapshot, attempts=tuple(replace(a, landed=True) for a in snapshot.attempts))
    assert decide(snapshot) == expected


def test_queue_order_is_priority_then_age_then_id() -> None:
    entries = [entry(1, minutes=5), entry(2, priority=1, minutes=9), entry(3, minutes=5), entry(4, EntryState.WAITING)]
    assert [e.id for e in queue_order(entries)] == [2, 1, 3]


def test_statuses_of_the_bot_itself_never_merge() -> None:
    own = (StatusView("merge-bot", "success"), StatusView("merge-bot/ci/test", "success"))
    decision = decide(snap(entry(1, EntryState.TESTING), attempt_=attempt(), statuses=own))
    assert decision.reason is Reason.CHECKS_PENDING


def test_cancel_request_aborts_the_running_attempt() -> None:
    cancelled = replace(entry(1, EntryState.TESTING), cancel_requested_by="maintainer")
    decision = decide(snap(cancelled, entry(2), attempt_=attempt(), statuses=PENDING))
    assert decision == Decision(
        (
            AbandonAttempt(100, Reason.CANCELLED_BY_USER, ()),
            CancelEntry(1, Reason.CANCELLED_BY_USER, {"by": "maintainer"}),
        ),
        Reason.CANCELLED_BY_USER,
    )


def test_waiting_entry_whose_dependencies_merged_is_promoted() -> None:
    ready = replace(entry(1, EntryState.WAITING), ready=True)
    decision = decide(snap(ready, entry(2, EntryState.WAITING)))
    assert decision == Decision((PromoteEntry(1),), Reason.DEPENDENCIES_MET)


@pytest.mark.parametrize(
    ("priority", "urgent", "preempts"),
    [(99, 100, False), (100, 100, True), (500, None, False), (100, 100, True)],
)
def test_only_an_urgent_entry_preempts_a_running_attempt(priority: int, urgent: int | None, preempts: bool) -> None:
    snapshot = snap(
        entry(1, EntryState.TESTING),
        entry(2, priority=priority),
        attempt_=attempt(),
        statuses=PENDING,
        policy=QueuePolicy(urgent_priority=urgent),
    )
    decision = decide(snapshot)
    assert (decision.reason is Reason.PREEMPTED) is preempts
    if preempts:
        assert decision.actions == (AbandonAttempt(100, Reason.PREEMPTED, (1,)),)


def test_an_urgent_entry_does_not_preempt_an_equally_urgent_attempt() -> None:
    running = replace(entry(1, EntryState.TESTING), priority=200)
    urgent = QueuePolicy(urgent_priority=100)
    decision = decide(snap(running, entry(2, priority=200), attempt_=attempt(), statuses=PENDING, policy=urgent))
    assert decision.reason is Reason.CHECKS_PENDING


def test_a_merging_attempt_is_never_preempted() -> None:
    decision = decide(
        snap(
            entry(1, EntryState.TESTING),
            entry(2, priority=1000),
            attempt_=attempt(AttemptState.MERGING),
            policy=QueuePolicy(urgent_priority=1),
            statuses=GREEN,
        )
    )
    assert decision.reason is Reason.MERGE_RETRY


def test_testing_entry_that_no_attempt_carries_goes_back_in_line() -> None:
    # A crash between abandoning an attempt and moving its entries leaves them 'testing' with no attempt.
    decision = decide(snap(entry(1, EntryState.TESTING), entry(2)))
    assert decision == Decision((RequeueEntry(1),), Reason.ORPHANED)
    other = replace(attempt(ids=(2,)), id=101)
    assert decide(
        snap(entry(1, EntryState.TESTING), entry(2, EntryState.TESTING), attempt_=other, statuses=PENDING)
    ) == (Decision((RequeueEntry(1),), Reason.ORPHANED))


# -- attempts of several entries, and several attempts -------------------------------------------------


def test_an_attempt_of_two_entries_merges_and_finishes_both() -> None:
    both = attempt(ids=(1, 2))
    testing = (entry(1, EntryState.TESTING), entry(2, EntryState.TESTING))
    assert decide(snap(*testing, attempt_=both, statuses=GREEN)) == Decision(
        (MergeAttempt(100, BASE, CAND),), Reason.CHECKS_PASSED
    )
    merging = replace(both, state=AttemptState.MERGING)
    assert decide(snap(*testing, attempt_=merging, base_tip=CAND)) == Decision(
        (FinishMerged(100, (1, 2), CAND),), Reason.MERGED
    )


def test_without_bisection_a_red_check_fails_every_entry_of_the_attempt_it_names() -> None:
    decision = decide(
        snap(
            entry(1, EntryState.TESTING),
            entry(2, EntryState.TESTING),
            attempt_=attempt(ids=(1, 2)),
            statuses=RED,
            policy=QueuePolicy(batch_max=2, bisect=False),
        )
    )
    assert decision.reason is Reason.CHECKS_FAILED
    assert [(a.attempt_id, a.entry_ids) for a in decision.actions if isinstance(a, FailAttempt)] == [(100, (1, 2))]


def test_a_stale_second_entry_is_cancelled_and_the_first_goes_back_in_line() -> None:
    pushed = entry(2, EntryState.TESTING, head_sha=HEAD[9])
    decision = decide(snap(entry(1, EntryState.TESTING), pushed, attempt_=attempt(ids=(1, 2)), statuses=PENDING))
    assert decision == Decision(
        (
            AbandonAttempt(100, Reason.HEAD_CHANGED, (1,)),
            CancelEntry(2, Reason.HEAD_CHANGED, {"approved": HEAD[2], "head": HEAD[9]}),
        ),
        Reason.HEAD_CHANGED,
    )


def test_actions_name_the_chain_head_and_entries_behind_it_are_not_orphans() -> None:
    head = attempt(ids=(1,), statuses=GREEN)
    behind = attempt(ids=(2,), parent_id=100, base_sha=CAND, candidate_sha=HEAD[8], statuses=RED)
    snapshot = replace(
        snap(entry(1, EntryState.TESTING), entry(2, EntryState.TESTING), entry(3)),
        attempts=(head, replace(behind, id=101)),
    )
    assert decide(snapshot) == Decision((MergeAttempt(100, BASE, CAND),), Reason.CHECKS_PASSED)
    landed = replace(snapshot, attempts=(replace(head, state=AttemptState.MERGING, landed=True), snapshot.attempts[1]))
    assert decide(landed) == Decision((FinishMerged(100, (1,), CAND),), Reason.MERGED)


def test_a_conflict_on_the_second_entry_fails_that_entry_and_requeues_the_first() -> None:
    both = attempt(AttemptState.BUILDING, ids=(1, 2), candidate_sha=None)
    assert after_build(both, EntryConflicts(2, ("b.txt",))) == Decision(
        (FailAttempt(100, (2,), Reason.CONFLICT, {"paths": ["b.txt"]}, requeue=(1,)),),
        Reason.CONFLICT,
        {"paths": ["b.txt"]},
    )


def test_a_single_entry_that_adds_nothing_fails_alone() -> None:
    alone = attempt(AttemptState.BUILDING, candidate_sha=None)
    assert after_build(alone, EntryAddsNothing(1)) == Decision(
        (FailAttempt(100, (1,), Reason.ALREADY_IN_BASE, {}),), Reason.ALREADY_IN_BASE, {}
    )
