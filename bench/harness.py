"""What the benchmarks in bench/ share: progress lines, bounded waits, percentiles, databases, local servers.

Imported by ``bench/queue.py``, ``bench/ingest.py`` and ``bench/throughput.py`` as the top-level module
``harness``. Run as ``python bench/<name>.py``, Python puts bench/ first on sys.path, where bench/queue.py
would shadow the standard library's ``queue`` (asyncio's thread pool imports it). Each script therefore
moves that entry to the *end* of sys.path before any other import::

    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        sys.path.append(sys.path.pop(0))

so the standard library wins over bench/queue.py and ``import harness`` still finds this file.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp import web

from bot.db.migrate import upgrade_async
from bot.embedded_pg import EmbeddedPostgres

R = TypeVar("R")
POLL_S = 0.05  # how often a benchmark looks at the database or the simulator while it waits


class BenchError(Exception):
    """The run could not be measured (a deadline passed, a PR did not merge, ...)."""


def progress(message: str) -> None:
    """A progress line on stderr, tagged with the running script's name (``[bench/queue] ...``)."""
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "bench"
    print(f"[bench/{name}] {message}", file=sys.stderr, flush=True)


async def eventually(check: Callable[[], Awaitable[R | None]], within: float, what: str) -> R:
    """Poll ``check`` every POLL_S until it returns something truthy; BenchError after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a sample, sorted or not; NaN for an empty one."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- databases ---------------------------------------------------------------------------------------


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead (query, e.g. a socket ``host=``, kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+asyncpg://``, ``postgres://``) as asyncpg takes it."""
    return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql://", url)


@contextlib.asynccontextmanager
async def fresh_database(server_url: str | None, workdir: Path, label: str = "bench") -> AsyncIterator[str]:
    """A new database migrated by Alembic, on ``server_url`` (a server's maintenance database) or on an
    embedded server started here in ``workdir / "pg"``; dropped (and the embedded server stopped) after."""
    embedded: EmbeddedPostgres | None = None
    if server_url is None:
        embedded = EmbeddedPostgres(workdir / "pg", database="postgres")
        progress("starting the embedded PostgreSQL")
        server_url = await embedded.astart()
    try:
        name = f"merge_bot_{label}_{os.getpid()}_{secrets.token_hex(3)}"
        admin = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = with_database(server_url, name)
                await upgrade_async(url)
                yield url
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    finally:
        if embedded is not None:
            await embedded.astop()


# -- local servers -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int, host: str = "127.0.0.1") -> AsyncIterator[None]:
    """``app`` served on ``host:port`` (loopback) for the duration of the block."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()


def checkout_commit() -> str:
    """The commit of the checkout measured (with ``+dirty`` when bot/ or gitea_sim/ has local changes)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "bot", "gitea_sim"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")
