"""Speculative chains in the machine (bot/queue/machine.py), rule by rule: a train tests several candidates at
once, each built on the one before (candidate 2 = candidate 1 + batch 2), as deep as its window allows.

Pure: snapshots in, decisions out. The snapshot helpers are the batch tests' (tests/test_machine_batches.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from bot.queue.machine import (
    AbandonAttempt,
    Action,
    BuildCandidate,
    CancelEntry,
    FailAttempt,
    Group,
    MergeAttempt,
    ReplaceChain,
    RetryAttempt,
    StartAttempt,
    WaitUntil,
    decide,
)
from bot.queue.model import AttemptState, AttemptView, EntryState, Hold, HoldKind, Reason, Strategy
from bot.queue.policy import QueuePolicy
from tests.test_machine_batches import (
    BASE,
    GREEN,
    MOVED,
    NOW,
    PENDING,
    RED,
    RED_DETAIL,
    attempt,
    cand,
    chain,
    entry,
    snap,
    under_test,
)

CHAIN4 = QueuePolicy(batch_max=1, max_parallel=4)  # one PR per candidate, four candidates at once
CHAIN4_BATCH2 = QueuePolicy(batch_max=2, max_parallel=4)


# -- growing the chain ----------------------------------------------------------------------------------


def test_an_empty_chain_starts_on_the_base_tip() -> None:
    decision = decide(snap(entry(1), entry(2, seconds=1), policy=CHAIN4))
    assert decision.actions == (StartAttempt((1,), BASE, None),)


def test_the_next_attempt_is_built_on_the_candidate_at_the_chain_end() -> None:
    running = chain(((1,), PENDING), ((2,), PENDING))
    decision = decide(snap(*under_test(1, 2), entry(3), entry(4, seconds=1), attempts=running, policy=CHAIN4))
    assert decision.actions == (StartAttempt((3,), cand(102), 102),)
    assert decision.reason is Reason.STARTED


def test_a_chain_batch_takes_up_to_batch_max_entries_on_the_previous_candidate() -> None:
    running = chain(((1, 2), PENDING))
    line = (entry(3), entry(4, seconds=1), entry(5, seconds=2))
    decision = decide(snap(*under_test(1, 2), *line, attempts=running, policy=CHAIN4_BATCH2))
    assert decision.actions == (StartAttempt((3, 4), cand(101), 101),)


def test_the_chain_stops_growing_at_the_window() -> None:
    running = chain(((1,), PENDING), ((2,), PENDING))
    two_deep = replace(CHAIN4, window=2)
    decision = decide(snap(*under_test(1, 2), entry(3), attempts=running, policy=two_deep))
    assert decision.reason is Reason.CHECKS_PENDING
    assert all(isinstance(action, WaitUntil) for action in decision.actions)


def test_the_trains_current_window_bounds_the_depth_not_only_the_policy() -> None:
    running = chain(((1,), PENDING), ((2,), PENDING))
    decision = decide(snap(*under_test(1, 2), entry(3), attempts=running, policy=CHAIN4, window=2))
    assert decision.waits
    deeper = decide(snap(*under_test(1, 2), entry(3), attempts=running, policy=CHAIN4, window=3))
    assert deeper.actions == (StartAttempt((3,), cand(102), 102),)


def test_max_parallel_one_is_the_serial_queue() -> None:
    running = chain(((1,), PENDING))
    decision = decide(snap(*under_test(1), entry(2), attempts=running, policy=QueuePolicy(batch_max=1)))
    assert decision.waits


def test_nothing_is_built_on_a_red_candidate() -> None:
    """A red attempt behind a pending one waits (it may be innocent), and nothing more is stacked on it."""
    running = chain(((1,), PENDING), ((2,), RED))
    decision = decide(snap(*under_test(1, 2), entry(3), attempts=running, policy=CHAIN4))
    assert decision.waits


def test_nothing_is_built_on_a_candidate_still_building() -> None:
    running = chain(((1,), PENDING))
    building = (replace(running[0], state=AttemptState.BUILDING),)
    decision = decide(snap(*under_test(1), entry(2), attempts=building, policy=CHAIN4))
    assert decision.actions == (BuildCandidate(101),)


def test_a_pr_branch_attempt_is_never_built_upon() -> None:
    running = (attempt(101, (1,), PENDING, strategy=Strategy.PR_BRANCH),)
    decision = decide(snap(*under_test(1), entry(2), attempts=running, policy=CHAIN4))
    assert decision.waits


def test_a_short_batch_behind_the_chain_waits_for_more() -> None:
    running = chain(((1,), PENDING))
    policy = QueuePolicy(batch_max=3, max_parallel=4, batch_wait_seconds=600)
    decision = decide(snap(*under_test(1), entry(2), attempts=running, policy=policy))
    assert decision.reason is Reason.BATCH_WAIT
    (wait,) = decision.actions
    assert isinstance(wait, WaitUntil) and wait.at is not None


def test_a_queued_entry_whose_pr_closed_is_cancelled_while_the_chain_runs() -> None:
    running = chain(((1,), PENDING))
    closed = entry(2, pull=replace(entry(2).pull, state="closed"))
    decision = decide(snap(*under_test(1), closed, attempts=running, policy=CHAIN4))
    assert decision.actions == (CancelEntry(2, Reason.PR_CLOSED),)


# -- landing --------------------------------------------------------------------------------------------


def test_several_green_attempts_land_in_one_push() -> None:
    running = chain(((1,), GREEN), ((2,), GREEN), ((3,), PENDING))
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=CHAIN4))
    assert decision.actions == (MergeAttempt(102, BASE, cand(102), (101,)),)


def test_a_green_attempt_behind_a_pending_one_waits_for_it() -> None:
    running = chain(((1,), PENDING), ((2,), GREEN))
    decision = decide(snap(*under_test(1, 2), attempts=running, policy=CHAIN4))
    assert decision.waits


def test_optimistic_a_green_candidate_lands_the_pending_and_red_ones_before_it() -> None:
    running = chain(((1,), RED), ((2,), PENDING), ((3,), GREEN))
    optimistic = replace(CHAIN4, optimistic=True)
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=optimistic))
    assert decision.actions == (MergeAttempt(103, BASE, cand(103), (101, 102), {101: "ci/test", 102: ""}),)


def test_optimistic_a_landing_cut_short_by_a_crash_is_retried_optimistically() -> None:
    """Found by tests/test_machine_stateful.py (optimistic, flaky_retries 0, two PRs down a chain: the first
    red by a flake, the second green; the gate records the first merging and dies before the push). The retry
    skipped optimism while the first was merging, so the first PR failed on its red check and the green one
    behind it was abandoned: a crash turned a landing into a rejection. It lands as it was decided."""
    optimistic = replace(CHAIN4, optimistic=True)
    running = chain(((1,), RED), ((2,), GREEN))
    merging = tuple(replace(view, state=AttemptState.MERGING) for view in running)
    first = decide(snap(*under_test(1, 2), attempts=running, policy=optimistic))
    again = decide(snap(*under_test(1, 2), attempts=merging, policy=optimistic))
    assert first.actions == again.actions == (MergeAttempt(102, BASE, cand(102), (101,), {101: "ci/test"}),)
    assert again.reason is Reason.MERGE_RETRY
    pending = chain(((1,), PENDING), ((2,), GREEN))
    only_first = (replace(pending[0], state=AttemptState.MERGING), pending[1])  # died between the two intents
    decision = decide(snap(*under_test(1, 2), attempts=only_first, policy=optimistic))
    assert decision.actions == (MergeAttempt(102, BASE, cand(102), (101,), {101: ""}),)


def test_optimistic_a_red_head_waits_while_a_candidate_behind_it_is_under_test() -> None:
    running = chain(((1,), RED), ((2,), PENDING))
    optimistic = replace(CHAIN4, optimistic=True, flaky_retries=0)
    assert decide(snap(*under_test(1, 2), attempts=running, policy=optimistic)).waits
    everything_red = chain(((1,), RED), ((2,), RED))
    decision = decide(snap(*under_test(1, 2), attempts=everything_red, policy=optimistic))
    assert isinstance(decision.actions[0], FailAttempt)


def test_without_optimism_a_red_head_fails_even_with_green_behind() -> None:
    running = chain(((1,), RED), ((2,), GREEN))
    decision = decide(snap(*under_test(1, 2), attempts=running, policy=CHAIN4))
    assert decision.actions[0] == FailAttempt(101, (1,), Reason.CHECKS_FAILED, {**RED_DETAIL, "sha": cand(101)})
    assert decision.actions[1:] == (AbandonAttempt(102, Reason.CHECKS_FAILED, (2,)),)


# -- failures -------------------------------------------------------------------------------------------


def test_a_red_attempt_behind_a_pending_one_waits_so_an_innocent_pr_is_never_rejected() -> None:
    running = chain(((1,), PENDING), ((2,), RED), ((3,), PENDING))
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=CHAIN4))
    assert decision.waits


def test_failure_at_the_head_requeues_everything_behind_it() -> None:
    running = chain(((1,), RED), ((2,), PENDING), ((3,), GREEN))
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=CHAIN4))
    assert decision.actions[1:] == (
        AbandonAttempt(103, Reason.CHECKS_FAILED, (3,)),
        AbandonAttempt(102, Reason.CHECKS_FAILED, (2,)),
    )


def one_chain_after_each_step(attempts: tuple[AttemptView, ...], actions: tuple[Action, ...]) -> list[list[int]]:
    """The attempts still active after each prefix of ``actions`` (each its own transaction in the gate, so a
    crash may stop after any of them) that do not form one chain: each after the first built on the one before
    it. Ends what AbandonAttempt, FailAttempt and ReplaceChain name (nothing new is opened here)."""
    active = list(attempts)
    broken = []
    for action in actions:
        if isinstance(action, AbandonAttempt | FailAttempt):
            ended = {action.attempt_id}
        elif isinstance(action, ReplaceChain):
            ended = set(action.attempt_ids)
        else:
            continue
        active = [view for view in active if view.id not in ended]
        if any(child.parent_id != parent.id for parent, child in itertools.pairwise(active)):
            broken.append([view.id for view in active])
    return broken


def test_a_red_head_ends_what_is_behind_it_from_the_chains_end() -> None:
    """Found by tests/test_machine_stateful.py (batch_max 2, max_parallel 3: a red batch at the head of a chain
    of three, the process killed between the abandonments of the two behind it). Ended from the front, the
    second went first and the third was left on an ended candidate, beside the head: two chains, and the next
    decision rebuilt the third on the red head. Ended from the chain's end, any crash leaves one chain."""
    for first in ((1,), (1, 2)):
        running = chain((first, RED), ((3,), PENDING), ((4,), PENDING))
        policy = replace(CHAIN4_BATCH2, flaky_retries=0)
        decision = decide(snap(*under_test(*first, 3, 4), attempts=running, policy=policy))
        assert [a.attempt_id for a in decision.actions if isinstance(a, AbandonAttempt)] == [103, 102]
        assert one_chain_after_each_step(running, decision.actions) == []


