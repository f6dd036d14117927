"""SIGKILL at every named gate step while the queue works in batches, restart, and nothing is lost or merged
twice (docs/faults.md #1-#2, for batches and bisection).

As in ``test_crash_points``, the bot is a real process started with ``MERGE_BOT_CRASH_AT=<step>``: four PRs are
opened, main moves on, all four are queued while the test holds the train's lock (so they share the first
batch: ``MERGE_BOT_BATCH_MAX=4``), the process kills itself the first time a gate reaches the step, and it is
restarted without the setting. Three scenarios:

* ``batch-green``: four independent PRs, one batch, one fast-forward lands all four, each PR is then marked
  merged at the commit where its own change ends. Crashes at every step of ``STEPS``.
* ``batch-through``: two independent PRs whose batch fails once (an injected CI failure): it is bisected, and
  both halves (single PRs, so each is tested), green at once, land by one fast-forward
  (``MergeAttempt.through``); the bisection is settled flaky. The first half's CI run is held back (silent)
  and its success posted by the test once the second half passed, so that both are green together whatever
  the order the runs would finish in. Crashes at the steps of that landing (``merge_intent`` to
  ``merge_recorded``).
* ``batch-bisect``: four PRs, the third red only on top of the first (``feature-a.flag`` with
  ``feature-b.flag``): the batch is red, it is bisected, the first half lands, the second is bisected again
  and the culprit alone fails. Crashes at every step of ``STEPS`` and at ``chain_replaced`` (the red batch
  ended, its halves not made yet: its entries are left testing but carried by no attempt, and the orphan
  rule sends them back in line).

Then every entry is final with the scenario's outcomes (a multiset), every PR told once, the base moved only
by fast-forwards to SHAs CI had passed, no PR merged twice, and the active attempts formed one chain from the
base tip the whole time (sampled from the database while the scenario ran, and from the forge's push log).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from bot.crashpoints import STEPS
from bot.db.models import Attempt
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import ChainWatch, CrashWorld, chain_violations, eventually, violations
from tests.crash.invariants import base_moves
from tests.crash.test_crash_points import untold

pytestmark = pytest.mark.slow

BATCH_MAX = 4
# The four PRs are queued before any gate runs, so the first batch is full at once; the wait only matters
# for a short line (entries sent back in line after a crash), and is kept short for that.
BATCHES = {
    "MERGE_BOT_BATCH_MAX": str(BATCH_MAX),
    "MERGE_BOT_BATCH_WAIT_SECONDS": "2",
    "MERGE_BOT_MAX_PARALLEL": "1",
    "MERGE_BOT_FLAKY_RETRIES": "0",
}


@dataclass(frozen=True)
class Scenario:
    """PRs queued in this order, the outcomes expected as a multiset, the steps crashed at, and the PR (by
    branch) that alone must fail."""

    prs: tuple[tuple[str, dict[str, str]], ...]
    outcomes: tuple[str, ...]
    steps: tuple[str, ...]
    culprit: str | None = None
    ci_faults: tuple[str, ...] = ()  # injected into the first CI runs, in order (the simulator's ci actions)
    hold_first_half: bool = False  # the first half's success is posted once the second half passed
    bisection: str | None = None  # how every bisected batch must be settled
    batch_max: int = BATCH_MAX


SCENARIOS = {
    "batch-green": Scenario(
        tuple((f"part-{n}", {f"part-{n}.txt": f"{n}\n"}) for n in range(BATCH_MAX)), ("merged",) * BATCH_MAX, STEPS
    ),
    "batch-bisect": Scenario(
        (
            ("feature-a", {"feature-a.flag": "a\n"}),
            ("one", {"one.txt": "1\n"}),
            ("feature-b", {"feature-b.flag": "b\n"}),  # green alone, red on top of feature-a
            ("four", {"four.txt": "4\n"}),
        ),
        ("merged", "merged", "failed", "merged"),
        (*STEPS, "chain_replaced"),  # re-tests (retry_opened) are off here: test_crash_chains.py has them
        culprit="feature-b",
        bisection="culprit",
    ),
    # A flaky batch of two: its halves are single PRs, so both are tested (a larger second half, built on the
    # first, would be the very tree that failed, and the gate would not send it to CI again).
    "batch-through": Scenario(
        tuple((f"part-{n}", {f"part-{n}.txt": f"{n}\n"}) for n in range(2)),
        ("merged",) * 2,
        ("merge_intent", "base_pushed", "marked_merged", "merge_recorded"),
        ci_faults=("fail", "silent"),
        hold_first_half=True,
        bisection="flaky",
        batch_max=2,
    ),
}
CASES = [pytest.param(name, step, id=f"{step}-{name}") for name, plan in SCENARIOS.items() for step in plan.steps]


async def last_attempt(world: CrashWorld) -> int:
    async with world.engine.connect() as connection:
        return int(await connection.scalar(select(func.coalesce(func.max(Attempt.id), 0))) or 0)


async def bisection_outcomes(world: CrashWorld) -> list[str | None]:
    async with world.engine.connect() as connection:
        details = await connection.scalars(select(Attempt.reason_detail).where(Attempt.reason == "bisected"))
        return [(detail or {}).get("outcome") for detail in details]


async def release_first_half(world: CrashWorld, repo: str) -> None:
    """Once the second half of the bisected batch passed, post the held-back first half's success: both green
    at once, so they land together."""

    async def halves() -> list[str] | None:
        async with world.engine.connect() as connection:
            found = await connection.scalars(
                select(Attempt.candidate_sha).where(Attempt.split_from.is_not(None)).order_by(Attempt.id)
            )
            candidates = [sha for sha in found if sha]
        return candidates if len(candidates) == 2 else None

    first, second = await eventually(halves, within=60, what="both halves built")

    async def second_passed() -> bool:
        runs = await world.sim.log("ci")
        return any(e["sha"] == second and e.get("phase") == "done" and e.get("state") == "success" for e in runs)

    await eventually(second_passed, within=60, what="the second half to pass")
    await world.sim.set_status(repo, first, "success", context="ci/test")


@pytest.mark.parametrize(("scenario", "step"), CASES)
async def test_crash_in_a_batch_then_restart(make_world: MakeWorld, report: Report, scenario: str, step: str) -> None:
    plan = SCENARIOS[scenario]
    world = await make_world()
    repo = world.repos[0]
    numbers = await world.open_prs(repo, plan.prs)
    branch_of = dict(zip(numbers, (branch for branch, _ in plan.prs), strict=True))
    await world.move_main(repo)
    for action in plan.ci_faults:
        await world.sim.fault(kind="ci", action=action, repo=repo, count=1)
    bot = world.bot_process(extra={**BATCHES, "MERGE_BOT_BATCH_MAX": str(plan.batch_max)})

    async with ChainWatch(world.engine) as watch:
        first = await bot.start(crash_at=step)
        await world.ready(bot)
        async with world.holding_train(1):  # all four in line before a gate runs: one batch of four
            for number in numbers:
                await world.queue(repo, number)
            await world.queued(len(numbers))
        if plan.hold_first_half:
            await release_first_half(world, repo)

        code = await bot.wait_exit(within=60)
        assert code == -9, f"the bot should have killed itself at {step}, exit status {code}"
        crashed_after = time.time() - first.started
        moves_before = len(base_moves(await world.sim.log("push"), world.baseline_seq))
        rows = {row.id: row for row in await world.entries()}
        crashed_in = [branch_of[rows[i].number] for i in await world.attempt_entries(await last_attempt(world))]

        second = await bot.start()
        outcomes = await world.settled(len(numbers), within=120)
        settled_after = time.time() - second.started
        await world.no_staging_left()

    assert Counter(outcomes.values()) == Counter(plan.outcomes), outcomes
    assert await violations(world, most=BATCH_MAX) == []
    assert await chain_violations(world, watch, most=BATCH_MAX) == []

    entries = await world.entries()
    merged = [row for row in entries if row.state == "merged"]
    for row in merged:  # each PR's page points at the commit where its own change ends
        pull = await world.sim.api("GET", f"/repos/{repo}/pulls/{row.number}")
        assert pull["merge_commit_sha"] == row.merged_sha, (row.number, pull["merge_commit_sha"], row.merged_sha)
    assert len({row.merged_sha for row in merged}) == len(merged)
    bot_moves = base_moves(await world.sim.log("push"), world.baseline_seq)
    if plan.culprit is None:
        assert len(bot_moves) == 1  # one fast-forward for all four: the batch, or both halves together
    else:
        failed = [row for row in entries if row.state == "failed"]
        assert [branch_of[row.number] for row in failed] == [plan.culprit]
        assert [row.reason for row in failed] == ["checks_failed"]
        assert failed[0].reason_detail.get("bisected") is True
    if plan.bisection is not None:

        async def settled_bisections() -> list[str | None] | None:
            found = await bisection_outcomes(world)
            return found if found and all(found) else None

        found = await eventually(settled_bisections, within=20, what="every bisected batch to be settled")
        assert set(found) == {plan.bisection}, found

    async def all_told() -> bool:
        return not await untold(world, repo)

    await eventually(all_told, within=20, what="the merge-bot status and one outcome comment on every PR")
    told_after = time.time() - second.started
    listening = second.first("serve.listening")
    decision = second.first("gate.decision")
    later_moves = [m for m in bot_moves if m["time"] > second.started]
    ci_runs = [e for e in await world.sim.log("ci") if e.get("phase") == "done"]
    report(
        {
            "kind": "batch crash point",
            "step": step,
            "scenario": scenario,
            "crashed_after_s": crashed_after,
            "last_attempt_prs": ",".join(crashed_in),
            "base_moves_before_crash": moves_before,
            "restart_to_listening_s": listening["at"] - second.started if listening else None,
            "restart_to_decision_s": decision["at"] - second.started if decision else None,
            "restart_to_base_move_s": later_moves[0]["time"] - second.started if later_moves else None,
            "restart_to_settled_s": settled_after,
            "restart_to_all_told_s": told_after,
            "attempts": await last_attempt(world),
            "ci_runs": len(ci_runs),
            "longest_chain": watch.longest,
            "violations": 0,
        }
    )
