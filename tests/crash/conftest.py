"""Fixtures of the crash suite: a simulator per test, worlds whose bot processes are always reaped, and a
report of the figures (crash matrix, recovery times, faults) printed at the end of the run."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import SimHandle, running_sim
from tests.crash.harness import CrashWorld, make_crash_world

REPORT = pytest.StashKey[list[dict[str, Any]]]()
MakeWorld = Callable[..., Awaitable[CrashWorld]]
Report = Callable[[dict[str, Any]], None]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimHandle]:
    async with running_sim(tmp_path) as handle:
        yield handle


@pytest.fixture
async def make_world(
    sim: SimHandle, engine: AsyncEngine, database_url: str, tmp_path: Path
) -> AsyncIterator[MakeWorld]:
    """``await make_world(repos=(...), ci_delay=...)``: a world on this test's simulator and database (or
    ``engine=``, ``database_url=`` of another). Its bot
    processes are stopped at teardown, and their output is printed (pytest shows it when the test failed)."""
    made: list[CrashWorld] = []

    async def make(**options: Any) -> CrashWorld:
        options.setdefault("engine", engine)  # a test with a database of its own passes its engine and URL
        options.setdefault("database_url", database_url)
        world = await make_crash_world(sim, workdir=tmp_path / f"world-{len(made)}", **options)
        made.append(world)
        return world

    try:
        yield make
    finally:
        for world in made:
            await world.close()
            print(world.output())


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Report:
    """Record one row of figures for the end-of-run summary."""
    rows = request.config.stash.setdefault(REPORT, [])
    return rows.append


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(REPORT, [])
    if not rows:
        return
    write = terminalreporter.write_line
    terminalreporter.section("merge-bot crash suite: figures")
    for kind in dict.fromkeys(row["kind"] for row in rows):
        write(f"[{kind}]")
        for row in rows:
            if row["kind"] == kind:
                write("  " + "  ".join(f"{key}={_fmt(value)}" for key, value in row.items() if key != "kind"))
    target = os.environ.get("MERGE_BOT_CRASH_REPORT")
    if target:
        Path(target).write_text(json.dumps(rows, indent=2))
        write(f"(written to {target})")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
