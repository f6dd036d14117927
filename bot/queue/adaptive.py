"""A window that learns: the batch size and chain depth a train is worked with, chosen from its own history.

Pure, like the machine: a plain history value in (:class:`History`, read by :func:`bot.db.history.train_history`),
an :class:`Estimate` of how often entries are bad and checks flaky, and the :class:`Choice` that drains the
waiting backlog fastest in the model below. No I/O, no clock.

**The estimate.** ``p`` is the share of recent final entries that were genuinely bad: failed as the culprit
(reason ``checks_failed`` or ``ci_timeout``) against merged; entries cancelled or failed for another reason
(a conflict, nothing to add, a refused merge) say nothing about CI and are left out. Each check context's
flake rate is the share of its recent candidate runs whose failure turned out flaky. Only the newest
:data:`HISTORY_WINDOW` outcomes (and runs per context) count, so the estimate follows a change in the code
base. Both rates are Beta posterior means, ``(k + alpha) / (n + alpha + beta)``: with no history ``p`` is
the prior's 10 % (Beta(1, 9), worth 10 entries) and a context's flake rate 1 % (Beta(0.1, 9.9), worth 10
runs); the prior fades as history comes in. A context never seen has no rate at all: it cannot fail
anything we know of.

**The model** (CI cycles: the time one candidate takes to test; all cycles equal):

- A batch of ``b`` is red with ``f_b = 1 - (1-p)^b · (1-q)``: red when any of its entries is bad, or a flake
  hits the run (``q = 1 - Π_c (1 - flake_c)``, the chance some context flakes on one run).
- A chain of depth ``d`` tests ``d`` batches at once, each on the one before; the longest green prefix lands.
  With ``s = 1 - f_b`` it lands ``L = Σ_{k=1..d} s^k`` batches per cycle on average, and holds a red batch
  with probability ``1 - s^d``.
- A red batch holds ``k_b = max(1, b·p/f_b)`` culprits on average (a flaky one is searched like one
  culprit). Bisecting it finds each in :func:`search` ``(b).cycles`` more cycles and ``(b).runs`` CI runs:
  the expectation, over where the culprit sits, of the machine's own split
  (:func:`~bot.queue.policy.bisect_parts`, its first half tested PR by PR as far as ``bisect_width`` allows;
  with plain halves the cycles are Mergify's ``⌈log2 b⌉`` for a power of two). So it takes
  ``c_b = cycles · k_b`` cycles and ``r_b = runs · k_b`` runs (0 for one PR, which simply fails), after which
  all its entries are settled (merged or failed).
- A *round* is one cycle plus, when the chain held a red batch, its bisection. Per round, on average:
  batches settled ``E_B = L + (1 - s^d)``, cycles ``E_C = 1 + (1 - s^d)·c_b``, CI runs
  ``E_R = d + (1 - s^d)·r_b``, and PRs merged ``E_M = b·L + (1 - s^d)·(b - b·p/f_b)`` (``b·p/f_b``: the
  bad entries in a red batch, on average).
- A backlog of ``n`` forms ``B = ⌈n/b⌉`` batches (a batch never takes more than are waiting: ``b ≤ n``), so
  the chain is at most ``D = min(d, B)`` deep. Drain time ``T = B · E_C / E_B`` cycles, CI runs per merged PR
  ``E_R / E_M``, both with ``D`` for ``d``. Serial (``b = d = 1``) takes ``T = n``; at ``p = q = 0``
  ``T = B/D`` and a PR costs ``1/b`` runs.

:func:`choose` tries every batch size from 1 to ``policy.batch_max`` (the operator's ceiling, which already
holds the strategy's limit: adaptive never batches more than was allowed) and every depth from
``window_floor`` to ``max_parallel`` (the CI budget: that many runs at once), and keeps the least drain time;
ties go to fewer CI runs per merged PR, then to smaller batches, then to the deeper window (free in the model:
a chain is never deeper than the batches waiting, and a deeper window leaves room for what arrives).

**Where it is wrong.** Entries are taken as independently bad with one rate, and a bad entry as always making
its batch red: two good PRs that break each other, or a PR red only on top of another, are not modelled.
A search per culprit, one after the other, is rough: searches share cycles when the culprits sit in one half,
and cost more when a half sent back in line is tested again. (With the flat ``⌈log2 b⌉`` of Mergify's
calculator the model would batch 15 PRs at ``p`` = 80 %, a red batch of 15 settling in 4 cycles.) Nothing
else is tested while a batch is bisected (the chain behind it starts over). The backlog is fixed while it
drains (no arrivals), the last, short batch counts as a full one, and the window rule (one deeper per
landing, halved per failure) is left out: the chosen window is where the train starts, the rule moves it
from there. ``p`` counts a PR failed by a flake that outlived its re-tests as bad. Runs per context come
from the latest status of each candidate, so a candidate tested again on the same commit counts once.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from bot.queue.model import EntryState, Reason
from bot.queue.policy import QueuePolicy, bisect_parts

HISTORY_WINDOW = 50  # the newest outcomes (and runs per context) that count
BAD_PRIOR = (1.0, 9.0)  # Beta(alpha, beta) for p: 10 % with no history, worth 10 entries
FLAKE_PRIOR = (0.1, 9.9)  # Beta(alpha, beta) for a context's flake rate: 1 % with no history, worth 10 runs
CULPRIT_REASONS = frozenset({Reason.CHECKS_FAILED, Reason.CI_TIMEOUT})  # a failed entry's reason that makes it bad


class Outcome(enum.StrEnum):
    """A final entry as the estimate counts it."""

    MERGED = "merged"
    CULPRIT = "culprit"  # failed because its checks were red (or never reported)


def outcome_of(state: str, reason: str | None) -> Outcome | None:
    """How a final entry counts: merged, failed as the culprit, or (None) not at all."""
    if state == EntryState.MERGED:
        return Outcome.MERGED
    if state == EntryState.FAILED and reason in CULPRIT_REASONS:
        return Outcome.CULPRIT
    return None


@dataclass(frozen=True, slots=True)
class Run:
    """One candidate's final result on one check context; ``flaky``: it was red and found to be flaky."""

    context: str
    flaky: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """A train's recent record, newest first: its counted final entries and its candidates' runs."""

    outcomes: tuple[Outcome, ...] = ()
    runs: tuple[Run, ...] = ()


