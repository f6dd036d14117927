"""Batches and bisection in the machine (bot/queue/machine.py), rule by rule. Pure: snapshots in, decisions out.

A chain here is what the machine sees: the train's active attempts in order, the first built on the base,
each next one on the candidate before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.queue.machine import (
    AbandonAttempt,
    CancelEntry,
    Decision,
    FailAttempt,
    FinishMerged,
    Group,
    MergeAttempt,
    ReplaceChain,
    SettleBisection,
    StartAttempt,
    WaitUntil,
    after_build,
    decide,
)
from bot.queue.model import (
    AttemptState,
    AttemptView,
    BisectionOutcome,
    BisectionView,
    EntryConflicts,
    EntryState,
    EntryView,
    PullView,
    Reason,
    StatusView,
    TrainSnapshot,
)
from bot.queue.policy import QueuePolicy

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
BASE = "b" * 40
MOVED = "e" * 40
GREEN = (StatusView("ci/test", "success"),)
RED = (StatusView("ci/test", "failure", "http://ci/run/7", "2 tests failed"),)
PENDING = (StatusView("ci/test", "pending"),)
BATCH4 = QueuePolicy(batch_max=4)


def head(n: int) -> str:
    return f"{n:x}".rjust(40, "a")


def cand(attempt_id: int) -> str:
    return f"{attempt_id:x}".rjust(40, "c")


def entry(n: int, state: EntryState = EntryState.QUEUED, *, seconds: int = 0, **fields: object) -> EntryView:
    view = EntryView(
        id=n,
        pull=PullView(number=n, head_sha=head(n)),
        state=state,
        approved_sha=head(n),
        queued_at=T0 + timedelta(seconds=seconds),
    )
    return replace(view, **fields)  # type: ignore[arg-type]


def under_test(*ns: int) -> tuple[EntryView, ...]:
    return tuple(entry(n, EntryState.TESTING) for n in ns)


def attempt(
    attempt_id: int, ids: tuple[int, ...], statuses: tuple[StatusView, ...] = PENDING, **fields: object
) -> AttemptView:
    view = AttemptView(
        id=attempt_id,
        state=AttemptState.TESTING,
        base_sha=BASE,
        entry_ids=ids,
        candidate_sha=cand(attempt_id),
        deadline_at=T0 + timedelta(hours=1),
        statuses=statuses,
    )
    return replace(view, **fields)  # type: ignore[arg-type]


def chain(
    *links: tuple[tuple[int, ...], tuple[StatusView, ...]], split_from: int | None = None
) -> tuple[AttemptView, ...]:
    """Attempts 101, 102, ... each on the candidate of the one before."""
    views: list[AttemptView] = []
    for index, (ids, statuses) in enumerate(links):
        attempt_id = 101 + index
        parent = views[-1] if views else None
        views.append(
            attempt(
                attempt_id,
                ids,
                statuses,
                base_sha=parent.candidate_sha if parent else BASE,
                parent_id=parent.id if parent else None,
                split_from=split_from,
            )
        )
    return tuple(views)


def snap(
    *entries: EntryView,
    attempts: tuple[AttemptView, ...] = (),
    policy: QueuePolicy = BATCH4,
    **fields: object,
) -> TrainSnapshot:
    snapshot = TrainSnapshot(
        train_id=1,
        base_branch="main",
        base_tip=BASE,
        entries=entries,
        attempts=attempts,
        now=NOW,
        policy=policy,
    )
    return replace(snapshot, **fields)  # type: ignore[arg-type]


RED_DETAIL = {
    "context": "ci/test",
    "state": "failure",
    "target_url": "http://ci/run/7",
    "description": "2 tests failed",
}


# -- forming batches ------------------------------------------------------------------------------------


def test_the_head_of_the_line_starts_a_batch_of_up_to_batch_max() -> None:
    line = [entry(n, seconds=n) for n in range(1, 7)]
    assert decide(snap(*line)) == Decision((StartAttempt((1, 2, 3, 4), BASE),), Reason.STARTED)


def test_a_short_batch_waits_for_more_then_starts() -> None:
    policy = QueuePolicy(batch_max=4, batch_wait_seconds=600)
    waiting = decide(snap(entry(1), entry(2, seconds=1), policy=policy))
    assert waiting == Decision((WaitUntil(T0 + timedelta(seconds=600)),), Reason.BATCH_WAIT, {"entries": [1, 2]})
    later = decide(snap(entry(1), entry(2, seconds=1), policy=policy, now=T0 + timedelta(seconds=600)))
    assert later == Decision((StartAttempt((1, 2), BASE),), Reason.STARTED)


def test_single_and_urgent_entries_are_tested_alone() -> None:
    policy = QueuePolicy(batch_max=4, urgent_priority=100)
    assert decide(snap(entry(1, single=True), entry(2), policy=policy)).actions == (StartAttempt((1,), BASE),)
    urgent = decide(snap(entry(1), entry(2, priority=100), policy=policy))
    assert urgent.actions == (StartAttempt((2,), BASE),)


def test_nothing_new_starts_while_a_batch_is_under_test() -> None:
    decision = decide(snap(*under_test(1, 2), entry(3), attempts=chain(((1, 2), PENDING))))
    assert decision.reason is Reason.CHECKS_PENDING


# -- landing --------------------------------------------------------------------------------------------


def test_a_green_batch_lands_all_of_it_in_one_fast_forward() -> None:
    decision = decide(snap(*under_test(1, 2, 3), attempts=chain(((1, 2, 3), GREEN))))
    assert decision == Decision((MergeAttempt(101, BASE, cand(101)),), Reason.CHECKS_PASSED)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((GREEN, GREEN, GREEN), MergeAttempt(103, BASE, cand(103), (101, 102))),  # one push lands all three
        ((GREEN, GREEN, PENDING), MergeAttempt(102, BASE, cand(102), (101,))),  # the longest green prefix
        ((GREEN, PENDING, GREEN), MergeAttempt(101, BASE, cand(101))),  # never past a pending one
        ((GREEN, RED, GREEN), MergeAttempt(101, BASE, cand(101))),  # what is green ahead of a red one lands
    ],
)
def test_the_longest_green_prefix_of_the_chain_lands(
    statuses: tuple[tuple[StatusView, ...], ...], expected: MergeAttempt
) -> None:
    links = chain(((1,), statuses[0]), ((2,), statuses[1]), ((3,), statuses[2]))
    decision = decide(snap(*under_test(1, 2, 3), attempts=links))
    assert decision.actions == (expected,)


def test_after_one_push_landed_several_attempts_each_finishes_in_chain_order() -> None:
    links = tuple(replace(a, state=AttemptState.MERGING, landed=True) for a in chain(((1,), GREEN), ((2, 3), GREEN)))
    both = decide(snap(*under_test(1, 2, 3), attempts=links, base_tip=cand(102)))
    assert both == Decision((FinishMerged(101, (1,), cand(101)), FinishMerged(102, (2, 3), cand(102))), Reason.MERGED)
    # Cut short after the first (a crash): the next pass finishes the rest.
    second = decide(snap(*under_test(2, 3), attempts=links[1:], base_tip=cand(102)))
    assert second == Decision((FinishMerged(102, (2, 3), cand(102)),), Reason.MERGED)
    # With more in line, the next candidate goes under CI on the landed tip before the bookkeeping.
    more = decide(snap(*under_test(1, 2, 3), entry(4), attempts=links, base_tip=cand(102)))
    assert more.actions[0] == StartAttempt((4,), cand(102), 102)
    assert more.actions[1:] == both.actions


# -- failure and bisection ------------------------------------------------------------------------------


def test_a_red_batch_is_bisected_first_half_on_the_base_second_on_top() -> None:
    """The first half PR by PR, each on the one before (tested at once), the second half on top of them: the
    tree that failed, known red. The parts are recorded on the bisected attempt."""
    decision = decide(snap(*under_test(1, 2, 3, 4), attempts=chain(((1, 2, 3, 4), RED))))
    recorded = {**RED_DETAIL, "sha": cand(101), "parts": [[1], [2], [3, 4]]}
    split = ReplaceChain(
        (101,),
        BASE,
        None,
        (Group((1,), 101), Group((2,), 101), Group((3, 4), 101)),
        Reason.CHECKS_FAILED,
        bisected=101,
        detail=recorded,
    )
    assert decision == Decision((split,), Reason.BISECTED, recorded)


@pytest.mark.parametrize(
    ("max_parallel", "groups"),
    [
        (1, ((1, 2), (3, 4), (5, 6, 7, 8))),  # two tested at once, as the last step of halving always did
        (2, ((1, 2), (3, 4), (5, 6, 7, 8))),
        (4, ((1,), (2,), (3,), (4,), (5, 6, 7, 8))),  # the CI budget takes the whole first half at once
    ],
)
def test_the_first_half_is_cut_into_as_many_parts_as_the_ci_budget_allows(
    max_parallel: int, groups: tuple[tuple[int, ...], ...]
) -> None:
    policy = QueuePolicy(batch_max=8, max_parallel=max_parallel)
    red = chain(((1, 2, 3, 4, 5, 6, 7, 8), RED))
    (split,) = decide(snap(*under_test(1, 2, 3, 4, 5, 6, 7, 8), attempts=red, policy=policy)).actions
    assert isinstance(split, ReplaceChain)
    assert split.groups == tuple(Group(group, 101) for group in groups)


def test_a_culprit_in_the_first_half_is_found_in_one_cycle() -> None:
    """[1], [2] on it, [3 4] known red on top: 2 red alone on top of 1 (green) fails at once; 1 lands, and
    3 and 4, built on the culprit, go back in line."""
    parts = chain(((1,), GREEN), ((2,), RED), ((3, 4), ()), split_from=100)
    parts = (*parts[:2], replace(parts[2], known_red=KNOWN))
    assert decide(snap(*under_test(1, 2, 3, 4), attempts=parts)).actions == (MergeAttempt(101, BASE, cand(101)),)
    landed = replace(parts[1], base_sha=BASE, parent_id=None), parts[2]
    decision = decide(snap(*under_test(2, 3, 4), attempts=landed))
    assert decision.actions == (
        FailAttempt(102, (2,), Reason.CHECKS_FAILED, {**RED_DETAIL, "sha": cand(102)}),
        AbandonAttempt(103, Reason.CHECKS_FAILED, (3, 4)),
    )


def test_bisection_keeps_the_batch_order_whatever_the_priorities() -> None:
    entries = (entry(5, EntryState.TESTING, priority=9), *under_test(3, 8))
    decision = decide(snap(*entries, attempts=chain(((5, 3, 8), RED))))
    (split,) = decision.actions
    assert isinstance(split, ReplaceChain)
    assert [group.entry_ids for group in split.groups] == [(5, 3), (8,)]


def test_a_part_red_alone_on_top_of_green_is_the_culprit_and_only_it_fails() -> None:
    parts = chain(((1, 2), GREEN), ((3,), RED), ((4,), PENDING), split_from=100)
    # The first part is green: it lands before anything is said about the rest.
    assert decide(snap(*under_test(1, 2, 3, 4), attempts=parts)).actions == (MergeAttempt(101, BASE, cand(101)),)
    # Landed and finished: the red part is now first, on top of everything green before it.
    landed = replace(parts[1], base_sha=BASE, parent_id=None), replace(parts[2], parent_id=102)
    decision = decide(snap(*under_test(3, 4), attempts=landed))
    assert decision.reason is Reason.CHECKS_FAILED
    assert decision.actions == (
        FailAttempt(102, (3,), Reason.CHECKS_FAILED, {**RED_DETAIL, "sha": cand(102)}),
        AbandonAttempt(103, Reason.CHECKS_FAILED, (4,)),  # built on the culprit: back in line, next to go
    )


def test_a_red_part_behind_a_pending_one_waits_no_innocent_is_rejected() -> None:
    parts = chain(((1, 2), PENDING), ((3, 4), RED), split_from=100)
    decision = decide(snap(*under_test(1, 2, 3, 4), attempts=parts))
    assert decision.reason is Reason.CHECKS_PENDING
    assert not any(isinstance(action, (FailAttempt, ReplaceChain)) for action in decision.actions)


def test_a_red_first_half_is_split_again_and_the_second_half_goes_back_in_line() -> None:
    parts = chain(((1, 2), RED), ((3, 4), GREEN), split_from=100)
    decision = decide(snap(*under_test(1, 2, 3, 4), attempts=parts))
    behind, split = decision.actions
    assert behind == AbandonAttempt(102, Reason.CHECKS_FAILED, (3, 4))  # its green says nothing: it held 1, 2
    assert isinstance(split, ReplaceChain)
    assert split.attempt_ids == (101,) and split.bisected == 101 and split.base_sha == BASE
    assert split.groups == (Group((1,), 101), Group((2,), 101))


def test_a_red_plain_batch_of_one_fails_and_what_is_behind_it_goes_back_in_line() -> None:
    links = chain(((1,), RED), ((2, 3), PENDING))
    decision = decide(snap(*under_test(1, 2, 3), attempts=links))
    assert decision.actions == (
        FailAttempt(101, (1,), Reason.CHECKS_FAILED, {**RED_DETAIL, "sha": cand(101)}),
        AbandonAttempt(102, Reason.CHECKS_FAILED, (2, 3)),
    )


def test_a_timed_out_batch_is_bisected_too() -> None:
    decision = decide(snap(*under_test(1, 2), attempts=chain(((1, 2), PENDING)), now=T0 + timedelta(hours=2)))
    assert decision.reason is Reason.BISECTED
    (split,) = decision.actions
    assert isinstance(split, ReplaceChain) and split.reason is Reason.CI_TIMEOUT


# -- changes while a batch is under test ----------------------------------------------------------------


def test_a_new_push_to_one_member_rebuilds_the_others_without_it() -> None:
    members = (*under_test(1, 3), entry(2, EntryState.TESTING, pull=PullView(number=2, head_sha=head(9))))
    decision = decide(snap(*members, attempts=chain(((1, 2, 3), PENDING))))
    assert decision.actions == (
        AbandonAttempt(101, Reason.HEAD_CHANGED, (1, 3)),
        CancelEntry(2, Reason.HEAD_CHANGED, {"approved": head(2), "head": head(9)}),
    )


def test_a_cancel_in_the_middle_of_a_bisection_rebuilds_it_and_what_is_behind_leaves_what_is_ahead() -> None:
    parts = chain(((1, 2), PENDING), ((3, 4), PENDING), ((5,), PENDING), split_from=100)
    cancelled = replace(entry(3, EntryState.TESTING), cancel_requested_by="maint")
    decision = decide(snap(*under_test(1, 2), cancelled, *under_test(4, 5), attempts=parts))
    assert decision.actions == (
        ReplaceChain((102, 103), cand(101), 101, (Group((4,), 100), Group((5,), 100)), Reason.CANCELLED_BY_USER),
        CancelEntry(3, Reason.CANCELLED_BY_USER, {"by": "maint"}),
    )


def test_the_base_moving_outside_the_chain_rebuilds_every_part_on_the_new_tip() -> None:
    parts = chain(((1, 2), PENDING), ((3, 4), GREEN), split_from=100)
    decision = decide(snap(*under_test(1, 2, 3, 4), attempts=parts, base_tip=MOVED))
    assert decision == Decision(
        (ReplaceChain((101, 102), MOVED, None, (Group((1, 2), 100), Group((3, 4), 100)), Reason.BASE_MOVED),),
        Reason.BASE_MOVED,
        {"built_on": BASE, "base_now": MOVED},
    )


def test_an_attempt_no_longer_on_its_parents_candidate_is_rebuilt_on_it() -> None:
    parts = list(chain(((1,), PENDING), ((2,), PENDING), split_from=100))
    parts[1] = replace(parts[1], base_sha="f" * 40)  # its parent was rebuilt under it
    decision = decide(snap(*under_test(1, 2), attempts=tuple(parts)))
    assert decision.actions == (ReplaceChain((102,), cand(101), 101, (Group((2,), 100),), Reason.CHAIN_BROKEN),)


def test_a_conflict_inside_a_batch_fails_only_that_member() -> None:
    built = attempt(101, (1, 2, 3), state=AttemptState.BUILDING, candidate_sha=None)
    decision = after_build(built, EntryConflicts(2, ("app.py",)))
    assert decision.actions == (FailAttempt(101, (2,), Reason.CONFLICT, {"paths": ["app.py"]}, requeue=(1, 3)),)


# -- a batch that failed although every part passed ----------------------------------------------------


@pytest.mark.parametrize(
    ("states", "outcome"),
    [
        ((EntryState.MERGED, EntryState.MERGED, EntryState.MERGED), BisectionOutcome.FLAKY),
        ((EntryState.MERGED, EntryState.FAILED, EntryState.MERGED), BisectionOutcome.CULPRIT),
        ((EntryState.MERGED, EntryState.CANCELLED, EntryState.MERGED), BisectionOutcome.INCONCLUSIVE),
    ],
)
def test_a_bisection_settles_once_all_its_entries_are_final(
    states: tuple[EntryState, ...], outcome: BisectionOutcome
) -> None:
    bisection = BisectionView(100, tuple(zip((1, 2, 3), states, strict=True)), "ci/test")
    decision = decide(snap(bisections=(bisection,)))
    assert decision.actions == (SettleBisection(100, outcome, "ci/test"),)
    assert (decision.reason is Reason.FLAKY) is (outcome is BisectionOutcome.FLAKY)


def test_a_bisection_with_entries_still_under_test_is_not_settled() -> None:
    bisection = BisectionView(100, ((1, EntryState.MERGED), (2, EntryState.TESTING)), "ci/test")
    decision = decide(snap(*under_test(2), attempts=chain(((2,), PENDING), split_from=100), bisections=(bisection,)))
    assert decision.reason is Reason.CHECKS_PENDING


# -- a tree already known red ---------------------------------------------------------------------------

KNOWN = {**RED_DETAIL, "sha": cand(100)}


def test_a_second_half_known_red_waits_behind_the_first_and_never_lands() -> None:
    parts = list(chain(((1, 2), PENDING), ((3, 4), ()), split_from=100))
    parts[1] = replace(parts[1], known_red=KNOWN)
    assert decide(snap(*under_test(1, 2, 3, 4), attempts=tuple(parts))).reason is Reason.CHECKS_PENDING
    parts[0] = replace(parts[0], statuses=GREEN)
    assert decide(snap(*under_test(1, 2, 3, 4), attempts=tuple(parts))).actions == (MergeAttempt(101, BASE, cand(101)),)


def test_a_known_red_tree_at_the_head_is_split_without_asking_ci_again() -> None:
    known = replace(attempt(102, (3, 4), ()), split_from=100, known_red=KNOWN)
    decision = decide(snap(*under_test(3, 4), attempts=(known,)))
    assert decision.reason is Reason.BISECTED
    (split,) = decision.actions
    assert isinstance(split, ReplaceChain)
    assert split.bisected == 102 and split.groups == (Group((3,), 102), Group((4,), 102))
    assert split.detail == {**KNOWN, "parts": [[3], [4]]}  # the failure CI reported on that tree, with its link