def test_a_pause_that_cancels_ends_the_chain_behind_a_merging_head_from_its_end() -> None:
    running = chain(((1,), GREEN), ((2,), PENDING), ((3,), PENDING))
    merging = (replace(running[0], state=AttemptState.MERGING), *running[1:])
    pause = Hold(HoldKind.PAUSE, "CI maintenance", cancel_running=True)
    decision = decide(snap(*under_test(1, 2, 3), attempts=merging, policy=CHAIN4, holds=(pause,)))
    assert decision.actions == (
        AbandonAttempt(103, Reason.PAUSED, (3,)),
        AbandonAttempt(102, Reason.PAUSED, (2,)),
    )
    assert one_chain_after_each_step(merging, decision.actions) == []


def test_a_red_batch_at_the_head_is_bisected_and_the_chain_behind_it_requeued() -> None:
    running = chain(((1, 2), RED), ((3,), PENDING))
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=CHAIN4_BATCH2))
    assert decision.reason is Reason.BISECTED
    assert decision.actions[0] == AbandonAttempt(102, Reason.CHECKS_FAILED, (3,))
    split = decision.actions[1]
    assert isinstance(split, ReplaceChain) and split.groups == (Group((1,), 101), Group((2,), 101))


def test_a_pr_red_alone_is_retested_once_and_what_is_built_on_it_stays() -> None:
    running = chain(((1,), RED), ((2,), PENDING))
    retrying = replace(CHAIN4, flaky_retries=1)
    decision = decide(snap(*under_test(1, 2), attempts=running, policy=retrying))
    assert decision.actions == (RetryAttempt(101, {**RED_DETAIL, "sha": cand(101)}),)
    assert decision.reason is Reason.RETRIED