@dataclass(frozen=True, slots=True)
class Estimate:
    """``p``: the rate of bad entries, from ``entries`` counted outcomes; ``flakes``: each context's flake
    rate per run, from ``runs[context]`` runs."""

    p: float
    entries: int = 0
    flakes: Mapping[str, float] = field(default_factory=dict)
    runs: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rates = [self.p, *self.flakes.values()]
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError(f"rates must be between 0 and 1, not {rates}")

    @property
    def flake(self) -> float:
        """``q``: the chance that one run is red from a flake on some context, ``1 - Π_c (1 - flake_c)``."""
        return 1.0 - math.prod(1.0 - rate for rate in self.flakes.values())


def estimate(history: History, window: int = HISTORY_WINDOW) -> Estimate:
    """The rates from the newest ``window`` outcomes (and runs per context), smoothed by the priors."""
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    counted = history.outcomes[:window]
    bad = sum(1 for outcome in counted if outcome is Outcome.CULPRIT)
    runs: dict[str, int] = {}
    flaky: dict[str, int] = {}
    for run in history.runs:
        if runs.get(run.context, 0) < window:
            runs[run.context] = runs.get(run.context, 0) + 1
            flaky[run.context] = flaky.get(run.context, 0) + run.flaky
    return Estimate(
        p=_posterior(bad, len(counted), BAD_PRIOR),
        entries=len(counted),
        flakes={context: _posterior(flaky[context], n, FLAKE_PRIOR) for context, n in sorted(runs.items())},
        runs=dict(sorted(runs.items())),
    )


def _posterior(hits: int, n: int, prior: tuple[float, float]) -> float:
    alpha, beta = prior
    return (hits + alpha) / (n + alpha + beta)


