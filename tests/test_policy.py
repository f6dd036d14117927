"""Batch rules (bot/queue/policy.py), row by row. Pure: queued entries and a time in, the next batch out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.queue.model import EntryState, EntryView, PullView
from bot.queue.policy import Batch, QueuePolicy, bisect_parts, next_batch

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def entry(n: int, *, seconds: int = 0, priority: int = 0, single: bool = False) -> EntryView:
    head = f"{n:x}".rjust(40, "a")
    return EntryView(
        id=n,
        pull=PullView(number=n, head_sha=head),
        state=EntryState.QUEUED,
        approved_sha=head,
        queued_at=T0 + timedelta(seconds=seconds),
        priority=priority,
        single=single,
    )


def ids(batch: Batch | None) -> tuple[int, ...]:
    assert batch is not None
    return batch.entry_ids


LINE = [entry(n, seconds=n) for n in range(1, 7)]


def test_an_empty_line_starts_nothing() -> None:
    assert next_batch([], QueuePolicy(batch_max=4), T0) is None


@pytest.mark.parametrize(
    ("batch_max", "expected"),
    [(1, (1,)), (2, (1, 2)), (4, (1, 2, 3, 4)), (6, (1, 2, 3, 4, 5, 6))],
)
def test_the_head_takes_up_to_batch_max_in_line_order(batch_max: int, expected: tuple[int, ...]) -> None:
    batch = next_batch(LINE, QueuePolicy(batch_max=batch_max, batch_wait_seconds=60), T0)
    assert ids(batch) == expected
    assert batch is not None and batch.wait_until is None  # a full batch never waits


def test_a_short_line_waits_for_more_from_the_earliest_arrival() -> None:
    line = [entry(1, seconds=10), entry(2, seconds=5)]  # priority order, not arrival order
    policy = QueuePolicy(batch_max=4, batch_wait_seconds=30)
    batch = next_batch(line, policy, T0 + timedelta(seconds=20))
    assert ids(batch) == (1, 2)
    assert batch is not None and batch.wait_until == T0 + timedelta(seconds=35)
    later = next_batch(line, policy, T0 + timedelta(seconds=35))
    assert later is not None and later.wait_until is None


def test_without_a_wait_a_short_line_starts_at_once() -> None:
    batch = next_batch(LINE[:2], QueuePolicy(batch_max=4), T0)
    assert ids(batch) == (1, 2)
    assert batch is not None and batch.wait_until is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ([entry(1, single=True), entry(2), entry(3)], (1,)),  # a single head goes alone
        ([entry(1), entry(2), entry(3, single=True), entry(4)], (1, 2)),  # the batch stops before it
        ([entry(1, priority=100), entry(2), entry(3)], (1,)),  # urgent: alone
        ([entry(1), entry(2, priority=100)], (1,)),  # never pulled into a batch
    ],
)
def test_single_and_urgent_entries_go_alone(line: list[EntryView], expected: tuple[int, ...]) -> None:
    batch = next_batch(line, QueuePolicy(batch_max=4, batch_wait_seconds=60, urgent_priority=100), T0)
    assert ids(batch) == expected
    assert batch is not None and batch.wait_until is None  # nothing would join: no point waiting


def test_priorities_below_the_urgent_threshold_batch_as_usual() -> None:
    line = [entry(1, priority=99), entry(2, priority=50)]
    batch = next_batch(line, QueuePolicy(batch_max=4, batch_wait_seconds=60, urgent_priority=100), T0)
    assert ids(batch) == (1, 2)
    assert batch is not None and batch.wait_until == T0 + timedelta(seconds=60)


def test_capacity_caps_the_batch() -> None:
    """A strategy that tests the PR's own branch carries one entry whatever batch_max says."""
    batch = next_batch(LINE, QueuePolicy(batch_max=4, batch_wait_seconds=60), T0, capacity=1)
    assert ids(batch) == (1,)
    assert batch is not None and batch.wait_until is None


@pytest.mark.parametrize(
    ("entries", "first", "second"),
    [
        ((1, 2), (1,), (2,)),
        ((1, 2, 3), (1, 2), (3,)),
        ((1, 2, 3, 4), (1, 2), (3, 4)),
        ((5, 3, 9, 1, 7), (5, 3, 9), (1, 7)),  # order kept, whatever the ids
    ],
)
def test_width_one_splits_in_halves_keeping_the_order(
    entries: tuple[int, ...], first: tuple[int, ...], second: tuple[int, ...]
) -> None:
    assert bisect_parts(entries) == (first, second)


@pytest.mark.parametrize(
    ("entries", "width", "parts"),
    [
        ((1, 2, 3, 4), 2, ((1,), (2,), (3, 4))),  # the first half PR by PR, the known-red second half on top
        ((1, 2, 3, 4), 8, ((1,), (2,), (3, 4))),
        ((1, 2, 3), 2, ((1, 2), (3,))),  # the single second half is tested too: two at once, as the width says
        ((1, 2, 3), 4, ((1,), (2,), (3,))),
        ((1, 2, 3, 4, 5, 6, 7, 8), 2, ((1, 2), (3, 4), (5, 6, 7, 8))),
        ((1, 2, 3, 4, 5, 6, 7, 8), 4, ((1,), (2,), (3,), (4,), (5, 6, 7, 8))),
        ((1, 2, 3, 4, 5, 6, 7, 8, 9), 2, ((1, 2, 3), (4, 5), (6, 7, 8, 9))),  # the earlier parts larger
        ((9, 4, 7, 1), 2, ((9,), (4,), (7, 1))),  # order kept, whatever the ids
    ],
)
def test_a_wider_split_tests_the_first_half_in_parts(
    entries: tuple[int, ...], width: int, parts: tuple[tuple[int, ...], ...]
) -> None:
    assert bisect_parts(entries, width) == parts


@given(st.lists(st.integers(), min_size=2, max_size=40, unique=True), st.integers(min_value=1, max_value=16))
def test_every_split_keeps_every_entry_once_in_order_within_the_width(entries: list[int], width: int) -> None:
    parts = bisect_parts(entries, width)
    assert [e for part in parts for e in part] == entries
    assert all(parts) and len(parts) >= 2
    assert len(parts[-1]) == len(entries) // 2  # the second half stays whole: on the first, it is the red tree
    tested = len(parts) - 1 + (1 if len(parts[-1]) == 1 else 0)  # the second half is tested when it is one PR
    assert tested <= max(width, 2)
    assert max(map(len, parts[:-1])) - min(map(len, parts[:-1])) <= 1


def test_the_split_width_is_the_ci_budget_and_at_least_two() -> None:
    assert QueuePolicy(max_parallel=1).bisect_width == 2
    assert QueuePolicy(max_parallel=6).bisect_width == 6


@pytest.mark.parametrize("width", [0, -1])
def test_a_split_needs_a_width(width: int) -> None:
    with pytest.raises(ValueError, match="at least one part"):
        bisect_parts((1, 2), width)


def test_one_entry_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="two or more"):
        bisect_parts((1,))


@pytest.mark.parametrize("bad", [{"batch_max": 0}, {"batch_wait_seconds": -1}])
def test_a_bad_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        QueuePolicy(**bad)  # type: ignore[arg-type]