def test_a_pr_red_again_after_its_retries_fails() -> None:
    once = (replace(chain(((1,), RED))[0], retries=1),)
    decision = decide(snap(*under_test(1), attempts=once, policy=replace(CHAIN4, flaky_retries=1)))
    assert isinstance(decision.actions[0], FailAttempt)


def test_a_pr_tested_on_its_own_branch_is_not_retried() -> None:
    """Found by tests/test_machine_stateful.py (pr-branch, flaky_retries 1, a spurious red, a crash after the
    re-test's transaction: its entry was cancelled for a new head, the bot's own rebase). A re-test pushes the
    same commit to the attempt's ref, and the PR's branch holds it already: nothing is pushed, CI never runs
    again, so it could only time out. The PR fails on its red at once, as without retries."""
    running = (attempt(101, (1,), RED, strategy=Strategy.PR_BRANCH),)
    decision = decide(snap(*under_test(1), attempts=running, policy=QueuePolicy(flaky_retries=1)))
    assert decision.actions == (FailAttempt(101, (1,), Reason.CHECKS_FAILED, {**RED_DETAIL, "sha": cand(101)}),)


def test_a_timeout_is_not_retried() -> None:
    late = (replace(chain(((1,), PENDING))[0], deadline_at=NOW),)
    decision = decide(snap(*under_test(1), attempts=late, policy=replace(CHAIN4, flaky_retries=1)))
    assert decision.reason is Reason.CI_TIMEOUT
    assert isinstance(decision.actions[0], FailAttempt)


