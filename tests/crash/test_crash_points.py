"""SIGKILL at every named step of the gate (docs/faults.md #1-#2), restart, and nothing is lost or merged twice.

For each step of ``bot.crashpoints.STEPS`` and each scenario below, the bot runs as a real process with
``MERGE_BOT_CRASH_AT=<step>``: two PRs are opened, main moves on (so every candidate is a new commit the forge
only knows once the bot pushed it), both are queued, the process kills itself the first time a gate reaches
that step, and it is restarted (same port, same data directory) without the setting. Then every entry must
be final with the scenario's outcome, no attempt active, no staging branch left after a reaper pass, and
the simulator's log must show main moving only by fast-forwards to SHAs CI had passed, each at most once,
and no PR merged twice. The time from the restart to the queue moving again is recorded for the report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from bot.crashpoints import STEPS
from bot.db.models import Attempt
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import CrashWorld, eventually, violations
from tests.crash.invariants import base_moves

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Scenario:
    """Two PRs queued in this order, and the outcomes expected as a multiset (the order of testing does not
    change which outcomes there are)."""

    prs: tuple[tuple[str, dict[str, str]], ...]
    outcomes: tuple[str, ...]


SCENARIOS = {
    # Both green: the crash lands in the first PR's attempt, the second one runs after the restart.
    "independent": Scenario((("feature-a", {"a.txt": "a\n"}), ("feature-b", {"b.txt": "b\n"})), ("merged", "merged")),
    # Green alone, red together: the second one to be tested fails, so the failure path runs after a crash.
    "semantic": Scenario(
        (("feature-a", {"feature-a.flag": "a\n"}), ("feature-b", {"feature-b.flag": "b\n"})), ("failed", "merged")
    ),
    # A PR whose CI always fails goes first: the early steps crash inside a failing attempt, the merge steps
    # (never reached by it) inside the next one.
    "broken-first": Scenario(
        (("broken", {"broken.flag": "x\n"}), ("feature-a", {"a.txt": "a\n"})), ("failed", "merged")
    ),
}


async def bot_status(world: CrashWorld, repo: str, sha: str) -> str | None:
    """The newest state of the bot's own context on a commit (what the PR shows)."""
    statuses = await world.sim.api("GET", f"/repos/{repo}/commits/{sha}/statuses")
    own = [status["status"] for status in statuses if status["context"] == "merge-bot"]
    return str(own[0]) if own else None


async def untold(world: CrashWorld, repo: str) -> list[str]:
    """What is missing on the PRs of final entries: the bot's status still ``pending``, or not exactly one
    outcome comment (the crash at "merge_recorded" lands between the commit and the telling)."""
    missing = []
    for row in await world.entries():
        if await bot_status(world, repo, row.approved_sha) == "pending":
            missing.append(f"#{row.number} shows pending")
        comments = await world.sim.api("GET", f"/repos/{repo}/issues/{row.number}/comments")
        told = [c for c in comments if f"merge-bot outcome of entry {row.id} " in c["body"]]
        if len(told) != 1:
            missing.append(f"#{row.number} has {len(told)} outcome comments")
    return missing


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("step", STEPS)
async def test_crash_at_step_then_restart(make_world: MakeWorld, report: Report, step: str, scenario: str) -> None:
    plan = SCENARIOS[scenario]
    world = await make_world()
    repo = world.repos[0]
    numbers = await world.open_prs(repo, plan.prs)
    await world.move_main(repo)  # so that no candidate is a commit the forge already has (a PR's own head)
    bot = world.bot_process()
    first = await bot.start(crash_at=step)
    await world.ready(bot)
    # Both PRs are in the queue before any gate runs: the crash lands in a gate, never in an enqueue.
    async with world.holding_train(1):
        for number in numbers:
            await world.queue(repo, number)
        await world.queued(len(numbers))

    code = await bot.wait_exit(within=60)
    assert code == -9, f"the bot should have killed itself at {step}, exit status {code}"
    crashed_after = time.time() - first.started
    moves_before = len(base_moves(await world.sim.log("push"), world.baseline_seq))

    second = await bot.start()
    outcomes = await world.settled(len(numbers))
    settled_after = time.time() - second.started
    await world.no_staging_left()

    assert Counter(outcomes.values()) == Counter(plan.outcomes), outcomes
    assert await violations(world) == []
    if scenario == "semantic":  # whichever was second is the one rejected, for the reason CI gave
        failed = [row for row in await world.entries() if row.state == "failed"]
        assert [row.reason for row in failed] == ["checks_failed"]

    # Attempt ids count from 1 in a fresh database: the crash hit the last attempt the first life started.
    started = sum("StartAttempt" in e.get("actions", ()) for e in first.events() if e.get("event") == "gate.decision")
    rows = {row.id: row for row in await world.entries()}
    crashed_in = [plan.prs[numbers.index(rows[i].number)][0] for i in await world.attempt_entries(started)]
    later_moves = [m for m in base_moves(await world.sim.log("push"), world.baseline_seq) if m["time"] > second.started]

    async def all_told() -> bool:
        return not await untold(world, repo)

    await eventually(all_told, within=20, what="the merge-bot status and one outcome comment on every PR")
    told_after = time.time() - second.started
    listening = second.first("serve.listening")
    decision = second.first("gate.decision")
    report(
        {
            "kind": "crash point",
            "step": step,
            "scenario": scenario,
            "crashed_after_s": crashed_after,
            "crashed_in_pr": ",".join(crashed_in),
            "base_moves_before_crash": moves_before,
            "restart_to_listening_s": listening["at"] - second.started if listening else None,
            "restart_to_decision_s": decision["at"] - second.started if decision else None,
            "restart_to_base_move_s": later_moves[0]["time"] - second.started if later_moves else None,
            "restart_to_settled_s": settled_after,
            "restart_to_all_told_s": told_after,
            "violations": 0,
        }
    )


class RedCandidateMerged(Exception):
    """The base moved to a candidate whose required check was red by then."""


async def test_candidate_turning_red_while_the_bot_is_down_is_not_merged(make_world: MakeWorld) -> None:
    """The merge is decided and recorded, the bot dies before the push, CI re-runs on the candidate and reports
    failure (the latest status per context wins, docs/faults.md #12): the restarted bot must not land it."""
    world = await make_world()
    repo = world.repos[0]
    [number] = await world.open_prs(repo, [("feature-a", {"a.txt": "a\n"})])
    await world.move_main(repo)
    bot = world.bot_process()
    await bot.start(crash_at="merge_intent")
    await world.ready(bot)
    await world.queue(repo, number)
    assert await bot.wait_exit(within=60) == -9
    async with world.engine.connect() as connection:
        candidate = await connection.scalar(select(Attempt.candidate_sha).where(Attempt.state == "merging"))
    assert candidate
    await world.sim.set_status(repo, candidate, "failure", context="ci/test")

    await bot.start()
    outcomes = await world.settled(1)
    await world.no_staging_left()
    if await world.main_sha(repo) == candidate:
        raise RedCandidateMerged(f"main moved to {candidate}, whose latest ci/test is failure")
    assert outcomes == {(repo, number): "failed"}
    assert await violations(world) == []
