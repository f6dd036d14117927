"""SIGKILL at the steps of a speculative chain, restart, and nothing is lost or merged twice (docs/faults.md
#1-#2 and #36 for chains, #31 with a batch under test behind the red one; and the re-test of a red single).

As in ``test_crash_batches``, the bot is a real process: four PRs are opened, main moves on, all four are
queued while the test holds the train's lock, and the bot is started with ``MERGE_BOT_CRASH_AT=<step>@<n>``,
so that it kills itself the n-th time a gate reaches the step (``bot.crashpoints``) — the second attempt it
builds is the first one built on another's candidate. It is restarted without the setting. The first CI runs
are held back (``silent``) and their verdicts posted by the test once the chain is as deep as the scenario
needs: that is what makes the chain deep for certain, whatever the speed of the machine. Three scenarios:

* ``chain-green``: four PRs, batch 1, ``max_parallel`` 4. The first candidate's run is held back; once the
  three built on it passed, the test posts its success, and one fast-forward lands all four
  (``MergeAttempt.through`` names three). Crashes while the second attempt is built on the first one's
  candidate (``attempt_created@2``, ``candidate_recorded@2``, ``candidate_pushed@2``,
  ``testing_recorded@2``) and in the landing of the four (``merge_intent@2``: the intent recorded on two of
  them; ``base_pushed``; ``marked_merged@2`` and ``merge_recorded@2``: the first one finished, three not).
* ``chain-culprit``: four PRs, batch 1, ``max_parallel`` 4, ``flaky_retries`` 1; the second PR is red
  alone (``broken.flag``). The four first runs are held back; once the chain is four deep the test reports
  the first candidate red (a flaky red: its re-test passes) and the second one red (as its CI would: its
  re-test runs the real script and is red again). The first is re-tested with the three behind it moved
  onto the re-test, and lands; the culprit is re-tested, fails, and the two behind it go back in line and
  are rebuilt on the base. Crashes at ``retry_opened@1`` (the flaky head's re-test recorded, not pushed),
  ``retry_opened@2`` (the culprit's) and ``attempt_created@5`` (the first of what was behind the culprit,
  rebuilt on the base tip).
* ``chain-bisect``: four PRs in batches of two, ``max_parallel`` 2; the second PR is red alone. The first
  batch's run is held back and reported red once the second batch is under test on top of it: the second
  batch goes back in line and the first is bisected. Crash at ``chain_replaced`` (both done, the halves not
  made yet: the red batch's entries are carried by no attempt and the orphan rule sends them back in line).

Then the invariants of ``test_crash_batches`` (``violations``, ``chain_violations``: the active attempts
formed one chain from the base tip the whole time, on the database's samples and on the forge's staging
branches) and each scenario's own outcome: who failed and why, how many pushes landed what, what the
re-tests were.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Attempt
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import ChainWatch, CrashWorld, attempt_rows, chain_violations, eventually, violations
from tests.crash.invariants import base_moves
from tests.crash.test_crash_batches import bisection_outcomes, last_attempt
from tests.crash.test_crash_points import untold

pytestmark = pytest.mark.slow

FOUR = tuple((f"part-{n}", {f"part-{n}.txt": f"{n}\n"}) for n in range(4))
CULPRIT_SECOND = (FOUR[0], ("broken", {"broken.flag": "x\n"}), FOUR[2], FOUR[3])  # red alone, whatever is under it
BUILDING = ("attempt_created@2", "candidate_recorded@2", "candidate_pushed@2", "testing_recorded@2")
LANDING = ("merge_intent@2", "base_pushed", "marked_merged@2", "merge_recorded@2")


@dataclass(frozen=True)
class Scenario:
    """PRs queued in this order, the outcomes expected as a multiset, where the bot is killed, and the CI runs
    held back: ``verdicts`` for the first attempts' candidates (None: never reported), posted once the chain
    holds ``depth`` attempts under test and every run not held back is done."""

    prs: tuple[tuple[str, dict[str, str]], ...]
    outcomes: tuple[str, ...]
    crash_at: tuple[str, ...]
    verdicts: tuple[str | None, ...]
    depth: int
    batch_max: int = 1
    max_parallel: int = 4
    flaky_retries: int = 1
    culprit: str | None = None

    def settings(self) -> dict[str, str]:
        return {
            "MERGE_BOT_BATCH_MAX": str(self.batch_max),
            "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
            "MERGE_BOT_MAX_PARALLEL": str(self.max_parallel),
            "MERGE_BOT_FLAKY_RETRIES": str(self.flaky_retries),
        }


SCENARIOS = {
    "chain-green": Scenario(FOUR, ("merged",) * 4, BUILDING + LANDING, verdicts=("success",), depth=4),
    "chain-culprit": Scenario(
        CULPRIT_SECOND,
        ("merged", "failed", "merged", "merged"),
        ("retry_opened@1", "retry_opened@2", "attempt_created@5"),
        verdicts=("failure", "failure", None, None),
        depth=4,
        culprit="broken",
    ),
    "chain-bisect": Scenario(
        CULPRIT_SECOND,
        ("merged", "failed", "merged", "merged"),
        ("chain_replaced",),
        verdicts=("failure",),
        depth=2,
        batch_max=2,
        max_parallel=2,
        flaky_retries=0,
        culprit="broken",
    ),
}
# Test ids say "attempt_created-2" for "attempt_created@2" (an "@" cannot be given to pytest -k).
CASES = [
    pytest.param(name, at, id=f"{at.replace('@', '-')}-{name}")
    for name, plan in SCENARIOS.items()
    for at in plan.crash_at
]


async def post_held_verdicts(world: CrashWorld, repo: str, plan: Scenario) -> list[str]:
    """Wait until the chain holds ``plan.depth`` attempts under test and every CI run not held back is done,
    then post the held-back runs' verdicts on the first attempts' candidates (attempt ids count from 1 in a
    fresh database, in the order their runs started). The candidates it posted on."""
    held = len(plan.verdicts)

    async def ready() -> list[str] | None:
        testing = await attempt_rows(world.engine, ["testing"])
        if len(testing) < plan.depth:
            return None
        done = {e["sha"] for e in await world.sim.log("ci") if e.get("phase") == "done"}
        if any(row.candidate_sha not in done for row in testing if row.id > held):
            return None
        async with world.engine.connect() as connection:
            found = await connection.execute(select(Attempt.id, Attempt.candidate_sha).where(Attempt.id <= held))
            candidates = dict(found.tuples().all())
        firsts = [candidates.get(n) for n in range(1, held + 1)]
        return [sha for sha in firsts if sha] if all(firsts) else None

    candidates = await eventually(ready, within=120, what=f"a chain of {plan.depth} under test")
    for sha, verdict in zip(candidates, plan.verdicts, strict=True):
        if verdict is not None:
            await world.sim.set_status(repo, sha, verdict, context="ci/test")
    return candidates


@pytest.mark.parametrize(("scenario", "crash_at"), CASES)
async def test_crash_in_a_chain_then_restart(
    make_world: MakeWorld, report: Report, scenario: str, crash_at: str
) -> None:
    plan = SCENARIOS[scenario]
    world = await make_world()
    repo = world.repos[0]
    numbers = await world.open_prs(repo, plan.prs)
    branch_of = dict(zip(numbers, (branch for branch, _ in plan.prs), strict=True))
    await world.move_main(repo)
    await world.sim.fault(kind="ci", action="silent", repo=repo, count=len(plan.verdicts))
    bot = world.bot_process(extra=plan.settings())

    async with ChainWatch(world.engine) as watch:
        first = await bot.start(crash_at=crash_at)
        await world.ready(bot)
        async with world.holding_train(1):  # all four in line before a gate runs
            for number in numbers:
                await world.queue(repo, number)
            await world.queued(len(numbers))
        verdicts = asyncio.create_task(post_held_verdicts(world, repo, plan))
        try:
            code = await bot.wait_exit(within=120)
            assert code == -9, f"the bot should have killed itself at {crash_at}, exit status {code}"
            crashed_after = time.time() - first.started
            at_crash = await watch.read()
            moves_before = len(base_moves(await world.sim.log("push"), world.baseline_seq))
            crashed = await crashed_where(world, crash_at)
            rows = {row.id: row for row in await world.entries()}
            crashed_in = [branch_of[rows[i].number] for i in await world.attempt_entries(crashed.id)]

            second = await bot.start()
            outcomes = await world.settled(len(numbers), within=180)
            settled_after = time.time() - second.started
            held = await asyncio.wait_for(verdicts, 10)
            await world.no_staging_left()
        finally:
            verdicts.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await verdicts

    assert Counter(outcomes.values()) == Counter(plan.outcomes), outcomes
    assert await violations(world, most=plan.max_parallel) == []
    assert await chain_violations(world, watch, most=plan.max_parallel) == []
    assert watch.longest >= plan.depth  # the chain was as deep as the scenario made it

    entries = await world.entries()
    merged = [row for row in entries if row.state == "merged"]
    for row in merged:  # each PR's page points at the commit where its own change ends
        pull = await world.sim.api("GET", f"/repos/{repo}/pulls/{row.number}")
        assert pull["merge_commit_sha"] == row.merged_sha, (row.number, pull["merge_commit_sha"], row.merged_sha)
    failed = [row for row in entries if row.state == "failed"]
    assert [branch_of[row.number] for row in failed] == ([plan.culprit] if plan.culprit else [])
    assert all(row.reason == "checks_failed" for row in failed)
    bot_moves = base_moves(await world.sim.log("push"), world.baseline_seq)
    if scenario == "chain-green":
        # One fast-forward landed the four attempts: each recorded that push, to the deepest candidate.
        assert len(bot_moves) == 1
        landed = [attempt for attempt in await all_attempts(world) if attempt.state == "done"]
        assert [attempt.reason_detail["push"] for attempt in landed] == [bot_moves[0]["after"]] * 4
        assert landed[-1].candidate_sha == bot_moves[0]["after"]
    if scenario == "chain-culprit":
        await check_retests(world, held)
    if scenario == "chain-bisect":
        found = await eventually(settled_bisections(world), within=20, what="every bisected batch to be settled")
        assert set(found) == {"culprit"}, found

    async def all_told() -> bool:
        return not await untold(world, repo)

    await eventually(all_told, within=20, what="the merge-bot status and one outcome comment on every PR")
    told_after = time.time() - second.started
    decision = second.first("gate.decision")
    later_moves = [m for m in bot_moves if m["time"] > second.started]
    ci_runs = [e for e in await world.sim.log("ci") if e.get("phase") == "done"]
    report(
        {
            "kind": "chain crash point",
            "step": crash_at,
            "scenario": scenario,
            "crashed_after_s": crashed_after,
            "crashed_in": f"{crashed.id}:{','.join(crashed_in)}",
            "chain_at_crash": len(at_crash),
            "base_moves_before_crash": moves_before,
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


async def all_attempts(world: CrashWorld) -> list[Attempt]:
    async with AsyncSession(world.engine) as session:
        return list((await session.scalars(select(Attempt).order_by(Attempt.id))).all())


# The first four attempts' states when the bot died in their landing (one push to the fourth's candidate).
LANDING_STATES = {
    "merge_intent@2": ("merging", "merging", "testing", "testing"),
    "base_pushed": ("merging",) * 4,
    "marked_merged@2": ("done", "merging", "merging", "merging"),
    "merge_recorded@2": ("done", "done", "merging", "merging"),
}


async def crashed_where(world: CrashWorld, crash_at: str) -> Attempt:
    """The attempt the crash hit (the last one made), checked to be where the scenario means the crash to be."""
    attempts = await all_attempts(world)
    by_id = {attempt.id: attempt for attempt in attempts}
    last = attempts[-1]
    if crash_at in BUILDING:  # the second attempt, built on the candidate of the first, still under test
        assert (last.id, last.parent_id, last.base_sha) == (2, 1, by_id[1].candidate_sha)
        assert by_id[1].state == "testing"
    elif crash_at in LANDING:
        assert tuple(by_id[n].state for n in range(1, 5)) == LANDING_STATES[crash_at]
    elif crash_at.startswith("retry_opened"):  # the re-test recorded, what was built on the red one moved onto it
        assert last.retry_of is not None and last.state == "building" and last.candidate_sha is None
        assert by_id[last.retry_of].state == "abandoned"
        behind = [attempt for attempt in attempts if attempt.parent_id == last.id]
        assert [attempt.state for attempt in behind] == ["testing"], [(a.id, a.state) for a in behind]
    elif crash_at == "attempt_created@5":  # what was behind the culprit, back in line and started on the base
        assert last.parent_id is None and last.state == "building"
        assert [by_id[n].state for n in (3, 4)] == ["abandoned", "abandoned"]
    elif crash_at == "chain_replaced":  # the red batch ended for bisection, the batch behind it back in line
        assert (by_id[1].state, by_id[1].reason, by_id[2].state) == ("failed", "bisected", "abandoned")
        states = {row.id: row.state for row in await world.entries()}
        assert [states[e] for e in await world.attempt_entries(2)] == ["queued", "queued"]
        assert [states[e] for e in await world.attempt_entries(1)] == ["testing", "testing"]  # orphans
    else:
        raise AssertionError(f"no expectation for {crash_at}")
    return last


async def check_retests(world: CrashWorld, held: list[str]) -> None:
    """The first candidate (red once) and the culprit's were each re-tested once: the very same commit on a
    fresh ref; the first counted a flake (it landed), the culprit's red confirmed."""
    attempts = await all_attempts(world)
    retried = {attempt.id: attempt for attempt in attempts if attempt.reason == "retried"}
    assert sorted(retried) == [1, 2], sorted(retried)
    assert [retried[n].reason_detail.get("outcome") for n in (1, 2)] == ["flaky", "confirmed"]
    for old in retried.values():
        [new] = [attempt for attempt in attempts if attempt.retry_of == old.id]
        assert new.candidate_sha == old.candidate_sha == held[old.id - 1]
        assert new.ref != old.ref