def test_a_red_batch_is_bisected_not_retried() -> None:
    running = chain(((1, 2), RED))
    decision = decide(snap(*under_test(1, 2), attempts=running, policy=replace(CHAIN4_BATCH2, flaky_retries=1)))
    assert decision.reason is Reason.BISECTED


# -- the chain changes under it -------------------------------------------------------------------------


def test_the_base_moved_outside_the_chain_rebuilds_all_of_it_without_penalty() -> None:
    running = chain(((1,), GREEN), ((2,), PENDING), ((3,), PENDING))
    decision = decide(snap(*under_test(1, 2, 3), attempts=running, policy=CHAIN4, base_tip=MOVED))
    assert decision.reason is Reason.BASE_MOVED
    assert decision.actions == tuple(
        AbandonAttempt(a, Reason.BASE_MOVED, (n,)) for a, n in ((101, 1), (102, 2), (103, 3))
    )


def test_a_member_cancelled_in_the_middle_rebuilds_its_attempt_and_those_behind_it() -> None:
    running = chain(((1,), GREEN), ((2, 3), PENDING), ((4,), PENDING))
    testing = (*under_test(1, 2, 4), entry(3, EntryState.TESTING, cancel_requested_by="alice"))
    decision = decide(snap(*testing, attempts=running, policy=CHAIN4_BATCH2))
    replaced = decision.actions[0]
    assert isinstance(replaced, ReplaceChain)
    assert replaced.attempt_ids == (102, 103)
    assert replaced.base_sha == cand(101) and replaced.parent_id == 101
    assert replaced.groups == (Group((2,)), Group((4,)))
    assert decision.actions[1] == CancelEntry(3, Reason.CANCELLED_BY_USER, {"by": "alice"})


