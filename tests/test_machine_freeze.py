"""Freezes and pauses in the machine (bot/queue/machine.py): holds are data in the snapshot, the machine decides.

A frozen train never lands (green candidates wait; PRs are still queued and tested); a paused train never
starts an attempt (running ones finish, or with ``cancel_running`` are abandoned, entries back in line); a hold
whose ``until`` has passed counts for nothing. Pure: the snapshot helpers are the batch tests'."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.queue.machine import (
    AbandonAttempt,
    Decision,
    FinishMerged,
    MergeAttempt,
    ReplaceChain,
    StartAttempt,
    WaitUntil,
    decide,
)
from bot.queue.model import AttemptState, Hold, HoldKind, Reason, TrainSnapshot
from bot.queue.policy import QueuePolicy
from tests.test_machine_batches import BASE, GREEN, MOVED, NOW, PENDING, RED, T0, cand, chain, entry, snap, under_test

SERIAL = QueuePolicy(batch_max=1, max_parallel=1)
CHAIN3 = QueuePolicy(batch_max=1, max_parallel=3)
LATER = NOW + timedelta(hours=2)
FREEZE = Hold(HoldKind.FREEZE, "release 4.2", by="alice", scope="repository")
FREEZE_UNTIL = replace(FREEZE, until=LATER)
PAUSE = Hold(HoldKind.PAUSE, "CI maintenance", by="bob")
PAUSE_CANCEL = replace(PAUSE, cancel_running=True)
PAUSE_UNTIL = replace(PAUSE, until=LATER)


def detail(hold: Hold, **more: object) -> dict[str, object]:
    until = hold.until.isoformat() if hold.until is not None else None
    return {"reason": hold.reason, "by": hold.by, "scope": hold.scope, "until": until, **more}


GREEN_ONE = (*under_test(1), entry(2))
MERGING_ONE = replace(chain(((1,), GREEN))[0], state=AttemptState.MERGING)
CASES: list[tuple[str, TrainSnapshot, Decision]] = [
    (
        "frozen: a green candidate waits instead of landing",
        snap(*under_test(1), attempts=chain(((1,), GREEN)), policy=SERIAL, holds=(FREEZE,)),
        Decision((WaitUntil(),), Reason.FROZEN, detail(FREEZE, green=[101])),
    ),
    (
        "frozen until a time: the wait ends when the freeze lifts",
        snap(*under_test(1), attempts=chain(((1,), GREEN)), policy=SERIAL, holds=(FREEZE_UNTIL,)),
        Decision((WaitUntil(LATER),), Reason.FROZEN, detail(FREEZE_UNTIL, green=[101])),
    ),
    (
        "a freeze whose end time passed counts for nothing: the green candidate lands",
        snap(*under_test(1), attempts=chain(((1,), GREEN)), policy=SERIAL, holds=(FREEZE_UNTIL,), now=LATER),
        Decision((MergeAttempt(101, BASE, cand(101)),), Reason.CHECKS_PASSED),
    ),
    (
        "frozen: the queue is still tested (an empty train starts an attempt)",
        snap(entry(1), policy=SERIAL, holds=(FREEZE,)),
        Decision((StartAttempt((1,), BASE),), Reason.STARTED),
    ),
    (
        "frozen: the chain grows behind the green candidate that waits",
        snap(*GREEN_ONE, attempts=chain(((1,), GREEN)), policy=CHAIN3, holds=(FREEZE,)),
        Decision((StartAttempt((2,), cand(101), 101),), Reason.STARTED),
    ),
    (
        "frozen: a red candidate still fails (only landing stops)",
        snap(*under_test(1), attempts=chain(((1,), RED)), policy=replace(SERIAL, flaky_retries=0), holds=(FREEZE,)),
        decide(snap(*under_test(1), attempts=chain(((1,), RED)), policy=replace(SERIAL, flaky_retries=0))),
    ),
    (
        "frozen: pending checks wait as usual",
        snap(*under_test(1), attempts=chain(((1,), PENDING)), policy=SERIAL, holds=(FREEZE,)),
        decide(snap(*under_test(1), attempts=chain(((1,), PENDING)), policy=SERIAL)),
    ),
    (
        "frozen: a merge being retried (state merging) is not retried",
        snap(
            *under_test(1),
            attempts=(replace(chain(((1,), GREEN))[0], state=AttemptState.MERGING),),
            policy=SERIAL,
            holds=(FREEZE,),
        ),
        Decision((WaitUntil(),), Reason.FROZEN, detail(FREEZE, green=[101])),
    ),
    (
        "frozen: a candidate already in the base finishes its bookkeeping",
        snap(
            *under_test(1),
            attempts=(replace(chain(((1,), GREEN))[0], state=AttemptState.MERGING, landed=True),),
            policy=SERIAL,
            holds=(FREEZE,),
            base_tip=cand(101),
        ),
        Decision((FinishMerged(101, (1,), cand(101)),), Reason.MERGED),
    ),
    (
        "frozen: the base moved under a green candidate: rebuilt, not landed",
        snap(*under_test(1), attempts=chain(((1,), GREEN)), policy=SERIAL, holds=(FREEZE,), base_tip=MOVED),
        Decision(
            (AbandonAttempt(101, Reason.BASE_MOVED, (1,)),),
            Reason.BASE_MOVED,
            {"built_on": BASE, "base_now": MOVED},
        ),
    ),
    (
        "optimistic and frozen: the deepest green candidate does not land the chain either",
        snap(
            *under_test(1, 2),
            attempts=chain(((1,), PENDING), ((2,), GREEN)),
            policy=replace(CHAIN3, optimistic=True),
            holds=(FREEZE,),
        ),
        Decision((WaitUntil(),), Reason.FROZEN, detail(FREEZE, green=[102])),
    ),
    (
        "paused: the head of the line does not start",
        snap(entry(1), policy=SERIAL, holds=(PAUSE,)),
        Decision((WaitUntil(),), Reason.PAUSED, detail(PAUSE)),
    ),
    (
        "paused until a time: the wait ends when the pause lifts",
        snap(entry(1), policy=SERIAL, holds=(PAUSE_UNTIL,)),
        Decision((WaitUntil(LATER),), Reason.PAUSED, detail(PAUSE_UNTIL)),
    ),
    (
        "a pause whose end time passed counts for nothing",
        snap(entry(1), policy=SERIAL, holds=(PAUSE_UNTIL,), now=LATER + timedelta(seconds=1)),
        Decision((StartAttempt((1,), BASE),), Reason.STARTED),
    ),
    (
        "paused with nothing in line: idle",
        snap(policy=SERIAL, holds=(PAUSE,)),
        Decision((WaitUntil(),), Reason.IDLE),
    ),
    (
        "paused: a running candidate finishes and lands",
        snap(*GREEN_ONE, attempts=chain(((1,), GREEN)), policy=SERIAL, holds=(PAUSE,)),
        Decision((MergeAttempt(101, BASE, cand(101)),), Reason.CHECKS_PASSED),
    ),
    (
        "paused: after a landing, the next candidate is not started with the bookkeeping",
        snap(
            *GREEN_ONE,
            attempts=(replace(chain(((1,), GREEN))[0], state=AttemptState.MERGING, landed=True),),
            policy=SERIAL,
            holds=(PAUSE,),
            base_tip=cand(101),
        ),
        Decision((FinishMerged(101, (1,), cand(101)),), Reason.MERGED),
    ),
    (
        "paused: the chain does not grow while its candidates are under test",
        snap(*GREEN_ONE, attempts=chain(((1,), PENDING)), policy=CHAIN3, holds=(PAUSE,)),
        Decision((WaitUntil(T0 + timedelta(hours=1)),), Reason.PAUSED, detail(PAUSE)),
    ),
    (
        "paused: a red batch is still bisected (the same work, not new work)",
        snap(*under_test(1, 2), attempts=chain(((1, 2), RED)), policy=QueuePolicy(batch_max=2), holds=(PAUSE,)),
        decide(snap(*under_test(1, 2), attempts=chain(((1, 2), RED)), policy=QueuePolicy(batch_max=2))),
    ),
    (
        "paused with cancel: every running attempt is abandoned (from the chain's end), its entries back in line",
        snap(*under_test(1, 2), attempts=chain(((1,), PENDING), ((2,), GREEN)), policy=CHAIN3, holds=(PAUSE_CANCEL,)),
        Decision(
            (AbandonAttempt(102, Reason.PAUSED, (2,)), AbandonAttempt(101, Reason.PAUSED, (1,))),
            Reason.PAUSED,
            detail(PAUSE_CANCEL),
        ),
    ),
    (
        "paused with cancel: an attempt being merged is not abandoned, those behind it are",
        snap(
            *under_test(1, 2),
            attempts=(MERGING_ONE, chain(((1,), GREEN), ((2,), PENDING))[1]),
            policy=CHAIN3,
            holds=(PAUSE_CANCEL,),
        ),
        Decision((AbandonAttempt(102, Reason.PAUSED, (2,)),), Reason.PAUSED, detail(PAUSE_CANCEL)),
    ),
    (
        "paused with cancel and nothing running: the line waits",
        snap(entry(1), policy=SERIAL, holds=(PAUSE_CANCEL,)),
        Decision((WaitUntil(),), Reason.PAUSED, detail(PAUSE_CANCEL)),
    ),
    (
        "frozen and paused: nothing starts and nothing lands",
        snap(*GREEN_ONE, attempts=chain(((1,), GREEN)), policy=CHAIN3, holds=(FREEZE, PAUSE)),
        Decision((WaitUntil(),), Reason.PAUSED, detail(PAUSE)),
    ),
]


@pytest.mark.parametrize(("name", "snapshot", "expected"), CASES, ids=[case[0] for case in CASES])
def test_holds(name: str, snapshot: TrainSnapshot, expected: Decision) -> None:
    assert decide(snapshot) == expected


def test_a_freeze_never_lands_whatever_the_chain() -> None:
    """Over every mix of green, red and pending candidates, with and without the optimistic policy, a frozen
    train's decision holds no merge; and without the freeze the same snapshots do land sometimes."""
    landed_unfrozen = 0
    mixes = [(a, b) for a in (GREEN, RED, PENDING) for b in (GREEN, RED, PENDING)]
    for optimistic in (False, True):
        for first, second in mixes:
            snapshot = snap(
                *under_test(1, 2),
                entry(3),
                attempts=chain(((1,), first), ((2,), second)),
                policy=replace(CHAIN3, optimistic=optimistic),
            )
            frozen = decide(replace(snapshot, holds=(FREEZE,)))
            assert not any(isinstance(action, MergeAttempt) for action in frozen.actions), (first, second)
            landed_unfrozen += any(isinstance(action, MergeAttempt) for action in decide(snapshot).actions)
    assert landed_unfrozen


def test_a_pause_never_starts_whatever_the_line() -> None:
    for policy in (SERIAL, CHAIN3, QueuePolicy(batch_max=4, max_parallel=2)):
        for attempts in ((), chain(((1,), PENDING)), chain(((1,), GREEN))):
            carried = under_test(1) if attempts else ()
            snapshot = snap(*carried, entry(2), entry(3), attempts=attempts, policy=policy, holds=(PAUSE,))
            decision = decide(snapshot)
            assert not any(isinstance(a, (StartAttempt, ReplaceChain)) for a in decision.actions), decision
