"""The chain invariant catches what it is meant to: pure checks on made-up evidence (no bot, no forge)."""

from __future__ import annotations

from typing import Any

from tests.crash.invariants import ZERO_SHA, AttemptRow, broken_chains, overlapping_attempts

TIP, A, B, C = "t" * 40, "a" * 40, "b" * 40, "c" * 40


def row(id: int, parent: int | None, base: str, candidate: str | None, entries: tuple[int, ...]) -> AttemptRow:
    return AttemptRow(id, 1, parent, base, candidate, "testing", entries)


def test_a_chain_from_the_tip_is_kept() -> None:
    one, two = row(1, None, TIP, A, (1, 2)), row(2, 1, A, B, (3, 4))
    assert broken_chains([(one,), (one, two), (two,)], {1: one, 2: two}, {TIP}) == []


def test_two_roots_a_wrong_base_and_a_shared_entry_are_caught() -> None:
    one, stray = row(1, None, TIP, A, (1,)), row(2, None, TIP, B, (1,))
    found = broken_chains([(one, stray)], {1: one, 2: stray}, {TIP})
    assert any("2 chains" in v for v in found) and any("entry 1 in 2" in v for v in found)
    child = row(3, 1, TIP, C, (2,))  # says it sits on 1 but was built on the tip
    assert any("not built on the candidate of 1" in v for v in broken_chains([(one, child)], {}, {TIP}))
    assert any("never the base" in v for v in broken_chains([(row(4, None, C, A, (5,)),)], {}, {TIP}))


def push(seq: int, ref: str, before: str, after: str) -> dict[str, Any]:
    return {"kind": "push", "seq": seq, "repo": "o/r", "ref": ref, "before": before, "after": after}


def test_live_staging_branches_must_stack() -> None:
    reach = {("o/r", TIP): frozenset({TIP}), ("o/r", A): frozenset({TIP, A}), ("o/r", B): frozenset({TIP, A, B})}
    reach[("o/r", C)] = frozenset({TIP, C})
    log = [
        push(1, "refs/heads/main", ZERO_SHA, TIP),
        push(2, "refs/heads/merge-bot/main/1", ZERO_SHA, A),
        push(3, "refs/heads/merge-bot/main/2", ZERO_SHA, B),
    ]
    assert overlapping_attempts(log, most=4, reach=reach) == []
    assert overlapping_attempts(log) == ["o/r push #3 of main/2: 2 staging branches live at once"]  # serial
    forked = [*log[:2], push(3, "refs/heads/merge-bot/main/2", ZERO_SHA, C)]
    assert overlapping_attempts(forked, most=4, reach=reach) == [
        "o/r push #3 of main/2: main/2 (cccccccccc) does not sit on aaaaaaaaaa"
    ]


def test_a_retest_takes_the_red_attempts_place_in_the_chain() -> None:
    """Attempt 1 (A) is red and re-tested as attempt 4 on a fresh ref, the very same commit: the chain on the
    forge is 4, 2, 3 although 4 was made last; while the crash-left ref of 1 is live too, it is that one
    candidate, not a fifth. The database's chain sees the re-test, not rebuilt yet, as A's candidate."""
    reach = {("o/r", TIP): frozenset({TIP}), ("o/r", A): frozenset({TIP, A}), ("o/r", B): frozenset({TIP, A, B})}
    reach[("o/r", C)] = frozenset({TIP, A, B, C})
    log = [
        push(1, "refs/heads/main", ZERO_SHA, TIP),
        push(2, "refs/heads/merge-bot/main/1", ZERO_SHA, A),
        push(3, "refs/heads/merge-bot/main/2", ZERO_SHA, B),
        push(4, "refs/heads/merge-bot/main/3", ZERO_SHA, C),
        push(5, "refs/heads/merge-bot/main/4", ZERO_SHA, A),  # the old ref of 1 not deleted yet (a crash)
        push(6, "refs/heads/merge-bot/main/1", A, ZERO_SHA),
    ]
    assert overlapping_attempts(log, most=3, reach=reach, retried={4: 1}) == []
    assert overlapping_attempts(log, most=3, reach=reach) == [  # without knowing 4 re-tests 1
        "o/r push #5 of main/4: 4 staging branches live at once",
        "o/r push #5 of main/4: main/4 (aaaaaaaaaa) does not sit on aaaaaaaaaa",
    ]
    other = [*log[:4], push(5, "refs/heads/merge-bot/main/4", ZERO_SHA, C)]
    assert "o/r push #5 of main/4: re-test 4 is not the commit of attempt 1" in overlapping_attempts(
        other, most=3, reach=reach, retried={4: 1}
    )

    red = AttemptRow(1, 1, None, TIP, A, "abandoned", (1,))
    retest = AttemptRow(4, 1, None, TIP, None, "building", (1,), retry_of=1)
    two = row(2, 4, A, B, (2,))  # built on A, adopted by the re-test
    three = row(3, 2, B, C, (3,))
    every = {1: red, 2: two, 3: three, 4: retest}
    assert broken_chains([(two, three, retest)], every, {TIP}) == []
    building = AttemptRow(4, 1, None, TIP, None, "building", (1,))  # not a re-test: nothing is built on it yet
    found = broken_chains([(two, three, building)], {**every, 4: building}, {TIP})
    assert found == ["train 1, active attempts [2, 3, 4]: attempt 2 not built on the candidate of 4"]
