"""A queue of 20 PRs drains while the forge misbehaves at a fixed rate (docs/faults.md #3, #19, #21-#24):
the outcome is the clean run's.

One bot process works two repositories with the same initial tree. First 20 PRs drain on ``clean`` with no
fault; then 20 PRs with the same contents drain on ``faulty`` while a fault pump keeps one fault armed at all
times, a new one every ``PERIOD`` seconds, in rotation: 5xx on reads, merges and pushes that are carried out
and then answered 5xx, refused pushes, failed status posts, a slow forge, and webhooks dropped, duplicated,
re-delivered under a new UUID and delayed. The contents make the outcome independent of the order: 19 PRs
add a file each, one always fails CI. Then: the same PRs merged and the same rejected, main's tree equal to
the clean run's, and every invariant of the crash suite kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from gitea_sim.testing import SimHandle
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import CrashWorld, violations

pytestmark = pytest.mark.slow
PERIOD = 0.25
BROKEN = "pr-07"
PRS: tuple[tuple[str, dict[str, str]], ...] = tuple(
    (f"pr-{i:02d}", {"broken.flag": "x\n"} if f"pr-{i:02d}" == BROKEN else {f"file-{i:02d}.txt": f"{i}\n"})
    for i in range(20)
)
FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "http", "method": "GET", "path": "/api/v1/repos/*", "status": 500},
    {"kind": "webhook", "action": "drop", "event": "*"},
    {"kind": "http", "method": "POST", "path": "/api/v1/repos/*/pulls/*/merge", "status": 500, "when": "after"},
    {"kind": "webhook", "action": "duplicate", "event": "*"},
    {"kind": "http", "method": "*", "path": "/api/v1/repos/*", "status": 0, "latency_s": 2.0},
    {"kind": "webhook", "action": "redeliver", "event": "*"},
    {"kind": "http", "method": "POST", "path": "/*.git/git-receive-pack", "status": 503},
    {"kind": "webhook", "action": "delay", "event": "*", "delay_s": 1.0},
    {"kind": "http", "method": "POST", "path": "/*.git/git-receive-pack", "status": 500, "when": "after"},
    {"kind": "http", "method": "POST", "path": "/api/v1/repos/*/statuses/*", "status": 502},
    {"kind": "http", "method": "DELETE", "path": "/api/v1/repos/*/branches/*", "status": 500, "when": "after"},
    {"kind": "http", "method": "GET", "path": "/api/v1/repos/*/commits/*/statuses", "status": 503},
)


def describe(spec: dict[str, Any]) -> str:
    if spec["kind"] == "webhook":
        return f"webhook {spec['action']}"
    if not spec.get("status"):
        return f"{spec['latency_s']} s latency on {spec['method']} {spec['path']}"
    return f"{spec['status']} {spec.get('when', 'before')} {spec['method']} {spec['path']}"


@dataclass
class FaultPump:
    """Keeps one fault armed at a time, a fresh one every ``period`` seconds, in rotation through ``specs``."""

    sim: SimHandle
    specs: tuple[dict[str, Any], ...]
    period: float
    armed: dict[int, dict[str, Any]] = field(default_factory=dict)  # fault id → its spec
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for spec in itertools.cycle(self.specs):
            await self.sim.sim_api("DELETE", "/_sim/faults")
            fault = await self.sim.fault(**spec, count=1)
            self.armed[int(fault["id"])] = spec
            await asyncio.sleep(self.period)  # the rate of the faults, not a wait for something to happen

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.sim.sim_api("DELETE", "/_sim/faults")

    @property
    def committed(self) -> frozenset[int]:
        """Faults that answer an error after the forge carried the call out."""
        return frozenset(fid for fid, spec in self.armed.items() if spec.get("when") == "after")

    def fired(self, log: list[dict[str, Any]], since: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        for event in log:
            if event["seq"] <= since:
                continue
            if event["kind"] in ("api", "git") and event.get("fault") in self.armed:
                counts[describe(self.armed[event["fault"]])] += 1
            elif event["kind"] == "delivery_fault":
                counts[f"webhook {event['action']}"] += 1
        return counts


async def drain(world: CrashWorld, repo: str, expected_entries: int, pump: FaultPump | None) -> dict[str, str]:
    """Open the PRs, queue them all, wait until every entry is final; branch → outcome."""
    numbers = dict(zip(await world.open_prs(repo, PRS), (branch for branch, _ in PRS), strict=True))
    if pump is not None:
        pump.start()
    try:
        for number in numbers:
            await world.queue(repo, number)
        outcomes = await world.settled(expected_entries, within=240)
    finally:
        if pump is not None:
            await pump.stop()
    return {numbers[number]: state for (name, number), state in outcomes.items() if name == repo}


async def test_queue_drains_to_the_clean_outcome_under_forge_faults(make_world: MakeWorld, report: Report) -> None:
    world = await make_world(repos=("clean", "faulty"))
    clean, faulty = world.repos
    bot = world.bot_process()
    await bot.start()
    await world.ready(bot)
    await world.reconciled()

    loop = asyncio.get_running_loop()
    started = loop.time()
    expected = await drain(world, clean, len(PRS), None)
    clean_seconds = loop.time() - started
    assert Counter(expected.values()) == Counter({"merged": len(PRS) - 1, "failed": 1}), expected
    assert expected[BROKEN] == "failed"

    since = (await world.sim.log())[-1]["seq"]
    pump = FaultPump(world.sim, FAULTS, PERIOD)
    started = loop.time()
    outcome = await drain(world, faulty, 2 * len(PRS), pump)
    faulty_seconds = loop.time() - started

    assert outcome == expected
    assert await world.main_tree(faulty) == await world.main_tree(clean)
    await world.no_staging_left()
    assert await violations(world, pump.committed) == []
    assert bot.running and len(bot.lives) == 1
    log = await world.sim.log()
    fired = pump.fired(log, since)
    assert sum(fired.values()) >= 20, fired  # the run really was under fire
    report(
        {
            "kind": "forge faults",
            "prs": len(PRS),
            "faults_armed": len(pump.armed),
            "faults_fired": sum(fired.values()),
            "clean_drain_s": clean_seconds,
            "faulty_drain_s": faulty_seconds,
            "same_outcome": True,
            "same_tree": True,
            "violations": 0,
        }
    )
    for kind, count in sorted(fired.items()):
        report({"kind": "forge faults fired", "fault": kind, "times": count})