# -- the closed forms ---------------------------------------------------------------------------------------


def batch_failure(p: float, batch: int, flake: float = 0.0) -> float:
    """``f_b = 1 - (1-p)^b · (1-q)``: the chance a batch of ``batch`` entries is red."""
    return 1.0 - (1.0 - p) ** batch * (1.0 - flake)


def landed_per_cycle(failure: float, depth: int) -> float:
    """``L = Σ_{k=1..d} (1-f)^k``: batches a chain of ``depth`` lands per cycle, each red with ``failure``."""
    green = 1.0 - failure
    return sum(green**k for k in range(1, depth + 1))


@dataclass(frozen=True, slots=True)
class Search:
    """What finding one culprit in a red batch costs on average: CI ``cycles`` (each waits for the one
    before) and CI ``runs`` (several parts are tested at once in a cycle)."""

    cycles: float
    runs: float


@functools.cache
def search(batch: int, width: int = 2) -> Search:
    """The cost of finding one culprit, equally likely anywhere, in a red batch of ``batch`` entries split as
    the machine splits it (:func:`~bot.queue.policy.bisect_parts` with ``width``). Per cycle every part is
    tested but a known-red one of several PRs (the second half on the first is the tree that failed); a
    culprit in a part of several PRs is searched in that part the same way, one in the second half once the
    first half has landed. A single PR costs nothing: it simply fails."""
    if batch < 1:
        raise ValueError(f"a batch holds at least one entry, not {batch}")
    if batch == 1:
        return Search(0.0, 0.0)
    parts = bisect_parts(range(batch), width)
    tested = len(parts) - 1 + (1 if len(parts[-1]) == 1 else 0)
    cycles, runs = 1.0, float(tested)
    for part in parts:
        inner = search(len(part), width)
        share = len(part) / batch
        cycles += share * inner.cycles
        runs += share * inner.runs
    return Search(cycles, runs)


def search_cycles(batch: int, width: int = 2) -> float:
    """The extra cycles that find one culprit in a red batch of ``batch`` (0 for a single PR): with plain halves
    (``width`` 1) ``log2 b`` for a power of two (Mergify's calculator), fewer when the first half is tested PR
    by PR."""
    return search(batch, width).cycles


def bad_in_red(p: float, batch: int, flake: float = 0.0) -> float:
    """``b·p / f_b``: the bad entries a red batch holds on average (every bad entry makes its batch red)."""
    failure = batch_failure(p, batch, flake)
    return batch * p / failure if failure > 0 else 0.0


def bisection_cycles(p: float, batch: int, flake: float = 0.0, width: int = 2) -> float:
    """``c_b = search cycles · max(1, b·p/f_b)``: the extra cycles that settle a red batch."""
    return search(batch, width).cycles * max(1.0, bad_in_red(p, batch, flake))


def bisection_runs(p: float, batch: int, flake: float = 0.0, width: int = 2) -> float:
    """``r_b = search runs · max(1, b·p/f_b)``: the extra CI runs that settle a red batch."""
    return search(batch, width).runs * max(1.0, bad_in_red(p, batch, flake))


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the model expects for one (batch, depth) on a backlog: ``batch`` and ``depth`` as they can
    really be (never more than are waiting), cycles to drain it, CI runs per merged PR."""

    batch: int
    depth: int
    cycles: float
    runs_per_merge: float


def forecast(backlog: int, p: float, batch: int, depth: int, flake: float = 0.0, width: int = 2) -> Forecast:
    """Drain time and CI runs per merged PR for ``backlog`` entries (see the module docstring); ``width``: the
    policy's ``bisect_width``."""
    if batch < 1 or depth < 1:
        raise ValueError(f"batch and depth must be at least 1, not {batch} and {depth}")
    if backlog <= 0:
        return Forecast(batch, depth, 0.0, 0.0)
    b = min(batch, backlog)
    d = min(depth, math.ceil(backlog / b))
    failure = batch_failure(p, b, flake)
    landed = landed_per_cycle(failure, d)
    red = 1.0 - (1.0 - failure) ** d
    cycles = math.ceil(backlog / b) * (1.0 + red * bisection_cycles(p, b, flake, width)) / (landed + red)
    merged = b * landed + red * (b - bad_in_red(p, b, flake))
    runs = d + red * bisection_runs(p, b, flake, width)
    return Forecast(b, d, cycles, runs / merged if merged > 0 else math.inf)