def test_a_new_push_to_a_member_in_the_middle_cancels_it_and_rebuilds_behind() -> None:
    running = chain(((1,), PENDING), ((2,), PENDING), ((3,), PENDING))
    pushed = entry(2, EntryState.TESTING, pull=replace(entry(2).pull, head_sha="f" * 40))
    decision = decide(snap(*under_test(1, 3), pushed, attempts=running, policy=CHAIN4))
    replaced = decision.actions[0]
    assert isinstance(replaced, ReplaceChain) and replaced.attempt_ids == (102, 103)
    assert replaced.groups == (Group((3,)),)
    assert decision.actions[1].reason is Reason.HEAD_CHANGED  # type: ignore[union-attr]


def test_a_pr_leaving_from_behind_a_retest_still_building_waits_for_its_build() -> None:
    """Found by tests/test_machine_stateful.py (flaky_retries 1, a chain of two: the head red by a flake, its
    re-test opened with the attempt behind it re-parented to it, the process killed before the re-test's
    build; then the PR behind is cancelled). The attempt behind was rebuilt at once, on the base tip since its
    parent had no candidate yet, yet named as built on that parent: off the chain, and built again once the
    parent was. What is behind an attempt without a candidate is judged once that one is built."""
    running = chain(((1,), PENDING), ((2, 3), PENDING))
    retest = replace(running[0], id=103, state=AttemptState.BUILDING, candidate_sha=None, retries=1)
    behind = replace(running[1], parent_id=103)  # built on the commit the re-test builds again
    cancelled = entry(3, EntryState.TESTING, cancel_requested_by="alice")
    line = (*under_test(1, 2), cancelled)
    decision = decide(snap(*line, attempts=(retest, behind), policy=CHAIN4_BATCH2))
    assert decision.actions == (BuildCandidate(103),)
    # Built: the PR behind leaves, and what it was in is rebuilt on the re-test's candidate.
    built = replace(retest, state=AttemptState.TESTING, candidate_sha=cand(101))
    after = decide(snap(*line, attempts=(built, behind), policy=CHAIN4_BATCH2))
    assert after.actions == (
        ReplaceChain((102,), cand(101), 103, (Group((2,)),), Reason.CANCELLED_BY_USER),
        CancelEntry(3, Reason.CANCELLED_BY_USER, {"by": "alice"}),
    )


def test_an_urgent_entry_goes_to_the_front_and_the_chain_is_rebuilt_behind_it() -> None:
    running = chain(((1,), PENDING), ((2,), PENDING))
    urgent = entry(9, priority=100)
    policy = replace(CHAIN4, urgent_priority=100)
    decision = decide(snap(*under_test(1, 2), urgent, attempts=running, policy=policy))
    assert decision.reason is Reason.PREEMPTED
    assert decision.actions == (
        AbandonAttempt(101, Reason.PREEMPTED, (1,)),
        AbandonAttempt(102, Reason.PREEMPTED, (2,)),
    )
    # Back in line, the urgent one is first and the others follow it down the new chain.
    after = decide(snap(entry(1), entry(2, seconds=1), urgent, policy=policy))
    assert after.actions == (StartAttempt((9,), BASE, None),)


# -- the window -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "landed", "grown", "shrunk"),
    [
        (None, 1, 8, 4),  # starts at max_parallel (8): cannot grow past it, halves to 4
        (1, 1, 3, 2),  # a window below the floor (2) counts as the floor
        (3, 2, 5, 2),
        (8, 3, 8, 4),
    ],
)
def test_the_window_grows_by_one_per_landing_and_halves_after_a_failure(
    window: int | None, landed: int, grown: int, shrunk: int
) -> None:
    policy = QueuePolicy(max_parallel=8, window_floor=2)
    assert policy.grown(window, landed) == grown
    assert policy.shrunk(window) == shrunk


def test_the_starting_window_is_the_setting_else_max_parallel() -> None:
    assert QueuePolicy(max_parallel=6).depth(None) == 6
    assert QueuePolicy(max_parallel=6, window=2).depth(None) == 2
    assert QueuePolicy(max_parallel=6, window=2).depth(5) == 5
    with pytest.raises(ValueError, match="window"):
        QueuePolicy(max_parallel=2, window=3)
