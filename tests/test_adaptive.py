"""The adaptive choice (bot/queue/adaptive.py): the estimate from a history, the model's closed forms against
values worked out by hand, and the choice of batch size and window that the model says drains fastest."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.queue.adaptive import (
    HISTORY_WINDOW,
    Choice,
    Estimate,
    History,
    Outcome,
    Run,
    Search,
    adapt,
    bad_in_red,
    batch_failure,
    bisection_cycles,
    bisection_runs,
    choose,
    drain_cycles,
    estimate,
    forecast,
    landed_per_cycle,
    options,
    outcome_of,
    runs_per_merge,
    search,
    search_cycles,
)
from bot.queue.policy import QueuePolicy

MERGED, CULPRIT = Outcome.MERGED, Outcome.CULPRIT

# -- the estimate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        ("merged", "merged", MERGED),
        ("merged", None, MERGED),
        ("failed", "checks_failed", CULPRIT),
        ("failed", "ci_timeout", CULPRIT),
        ("failed", "conflict", None),
        ("failed", "already_in_base", None),
        ("failed", "merge_refused", None),
        ("cancelled", "cancelled_by_user", None),
        ("cancelled", "head_changed", None),
        ("queued", None, None),
    ],
)
def test_which_final_entries_count(state: str, reason: str | None, expected: Outcome | None) -> None:
    assert outcome_of(state, reason) is expected


def test_an_empty_history_gives_the_prior() -> None:
    found = estimate(History())
    assert found.p == pytest.approx(0.1)  # Beta(1, 9): 1 / (0 + 10)
    assert found.entries == 0
    assert found.flakes == {} and found.runs == {} and found.flake == 0.0


@pytest.mark.parametrize(
    ("merged", "culprits", "expected"),
    [
        (10, 0, 1 / 20),  # (0 + 1) / (10 + 10)
        (30, 10, 11 / 50),  # (10 + 1) / (40 + 10)
        (0, 5, 6 / 15),
        (40, 0, 1 / 50),
    ],
)
def test_p_is_the_smoothed_share_of_culprits(merged: int, culprits: int, expected: float) -> None:
    found = estimate(History((CULPRIT,) * culprits + (MERGED,) * merged))
    assert found.p == pytest.approx(expected)
    assert found.entries == merged + culprits


def test_only_the_newest_outcomes_count() -> None:
    """A bad stretch long ago does not weigh on a train that has been green since (newest first)."""
    history = History((MERGED,) * HISTORY_WINDOW + (CULPRIT,) * 100)
    found = estimate(history)
    assert found.entries == HISTORY_WINDOW
    assert found.p == pytest.approx(1 / 60)
    recent = estimate(History((CULPRIT,) * 10 + (MERGED,) * 100), window=10)
    assert recent.entries == 10
    assert recent.p == pytest.approx(11 / 20)


def test_flake_rates_per_context_and_together() -> None:
    runs = (Run("ci", flaky=True),) * 2 + (Run("ci"),) * 18 + (Run("lint"),) * 5
    found = estimate(History((), runs))
    assert found.runs == {"ci": 20, "lint": 5}
    assert found.flakes["ci"] == pytest.approx(2.1 / 30)  # (2 + 0.1) / (20 + 10)
    assert found.flakes["lint"] == pytest.approx(0.1 / 15)
    assert found.flake == pytest.approx(1 - (1 - 2.1 / 30) * (1 - 0.1 / 15))


def test_only_the_newest_runs_of_each_context_count() -> None:
    runs = (Run("ci"),) * 4 + (Run("ci", flaky=True),) * 6 + (Run("lint", flaky=True),)
    found = estimate(History((), runs), window=4)
    assert found.runs == {"ci": 4, "lint": 1}
    assert found.flakes["ci"] == pytest.approx(0.1 / 14)
    assert found.flakes["lint"] == pytest.approx(1.1 / 11)


def test_an_estimate_outside_zero_and_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Estimate(p=1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Estimate(p=0.1, flakes={"ci": -0.1})
    with pytest.raises(ValueError, match="at least 1"):
        estimate(History(), window=0)


# -- the closed forms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "batch", "flake", "expected"),
    [
        (0.1, 1, 0.0, 0.1),
        (0.1, 4, 0.0, 0.3439),  # 1 - 0.9^4 = 1 - 0.6561
        (0.5, 2, 0.0, 0.75),
        (0.0, 8, 0.0, 0.0),
        (1.0, 3, 0.0, 1.0),
        (0.2, 3, 0.1, 0.5392),  # 1 - 0.8^3 · 0.9 = 1 - 0.4608
        (0.0, 4, 0.5, 0.5),
    ],
)
def test_batch_failure(p: float, batch: int, flake: float, expected: float) -> None:
    assert batch_failure(p, batch, flake) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("failure", "depth", "expected"),
    [
        (0.0, 4, 4.0),
        (0.5, 1, 0.5),
        (0.5, 3, 0.875),  # 0.5 + 0.25 + 0.125
        (0.3439, 2, 1.08656721),  # 0.6561 + 0.6561²
        (1.0, 5, 0.0),
        (0.1, 2, 1.71),  # 0.9 + 0.81
    ],
)
def test_landed_per_cycle(failure: float, depth: int, expected: float) -> None:
    assert landed_per_cycle(failure, depth) == pytest.approx(expected)


@pytest.mark.parametrize(("batch", "expected"), [(1, 0), (2, 1), (4, 2), (8, 3), (16, 4), (32, 5)])
def test_plain_halves_search_a_power_of_two_in_log2_cycles(batch: int, expected: int) -> None:
    assert search_cycles(batch, width=1) == pytest.approx(expected)
    assert expected == math.log2(batch)


@pytest.mark.parametrize(
    ("batch", "width", "cycles", "runs"),
    [
        (1, 2, 0.0, 0.0),  # a single PR simply fails
        (2, 2, 1.0, 2.0),  # [a] and [b] on it, both tested: one cycle
        # [a], [b], [c d] known red: a culprit among a and b is found in the first cycle (2 runs), one among c
        # and d (half the time) in one more, where [c] and [d] are tested (2 runs).
        (4, 2, 1.5, 3.0),
        (4, 1, 2.0, 3.0),  # plain halves: [a b] first (1 run), then the half at fault (2 runs)
        # [a], [b], [c], [d], [e f g h] known red: 4 runs; half the time, [e f g h] is searched as a batch of 4.
        (8, 4, 1.75, 5.5),
        (8, 2, 2.25, 4.5),  # [a b], [c d], [e f g h]: 2 runs, then 2 more for a pair or 3 for the second half
        (3, 2, 5 / 3, 10 / 3),  # [a b], [c] (both tested); two thirds of the time [a b] is searched as a pair
        (3, 4, 1.0, 3.0),  # [a], [b], [c]: each on the one before, all at once
    ],
)
def test_a_search_costs_what_the_machines_split_costs(batch: int, width: int, cycles: float, runs: float) -> None:
    assert search(batch, width) == Search(pytest.approx(cycles), pytest.approx(runs))


@given(st.integers(2, 40), st.integers(1, 16))
def test_a_wider_split_never_takes_more_cycles(batch: int, width: int) -> None:
    assert search(batch, width + 1).cycles <= search(batch, width).cycles + 1e-9
    assert search(batch, width).cycles <= math.ceil(math.log2(batch)) + 1e-9


@pytest.mark.parametrize(
    ("p", "batch", "bad", "cycles"),
    [
        (0.1, 1, 1.0, 0.0),  # a single PR is not bisected
        (0.5, 2, 4 / 3, 4 / 3),  # 1 / 0.75 culprits, one cycle each
        (0.5, 4, 32 / 15, 1.5 * 32 / 15),  # 2 / (15/16) culprits, 1.5 cycles each
        (0.1, 4, 0.4 / 0.3439, 1.5 * 0.4 / 0.3439),
        (0.0, 4, 0.0, 1.5),  # nothing bad: never red, yet a red one would be searched once
    ],
)
def test_bisection_costs_a_search_per_culprit(p: float, batch: int, bad: float, cycles: float) -> None:
    assert bad_in_red(p, batch) == pytest.approx(bad)
    assert bisection_cycles(p, batch) == pytest.approx(cycles)


def test_a_flaky_red_batch_is_searched_once() -> None:
    assert bad_in_red(0.0, 4, 0.5) == 0.0
    assert bisection_cycles(0.0, 4, 0.5) == 1.5
    assert bisection_runs(0.0, 4, 0.5) == 3.0


@pytest.mark.parametrize(
    ("backlog", "p", "batch", "depth", "flake", "cycles", "runs"),
    [
        # Serial: one cycle per entry, whatever p; a run per entry tried, 1/(1-p) per merge.
        (7, 0.3, 1, 1, 0.0, 7.0, 1 / 0.7),
        (5, 0.0, 1, 1, 0.0, 5.0, 1.0),
        # Nothing bad: ⌈n/b⌉ batches, d at a time; a run carries b PRs.
        (23, 0.0, 4, 6, 0.0, 1.0, 0.25),
        (23, 0.0, 4, 4, 0.0, 1.5, 0.25),
        (100, 0.0, 1, 4, 0.0, 25.0, 1.0),
        # p = 0.5, batches of 2, chain 2 deep, 8 waiting: s = 0.25, L = 0.3125, red = 0.9375, k = 4/3 culprits,
        # each found in 1 cycle by 2 runs: c = 4/3, r = 8/3; E_C = 1 + 0.9375·4/3 = 2.25, E_B = 1.25,
        # T = 4 · 2.25 / 1.25 = 7.2; E_R = 2 + 0.9375·8/3 = 4.5, E_M = 2·0.3125 + 0.9375·(2 - 4/3) = 1.25.
        (8, 0.5, 2, 2, 0.0, 7.2, 3.6),
        # Only flakes: 4 waiting in one batch, half its runs red; a red one is searched in 1.5 cycles and 3 runs,
        # and all land. E_C = 1 + 0.5·1.5 = 1.75, E_B = 1, T = 1.75; E_R = 2.5, E_M = 4·0.5 + 0.5·4 = 4.
        (4, 0.0, 4, 1, 0.5, 1.75, 0.625),
        # p = 0.1, one batch of 4 alone: f = 0.3439, k = 0.4/0.3439; T = 1 + 0.3439·1.5·k = 1.6.
        # E_R = 1 + 0.3439·3·k = 2.2, E_M = 4·0.6561 + 0.3439·4 - 0.4 = 3.6.
        (4, 0.1, 4, 3, 0.0, 1.6, 2.2 / 3.6),
    ],
)
def test_drain_and_runs(
    backlog: int, p: float, batch: int, depth: int, flake: float, cycles: float, runs: float
) -> None:
    assert drain_cycles(backlog, p, batch, depth, flake) == pytest.approx(cycles)
    assert runs_per_merge(backlog, p, batch, depth, flake) == pytest.approx(runs)


def test_a_batch_never_takes_more_than_are_waiting_nor_the_chain_more_batches() -> None:
    seen = forecast(3, 0.0, 8, 4)
    assert (seen.batch, seen.depth, seen.cycles) == (3, 1, 1.0)
    assert forecast(10, 0.2, 4, 8).depth == 3
    assert forecast(0, 0.2, 4, 8).cycles == 0.0


def test_nothing_merges_when_every_entry_is_bad() -> None:
    assert runs_per_merge(5, 1.0, 1, 1) == math.inf
    assert drain_cycles(5, 1.0, 1, 1) == 5.0


# -- the choice -----------------------------------------------------------------------------------------------


def test_with_nothing_bad_the_biggest_batch_and_the_full_chain() -> None:
    """At p = 0 every batch lands, so bigger batches drain in fewer cycles and fewer runs: the model takes the
    biggest allowed, as deep as the CI budget goes."""
    choice = choose(200, Estimate(p=0.0), QueuePolicy(batch_max=4, max_parallel=4))
    assert (choice.batch, choice.window) == (4, 4)
    assert choice.cycles == pytest.approx(12.5)  # 50 batches, 4 a cycle
    assert choice.runs_per_merge == pytest.approx(0.25)


def test_with_nothing_bad_and_all_in_one_cycle_the_fewest_runs_decide() -> None:
    """23 waiting fit in one cycle with any batch of 3 or more on 8 runners: the drain ties, and the fewest
    runs per merge (1/b) pick the biggest batch."""
    choice = choose(23, Estimate(p=0.0), QueuePolicy(batch_max=16, max_parallel=8))
    assert (choice.batch, choice.window, choice.cycles) == (16, 8, 1.0)


def test_a_batch_is_never_bigger_than_the_backlog() -> None:
    """Three waiting: one batch of 3 in one cycle and one run (a batch of 4 would be the same batch); the
    window ties at every depth and goes to the deepest."""
    choice = choose(3, Estimate(p=0.0), QueuePolicy(batch_max=4, max_parallel=4))
    assert (choice.batch, choice.window) == (3, 4)


@pytest.mark.parametrize(("batch_max", "max_parallel"), [(4, 4), (8, 8), (16, 8), (8, 1)])
@pytest.mark.parametrize("backlog", [5, 23, 100])
def test_at_high_p_small_batches_never_worse_than_serial(batch_max: int, max_parallel: int, backlog: int) -> None:
    policy = QueuePolicy(batch_max=batch_max, max_parallel=max_parallel)
    risky = choose(backlog, Estimate(p=0.3), policy)
    safe = choose(backlog, Estimate(p=0.01), policy)
    if max_parallel > 1:
        assert risky.batch == 1  # a chain of single PRs beats any batch that is red this often
    assert risky.batch <= safe.batch
    assert risky.cycles <= drain_cycles(backlog, 0.3, 1, 1)  # serial: one cycle each
    width = policy.bisect_width
    assert risky.cycles == pytest.approx(min(drain_cycles(backlog, 0.3, b, d, 0.0, width) for b, d in options(policy)))


def test_one_candidate_at_a_time_batches_even_at_a_third_bad() -> None:
    """With one candidate at a time, a batch of 4 whose first half is searched PR by PR settles a red batch in
    1.5 cycles: at p = 0.3 that drains in 0.7 of serial's cycles (the benchmark's batch4 row measures it)."""
    choice = choose(100, Estimate(p=0.3), QueuePolicy(batch_max=8, max_parallel=1))
    assert (choice.batch, choice.window) == (4, 1)
    assert choice.cycles == pytest.approx(70.0, abs=0.5)


def test_with_a_deep_chain_p_a_third_goes_one_by_one() -> None:
    """Four runners and p = 0.3: a chain of single PRs lands 1.53 a cycle; any batch is red too often."""
    choice = choose(23, Estimate(p=0.3), QueuePolicy(batch_max=4, max_parallel=4))
    assert (choice.batch, choice.window) == (1, 4)
    assert choice.cycles == pytest.approx(23 / (0.7 + 0.49 + 0.343 + 0.2401 + 1 - 0.2401))


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.9])
def test_the_window_stays_within_the_floor_and_the_ci_budget(p: float) -> None:
    policy = QueuePolicy(batch_max=8, max_parallel=5, window_floor=3)
    for backlog in (1, 4, 40):
        choice = choose(backlog, Estimate(p=p), policy)
        assert 3 <= choice.window <= 5
    one = choose(40, Estimate(p=0.05), QueuePolicy(batch_max=8, max_parallel=1))
    assert one.window == 1


def test_flakes_push_toward_bigger_batches() -> None:
    """A flake hits a run whatever it carries: the more PRs a run carries, the fewer flakes each PR meets."""
    policy = QueuePolicy(batch_max=8, max_parallel=8)
    clean = choose(40, Estimate(p=0.02), policy)
    flaky = choose(40, Estimate(p=0.02, flakes={"ci": 0.3}, runs={"ci": 40}), policy)
    assert clean.batch < flaky.batch == 8
    assert flaky.cycles > clean.cycles
    assert flaky.cycles == pytest.approx(min(drain_cycles(40, 0.02, b, d, 0.3, 8) for b, d in options(policy)))


def test_the_reason_in_words() -> None:
    policy = QueuePolicy(batch_max=4, max_parallel=6)
    choice = choose(23, Estimate(p=0.0, entries=40), policy)
    assert choice.reason == "p≈0 % from 40 recent entries: batches of 4, chain 6 deep, about 1 CI cycle for 23 waiting"
    prior = choose(23, estimate(History()), policy)
    assert prior.reason.startswith("p≈10 %, assumed (no history yet): PRs one by one, chain 6 deep, about ")
    assert prior.reason.endswith(" CI cycles for 23 waiting")
    flaky = choose(1, Estimate(p=0.08, entries=1, flakes={"ci": 0.05}, runs={"ci": 12}), policy)
    assert flaky.reason.startswith("p≈8 % from 1 recent entry, a run flaky 5 % of the time: ")
    assert choose(0, Estimate(p=0.004, entries=3), policy).reason.endswith("for the next to arrive")
    assert "p≈0.4 %" in choose(0, Estimate(p=0.004, entries=3), policy).reason


def test_adapt_sets_batch_and_window_only_when_adaptive() -> None:
    choice = Choice(batch=3, window=2, cycles=4.0, runs_per_merge=0.5, reason="")
    fixed = QueuePolicy(batch_max=4, max_parallel=4, window_floor=1)
    assert adapt(fixed, choice) is fixed
    adaptive = QueuePolicy(batch_max=4, max_parallel=4, window_floor=1, adaptive=True, bisect=False)
    assert adapt(adaptive, choice) == QueuePolicy(
        batch_max=3, max_parallel=4, window=2, window_floor=1, adaptive=True, bisect=False
    )


@pytest.mark.parametrize(("window", "batch", "expected"), [(9, 9, (4, 5)), (1, 0, (1, 2)), (3, 2, (2, 3))])
def test_adapt_keeps_the_choice_within_the_policy(window: int, batch: int, expected: tuple[int, int]) -> None:
    policy = QueuePolicy(batch_max=4, max_parallel=5, window_floor=2, adaptive=True)
    adapted = adapt(policy, Choice(batch=batch, window=window, cycles=1.0, runs_per_merge=1.0, reason=""))
    assert (adapted.batch_max, adapted.window) == expected


# -- properties -----------------------------------------------------------------------------------------------

rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def policies(draw: st.DrawFn) -> QueuePolicy:
    max_parallel = draw(st.integers(1, 8))
    return QueuePolicy(
        batch_max=draw(st.integers(1, 12)),
        max_parallel=max_parallel,
        window_floor=draw(st.integers(1, max_parallel)),
        adaptive=True,
    )


@given(backlog=st.integers(0, 120), p=rates, flake=st.floats(0.0, 0.5), policy=policies())
def test_the_choice_is_within_bounds_and_drains_no_slower_than_any_option(
    backlog: int, p: float, flake: float, policy: QueuePolicy
) -> None:
    choice = choose(backlog, Estimate(p=p, flakes={"ci": flake}), policy)
    assert 1 <= choice.batch <= min(policy.batch_max, max(1, backlog))
    assert policy.window_floor <= choice.window <= policy.max_parallel
    n = max(1, backlog)
    drains = [drain_cycles(n, p, b, d, flake) for b, d in options(policy)]
    assert choice.cycles <= min(drains) + 1e-9
    assert choice.cycles <= n + 1e-9  # a chain of single PRs is never slower than serial
    adapted = adapt(policy, choice)
    assert (adapted.batch_max, adapted.window) == (choice.batch, choice.window)


@given(
    backlog=st.integers(1, 200),
    p=rates,
    flake=st.floats(0.0, 0.9),
    batch=st.integers(1, 16),
    depth=st.integers(1, 16),
)
def test_the_drain_is_bounded_by_a_green_chain_and_by_a_bisection_of_every_batch(
    backlog: int, p: float, flake: float, batch: int, depth: int
) -> None:
    seen = forecast(backlog, p, batch, depth, flake)
    batches = math.ceil(backlog / seen.batch)
    assert seen.depth == min(depth, batches)
    assert batches / seen.depth - 1e-9 <= seen.cycles  # nothing drains faster than an all-green chain
    assert seen.cycles <= batches * (1 + bisection_cycles(p, seen.batch, flake)) + 1e-9
    assert seen.runs_per_merge >= 1 / seen.batch - 1e-9  # a run carries at most b PRs


@given(
    outcomes=st.lists(st.sampled_from([MERGED, CULPRIT]), max_size=120),
    window=st.integers(1, 60),
)
def test_the_estimate_follows_only_the_window_and_stays_a_rate(outcomes: list[Outcome], window: int) -> None:
    found = estimate(History(tuple(outcomes)), window=window)
    newest = outcomes[:window]
    assert found.entries == len(newest)
    assert 0 < found.p < 1
    if len(outcomes) >= window:  # what lies beyond the window changes nothing
        assert estimate(History((*outcomes, *(CULPRIT,) * 5)), window=window) == found
    worse = estimate(History((CULPRIT, *outcomes)), window=window)
    assert worse.p >= found.p - 1e-12  # a new culprit never makes the train look better