def drain_cycles(backlog: int, p: float, batch: int, depth: int, flake: float = 0.0, width: int = 2) -> float:
    """``T = ⌈n/b⌉ · E_C / E_B``: expected CI cycles until ``backlog`` entries are all settled."""
    return forecast(backlog, p, batch, depth, flake, width).cycles


def runs_per_merge(backlog: int, p: float, batch: int, depth: int, flake: float = 0.0, width: int = 2) -> float:
    """``E_R / E_M``: expected CI runs per merged PR (``inf`` when nothing would merge)."""
    return forecast(backlog, p, batch, depth, flake, width).runs_per_merge


# -- the choice -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """The batch size and window to work the train with, what the model expects of them, and why, in words."""

    batch: int
    window: int
    cycles: float
    runs_per_merge: float
    reason: str


def options(policy: QueuePolicy) -> Iterator[tuple[int, int]]:
    """Every (batch, depth) the choice may take: batches up to ``batch_max``, depths within the window's bounds."""
    for batch in range(1, policy.batch_max + 1):
        for depth in range(policy.window_floor, policy.max_parallel + 1):
            yield batch, depth


def choose(backlog: int, estimate: Estimate, policy: QueuePolicy) -> Choice:
    """The option that drains ``backlog`` waiting entries in the fewest expected cycles (ties: fewer CI runs per
    merged PR, then smaller batches, then the deeper window). With nothing waiting, the choice for one entry.

    Call it with the policy as configured, not one a choice was applied to: ``batch_max`` is its ceiling."""
    n = max(1, backlog)
    q = estimate.flake

    def rank(option: tuple[int, int]) -> tuple[float, float, int, int]:
        seen = forecast(n, estimate.p, *option, q, policy.bisect_width)
        return round(seen.cycles, 9), round(seen.runs_per_merge, 9), seen.batch, -option[1]

    batch, depth = min(options(policy), key=rank)
    seen = forecast(n, estimate.p, batch, depth, q, policy.bisect_width)
    return Choice(
        seen.batch, depth, seen.cycles, seen.runs_per_merge, _reason(backlog, estimate, seen.batch, depth, seen)
    )


def adapt(policy: QueuePolicy, choice: Choice) -> QueuePolicy:
    """The policy with the choice's ``batch_max`` and ``window`` (kept within its bounds); unchanged when the
    policy is not adaptive."""
    if not policy.adaptive:
        return policy
    batch = max(1, min(policy.batch_max, choice.batch))
    window = max(policy.window_floor, min(policy.max_parallel, choice.window))
    return dataclasses.replace(policy, batch_max=batch, window=window)


def _reason(backlog: int, estimate: Estimate, batch: int, depth: int, seen: Forecast) -> str:
    if estimate.entries:
        basis = f"p≈{_percent(estimate.p)} from {estimate.entries} recent {_plural(estimate.entries, 'entry')}"
    else:
        basis = f"p≈{_percent(estimate.p)}, assumed (no history yet)"
    if estimate.runs and estimate.flake >= 0.005:
        basis += f", a run flaky {_percent(estimate.flake)} of the time"
    batches = "PRs one by one" if batch == 1 else f"batches of {batch}"
    cycles = max(1, round(seen.cycles))
    waiting = f"{backlog} waiting" if backlog else "the next to arrive"
    return f"{basis}: {batches}, chain {depth} deep, about {cycles} CI {_plural(cycles, 'cycle')} for {waiting}"


def _percent(rate: float) -> str:
    percent = rate * 100
    return f"{percent:.0f} %" if percent >= 1 or percent == 0 else f"{percent:.1f} %"


def _plural(count: int, word: str) -> str:
    if count == 1:
        return word
    return word[:-1] + "ies" if word.endswith("y") else word + "s"