def settled_bisections(world: CrashWorld) -> Callable[[], Awaitable[list[str | None] | None]]:
    async def check() -> list[str | None] | None:
        found = await bisection_outcomes(world)
        return found if found and all(found) else None

    return check


@pytest.mark.parametrize("rerun", ["success", "failure"])
async def test_crash_after_an_actions_rerun_was_asked_for(make_world: MakeWorld, report: Report, rerun: str) -> None:
    """Gitea newer than 1.25 re-runs a red single's failed Actions run in place; the bot is killed after it asked
    (``rerun_requested``), before the re-test is recorded. Restarted, it judges the old attempt by the re-run's
    statuses: green lands it; red is re-tested once more — this time recorded — and then rejected. Nothing is
    pushed again for it, and the PR ends as it would have without the crash (docs/faults.md #39)."""
    world = await make_world()
    repo = world.repos[0]
    await world.sim.features(actions_rerun=True)
    prs = (("shaky", {"shaky.txt": "1\n"}),) if rerun == "success" else (("broken", {"broken.flag": "x\n"}),)
    [number] = await world.open_prs(repo, prs)
    await world.move_main(repo)  # so that the PR is built into a candidate, not landed as it is
    await world.sim.fault(kind="ci", action="fail", repo=repo, count=1)  # the candidate's first run only
    bot = world.bot_process(extra={"MERGE_BOT_FLAKY_RETRIES": "1"})
    async with ChainWatch(world.engine) as watch:
        await bot.start(crash_at="rerun_requested")
        await world.ready(bot)
        await world.queue(repo, number)
        assert await bot.wait_exit(within=120) == -9
        [crashed] = await all_attempts(world)  # the re-run asked for, the re-test not recorded
        assert (crashed.state, crashed.reason) == ("testing", None)
        second = await bot.start()
        outcomes = await world.settled(1, within=120)
        await world.no_staging_left()

    assert list(outcomes.values()) == (["merged"] if rerun == "success" else ["failed"])
    assert await violations(world, most=1) == []
    assert await chain_violations(world, watch, most=1) == []
    log = await world.sim.log()
    staging = [e for e in log if e["kind"] == "push" and e["ref"].startswith("refs/heads/merge-bot/")]
    assert len([e for e in staging if set(e["after"]) != {"0"}]) == 1  # one push: every re-test ran in place
    runs = [(e["state"], e["attempt"]) for e in log if e["kind"] == "ci" and e.get("phase") == "done"]
    attempts = await all_attempts(world)
    if rerun == "success":
        assert runs == [("failure", 1), ("success", 2)]
        assert [(a.id, a.state) for a in attempts] == [(crashed.id, "done")]  # judged by the re-run: landed
    else:
        assert runs == [("failure", 1), ("failure", 2), ("failure", 3)]  # one more re-run than without the crash
        assert [(a.state, a.reason) for a in attempts] == [("abandoned", "retried"), ("failed", "checks_failed")]
        assert attempts[0].reason_detail.get("outcome") == "confirmed"

    async def all_told() -> bool:
        return not await untold(world, repo)

    await eventually(all_told, within=20, what="the merge-bot status and one outcome comment on the PR")
    decision = second.first("gate.decision")
    report(
        {
            "kind": "chain crash point",
            "step": "rerun_requested",
            "scenario": f"actions-rerun-{rerun}",
            "restart_to_decision_s": decision["at"] - second.started if decision else None,
            "ci_runs": len(runs),
            "violations": 0,
        }
    )
