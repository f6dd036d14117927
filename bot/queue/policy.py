"""How a train forms candidates, as a value the pure machine is handed (never flags threaded through it).

:class:`QueuePolicy` comes from the settings today (and from the repository's own file later); the gate puts
it in the snapshot. The functions here are the batch rules, pure like the machine that calls them:

- :func:`next_batch` — the head of the line starts an attempt of up to ``batch_max`` entries, in line order.
  An entry marked ``single`` (``/merge single``), or queued at or above the urgent priority, goes alone: it
  neither joins a batch nor takes others into its own. With fewer entries waiting than the batch could take,
  the batch waits up to ``batch_wait_seconds`` after the earliest of them was queued, for more to arrive;
  it never waits when it is full or when the next entry in line could not join it anyway.
- :func:`bisect_parts` — how a red batch is split: its first half tested PR by PR (as many parts as the CI
  budget allows), then its second half, order (so priority) kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the snapshot (bot.queue.model) carries a policy: the import goes that way at run time
    from bot.queue.model import EntryView


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How a train forms and chains candidates.

    ``max_parallel``: most attempts under test at once (the chain's depth can never exceed it); ``window``:
    the depth a train starts with (None: ``max_parallel``), which :meth:`grown` and :meth:`shrunk` move
    between ``window_floor`` and ``max_parallel`` (Zuul's rule). ``optimistic``: a green candidate lands the
    attempts before it even when they are pending or red (they were tested inside it). ``flaky_retries``: how
    often a PR red alone is tested again on the same candidate before it fails. ``adaptive``: the gate picks
    ``batch_max`` and the window from the train's own history (:mod:`bot.queue.adaptive`)."""

    batch_max: int = 1
    batch_wait_seconds: float = 0.0
    bisect: bool = True
    urgent_priority: int | None = None
    max_parallel: int = 1
    window: int | None = None
    window_floor: int = 1
    optimistic: bool = False
    flaky_retries: int = 0
    adaptive: bool = False

    def __post_init__(self) -> None:
        if self.batch_max < 1:
            raise ValueError(f"batch_max must be at least 1, not {self.batch_max}")
        if self.batch_wait_seconds < 0:
            raise ValueError(f"batch_wait_seconds must not be negative, not {self.batch_wait_seconds}")
        if self.max_parallel < 1:
            raise ValueError(f"max_parallel must be at least 1, not {self.max_parallel}")
        if not 1 <= self.window_floor <= self.max_parallel:
            raise ValueError(f"window_floor must be between 1 and max_parallel, not {self.window_floor}")
        if self.window is not None and not self.window_floor <= self.window <= self.max_parallel:
            raise ValueError(f"window must be between window_floor and max_parallel, not {self.window}")
        if self.flaky_retries < 0:
            raise ValueError(f"flaky_retries must not be negative, not {self.flaky_retries}")

    @property
    def start_window(self) -> int:
        """The depth a train speculates to before it has landed or failed anything."""
        return self.max_parallel if self.window is None else self.window

    def depth(self, window: int | None) -> int:
        """How many attempts the chain may hold now, given the train's current window (None: not yet moved)."""
        current = self.start_window if window is None else window
        return max(self.window_floor, min(self.max_parallel, current))

    def grown(self, window: int | None, landed: int = 1) -> int:
        """The window after ``landed`` attempts landed: one deeper for each, up to ``max_parallel``."""
        return min(self.max_parallel, self.depth(window) + max(0, landed))

    def shrunk(self, window: int | None) -> int:
        """The window after a failure: halved, never below ``window_floor``."""
        return max(self.window_floor, self.depth(window) // 2)

    @property
    def bisect_width(self) -> int:
        """Into how many parts a red batch's first half is cut (:func:`bisect_parts`): the CI budget
        (``max_parallel``), and at least two, as the last step of a bisection (two single PRs, both tested)
        has always taken."""
        return max(2, self.max_parallel)

    def alone(self, entry: EntryView) -> bool:
        """Whether this entry is tested in a batch of its own."""
        return entry.single or (self.urgent_priority is not None and entry.priority >= self.urgent_priority)


@dataclass(frozen=True, slots=True)
class Batch:
    """The entries the next attempt carries, in order, and when it may start (``None``: now)."""

    entries: tuple[EntryView, ...]
    wait_until: datetime | None = None

    @property
    def entry_ids(self) -> tuple[int, ...]:
        return tuple(entry.id for entry in self.entries)


def next_batch(
    line: Sequence[EntryView], policy: QueuePolicy, now: datetime, *, capacity: int | None = None
) -> Batch | None:
    """The batch the head of ``line`` (queued entries in test order) starts, or ``None`` for an empty line.

    ``capacity`` caps the batch below ``batch_max`` (a strategy that tests a PR's own branch carries one)."""
    if not line:
        return None
    head = line[0]
    limit = policy.batch_max if capacity is None else max(1, min(policy.batch_max, capacity))
    if limit == 1 or policy.alone(head):
        return Batch((head,))
    taken = [head]
    for entry in line[1:]:
        if len(taken) == limit or policy.alone(entry):
            return Batch(tuple(taken))  # full, or the next one cannot join: waiting would gain nothing
        taken.append(entry)
    if len(taken) == limit or policy.batch_wait_seconds <= 0:
        return Batch(tuple(taken))
    ready = min(entry.queued_at for entry in taken) + timedelta(seconds=policy.batch_wait_seconds)
    return Batch(tuple(taken), None if now >= ready else ready)


def bisect_parts(entry_ids: Sequence[int], width: int = 1) -> tuple[tuple[int, ...], ...]:
    """A red batch's parts, in order, each to be built on the one before: its first half (the larger one when
    odd) cut into parts of near equal size (the earlier ones larger), then its second half. At most ``width``
    of them are tested at once: the first half's parts, and the second half too when it is a single PR.

    With ``width`` 1 these are plain halves. The second half on top of the first is the very tree that
    failed (known red: no CI run, unless it is a single PR), so what is tested at once is the first half's
    parts: with ``width`` at least half the batch, each PR of the first half is tested on the ones before it,
    and one CI cycle finds a culprit there, where halving the first half again and again would take one cycle
    per halving, each waiting for the one before. A culprit in the second half is searched the same way once
    the first half has landed."""
    if len(entry_ids) < 2:
        raise ValueError("only a batch of two or more entries can be split")
    if width < 1:
        raise ValueError(f"a batch is split into at least one part before its second half, not {width}")
    middle = (len(entry_ids) + 1) // 2
    first, second = tuple(entry_ids[:middle]), tuple(entry_ids[middle:])
    count = max(1, min(width - (1 if len(second) == 1 else 0), len(first)))
    size, larger = divmod(len(first), count)
    parts: list[tuple[int, ...]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < larger else 0)
        parts.append(first[start:end])
        start = end
    return (*parts, second)
