"""``merge-bot demo``: the whole queue on one machine, with nothing to set up but Python and git.

It starts the embedded PostgreSQL, the Gitea simulator (real git over HTTP, a CI that runs the repository's
own tests) and the bot, all in this process; creates ``acme/calculator`` with a unittest suite as its CI;
opens six PRs and queues them the way people would (``/merge``, a priority, a dependency). Two of them are
green alone and red together (a semantic conflict), one conflicts textually with an earlier one, one has a
flaky test that a maintainer retries with ``/merge retry``. While it runs it shows the queue (the same view
as ``merge-bot status``) and the queue page's URL; at the end it prints what merged, what did not and why,
and checks that every commit the base branch moved to was green on that very SHA.

``--once`` stops when the queue is drained (exit 0 when every outcome was the expected one); without it the
queue page stays up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import logs
from bot.clock import SystemClock
from bot.config import Settings, load_settings
from bot.db.session import make_engine
from bot.queue.model import FINAL_ENTRY_STATES
from bot.status import render
from bot.web import views

if TYPE_CHECKING:
    from gitea_sim.testing import SimHandle, SimUser

REPO = "acme/calculator"
WAIT_SECONDS = 120.0
FLAKY_MARKER = "flaky-ran-once"

CALC = '''"""A tiny calculator: the project of merge-bot's demo."""

VERSION = "1.0"


def add(a, b):
    return a + b
'''
TEST_CALC = """import unittest

from calc import add


class TestAdd(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)
"""
FLAKY_TEST = """import os
import pathlib
import unittest


class TestNetwork(unittest.TestCase):
    def test_retries_a_dropped_connection(self):
        # Flaky on purpose: the first run in the merge queue fails, every later one passes.
        marker = pathlib.Path(os.environ["DEMO_STATE"]) / "flaky-ran-once"
        if os.environ.get("CI_COMMIT_BRANCH", "").startswith("merge-bot/") and not marker.exists():
            marker.touch()
            self.fail("connection reset by peer (a flaky test)")
"""


@dataclass(frozen=True)
class Change:
    """A PR of the scenario: what it changes, how it is queued, and what the queue should make of it."""

    number: int
    branch: str
    title: str
    author: str
    files: dict[str, str | None]
    command: str
    expect: str  # merged | failed
    expect_reason: str
    story: str
    retry_once: bool = False  # a maintainer answers a failure with /merge retry


SCENARIO = (
    Change(
        1,
        "subtract",
        "Add subtract()",
        "alice",
        {
            "ops.py": "def subtract(a, b):\n    return a - b\n",
            "test_ops.py": "import unittest\n\nfrom ops import subtract\n\n\nclass TestSubtract(unittest.TestCase):\n"
            "    def test_subtract(self):\n        self.assertEqual(subtract(5, 3), 2)\n",
        },
        "/merge",
        "merged",
        "merged",
        "clean",
    ),
    Change(
        2,
        "rename-plus",
        "Rename add() to plus()",
        "bob",
        {"calc.py": CALC.replace("def add(", "def plus("), "test_calc.py": TEST_CALC.replace("add", "plus")},
        "/merge p=1",
        "merged",
        "merged",
        "clean, queued with a priority",
    ),
    Change(
        3,
        "sum-all",
        "Add sum_all(), built on add()",
        "carol",
        {
            "stats.py": "from calc import add\n\n\ndef sum_all(values):\n    total = 0\n    for value in values:\n"
            "        total = add(total, value)\n    return total\n",
            "test_stats.py": "import unittest\n\nfrom stats import sum_all\n\n\nclass TestSumAll(unittest.TestCase):\n"
            "    def test_sum_all(self):\n        self.assertEqual(sum_all([1, 2, 3]), 6)\n",
        },
        "/merge",
        "failed",
        "checks_failed",
        "green alone, red on top of #2 (semantic conflict)",
    ),
    Change(
        4,
        "rename-addition",
        "Rename add() to addition()",
        "dave",
        {"calc.py": CALC.replace("def add(", "def addition("), "test_calc.py": TEST_CALC.replace("add", "addition")},
        "/merge",
        "failed",
        "conflict",
        "edits the lines #2 renamed (textual conflict)",
    ),
    Change(
        5,
        "network",
        "Retry dropped connections",
        "alice",
        {"test_network.py": FLAKY_TEST},
        "/merge",
        "merged",
        "merged",
        "a flaky test, retried once",
        retry_once=True,
    ),
    Change(
        6,
        "changelog",
        "Write the changelog for 1.1",
        "bob",
        {"CHANGELOG.md": "# 1.1\n\n- subtract(), plus(), retries\n"},
        "/merge after #5",
        "merged",
        "merged",
        "waits for #5 (dependency)",
    ),
)


@dataclass(frozen=True)
class Options:
    once: bool = False
    port: int | None = None
    as_json: bool = False
    data_dir: Path | None = None
    ci_delay: float = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="exit when the queue is drained (for scripts and tests)")
    parser.add_argument(
        "--port", type=int, default=None, help="the bot's port (default 8080 when free; 0: any free port)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep everything here (default: a temp dir)")
    parser.add_argument(
        "--ci-delay", type=float, default=1.0, help="seconds each CI run waits before testing (default 1)"
    )


def main(args: argparse.Namespace) -> int:
    options = Options(args.once, args.port, args.json, args.data_dir, max(0.0, args.ci_delay))
    return asyncio.run(run(options))


class DemoError(Exception):
    """The demo cannot run here (no git, a port in use): one line for the user."""


async def run(options: Options) -> int:
    console = Console(stderr=options.as_json, highlight=False)
    if not console.is_terminal:
        console.width = 120
    started = time.monotonic()
    workdir = options.data_dir or Path(tempfile.mkdtemp(prefix="merge-bot-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        _check_git()
        async with contextlib.AsyncExitStack() as stack:
            log_file = stack.enter_context((workdir / "bot.log").open("a"))
            console.print(f"[b]merge-bot demo[/b] in {workdir}: starting PostgreSQL, a simulated Gitea and the bot…")
            url = await stack.enter_async_context(_database(workdir / "postgres"))
            sim = await stack.enter_async_context(_simulator(workdir / "gitea"))
            people = await _forge(sim, workdir, options.ci_delay)
            settings = _settings(sim, people["merge-bot"], workdir, options.port)
            logs.configure("info", "json", settings.secrets(), stream=log_file)
            await stack.enter_async_context(_bot(settings, url, sim))
            engine = make_engine(url, pool_size=2, application_name="merge-bot demo")
            stack.push_async_callback(engine.dispose)
            page = str(settings.external_url).rstrip("/") + f"/queue/{REPO}"
            console.print(f"Queue page: [b]{page}[/b]   (simulated Gitea at {sim.url})")
            demo = Demo(sim, people, engine, settings, console, started)
            await demo.open_and_queue()
            await demo.until_drained()
            summary = await demo.summary(page)
            _print_summary(console, summary)
            if options.as_json:
                print(json.dumps(summary, indent=2))
            if not options.once:
                console.print(f"The queue page stays up at {page}. Ctrl-C stops the demo.")
                await _until_interrupted()
            return 0 if summary["ok"] else 1
    except DemoError as exc:
        console.print(f"merge-bot demo: {exc}")
        return 1
    finally:
        if options.data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _check_git() -> None:
    git = shutil.which("git")
    if git is None:
        raise DemoError("git is not installed (the bot builds candidates with git >= 2.38)")
    found = subprocess.run([git, "--version"], capture_output=True, text=True, check=False).stdout.split()
    version = tuple(int(part) for part in (found[2] if len(found) > 2 else "0").split(".")[:2] if part.isdigit())
    if version < (2, 38):
        raise DemoError(f"git {'.'.join(map(str, version))} is too old: the bot needs git >= 2.38 (merge-tree)")


@contextlib.asynccontextmanager
async def _database(directory: Path) -> AsyncIterator[str]:
    from bot.db.migrate import upgrade_async
    from bot.embedded_pg import EmbeddedPostgres

    embedded = EmbeddedPostgres(directory)
    try:
        url = await embedded.astart()
    except Exception as exc:
        raise DemoError(f"the embedded PostgreSQL did not start in {directory}: {exc}") from None
    try:
        await upgrade_async(url)
        yield url
    finally:
        await embedded.astop()


@contextlib.asynccontextmanager
async def _simulator(directory: Path) -> AsyncIterator[SimHandle]:
    from gitea_sim.testing import running_sim

    async with running_sim(directory) as sim:
        yield sim


async def _forge(sim: SimHandle, workdir: Path, ci_delay: float) -> dict[str, SimUser]:
    """Users, the repository with its tests, and CI running them on every push (as `python -m unittest`)."""
    state = workdir / "ci-state"
    state.mkdir(exist_ok=True)
    people = {login: await sim.create_user(login) for login in ("acme", "merge-bot", "maria", "alice", "bob")}
    people.update({login: await sim.create_user(login) for login in ("carol", "dave")})
    await sim.create_repo(people["acme"], "calculator")
    await sim.add_collaborator(REPO, "merge-bot", "admin", as_user=people["acme"])
    for login in ("maria", "alice", "bob", "carol", "dave"):
        await sim.add_collaborator(REPO, login, "write", as_user=people["acme"])
    await sim.push_commit(
        REPO, people["acme"], "main", {"calc.py": CALC, "test_calc.py": TEST_CALC}, message="A tiny calculator"
    )
    command = f"DEMO_STATE={shlex.quote(str(state))} {shlex.quote(sys.executable)} -m unittest -q"
    await sim.set_ci(REPO, command, context="ci/test", delay_s=ci_delay)
    return people


def _settings(sim: SimHandle, bot: SimUser, workdir: Path, port: int | None) -> Settings:
    from gitea_sim.testing import free_port

    preferred = 8080 if port is None else port
    chosen = preferred if preferred and (port is not None or _free(preferred)) else free_port()
    if not _free(chosen):
        raise DemoError(f"port {chosen} is in use: pass --port with a free one")
    return load_settings(
        {
            "MERGE_BOT_GITEA_URL": sim.url,
            "MERGE_BOT_GITEA_TOKEN": bot.token,
            "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
            "MERGE_BOT_LISTEN": f"127.0.0.1:{chosen}",
            "MERGE_BOT_REPOS": REPO,
            "MERGE_BOT_DATA_DIR": str(workdir / "bot"),
            "MERGE_BOT_GATE_POLL_SECONDS": "0.5",
            "MERGE_BOT_CI_TIMEOUT_SECONDS": "120",
            "MERGE_BOT_RECONCILE_SECONDS": "5",
            "MERGE_BOT_REAP_SECONDS": "5",
            "MERGE_BOT_BATCH_MAX": "1",  # the demo's six PRs tell the story one candidate at a time
            "MERGE_BOT_MAX_PARALLEL": "1",
            "MERGE_BOT_FLAKY_RETRIES": "0",
        }
    )


def _free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def _bot(settings: Settings, url: str, sim: SimHandle) -> AsyncIterator[None]:
    from bot.app import create_app

    runner = web.AppRunner(create_app(settings, database_url=url), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.listen.host, settings.listen.port).start()
        deadline = time.monotonic() + 30
        while not any(
            hook["config"]["url"] == settings.webhook_url for hook in await sim.api("GET", f"/repos/{REPO}/hooks")
        ):
            if time.monotonic() > deadline:
                raise DemoError("the bot did not set up its webhook within 30 s (see bot.log)")
            await asyncio.sleep(0.1)
        yield
    finally:
        await runner.cleanup()


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


@dataclass
class Demo:
    sim: SimHandle
    people: dict[str, SimUser]
    engine: AsyncEngine
    settings: Settings
    console: Console
    started: float
    seen: dict[int, tuple[int, str]] = field(default_factory=dict)
    retried: dict[int, int] = field(default_factory=dict)  # PR → the failed entry a retry answered
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f} s  {text}"
        self.lines.append(line)
        if not self.console.is_terminal:
            self.console.print(line)

    async def open_and_queue(self) -> None:
        for change in SCENARIO:
            author = self.people[change.author]
            await self.sim.push_commit(REPO, author, change.branch, change.files, message=change.title, base="main")
            pr = await self.sim.create_pr(REPO, author, head=change.branch, base="main", title=change.title)
            assert pr["number"] == change.number, f"expected PR #{change.number}, got #{pr['number']}"
        self.say(f"{len(SCENARIO)} PRs opened; maria queues them")
        for change in SCENARIO:
            await self.sim.comment(REPO, change.number, self.people["maria"], change.command)
            await self._until(lambda c=change: self._has_entry(c.number), f"#{change.number} to be queued")
            self.say(f"#{change.number} {change.title}: `{change.command}`")

    async def _has_entry(self, number: int) -> bool:
        return number in await self._latest()

    async def _latest(self) -> dict[int, views.EntryRow]:
        async with views.reading(self.engine) as session:
            rows = await views.entries(session, views.links(self.settings), REPO, limit=100) or []
        latest: dict[int, views.EntryRow] = {}
        for row in rows:  # newest first
            latest.setdefault(row.pull.number, row)
        return latest

    async def _until(self, check: Any, what: str, within: float = WAIT_SECONDS) -> None:
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                raise DemoError(f"timed out after {within:.0f} s waiting for {what} (see bot.log)")
            await asyncio.sleep(0.1)

    async def until_drained(self) -> None:
        """Show the queue until every PR reached its final state and the queue has nothing left to do."""
        live = Live(console=self.console, refresh_per_second=4, transient=False) if self.console.is_terminal else None
        deadline = time.monotonic() + WAIT_SECONDS
        with live or contextlib.nullcontext():
            while True:
                latest = await self._latest()
                self._note(latest)
                await self._retry(latest)
                async with views.reading(self.engine) as session:
                    trains = await views.trains(session, views.links(self.settings), SystemClock().now())
                if live is not None:
                    live.update(self._view(trains))
                if self._drained(latest, trains):
                    return
                if time.monotonic() > deadline:
                    raise DemoError(f"the queue did not drain within {WAIT_SECONDS:.0f} s (see bot.log)")
                await asyncio.sleep(0.25)

    def _note(self, latest: dict[int, views.EntryRow]) -> None:
        for number, row in sorted(latest.items()):
            if self.seen.get(number) != (row.id, row.state):
                self.seen[number] = (row.id, row.state)
                words = row.reason_text if row.state in FINAL_ENTRY_STATES else row.state
                self.say(f"#{number} {row.pull.title}: {words}")

    async def _retry(self, latest: dict[int, views.EntryRow]) -> None:
        for change in SCENARIO:
            row = latest.get(change.number)
            if change.retry_once and row is not None and row.state == "failed" and change.number not in self.retried:
                self.retried[change.number] = row.id
                await self.sim.comment(REPO, change.number, self.people["maria"], "/merge retry")
                self.say(f"#{change.number} failed on a flaky test; maria comments `/merge retry`")

    def _drained(self, latest: dict[int, views.EntryRow], trains: list[views.TrainRow]) -> bool:
        if any(train.depth or train.running for train in trains):
            return False
        for change in SCENARIO:
            row = latest.get(change.number)
            if row is None or row.state not in FINAL_ENTRY_STATES:
                return False
            if change.retry_once and row.state == "failed" and self.retried.get(change.number) in (None, row.id):
                return False  # the retry has not been answered (or asked) yet
        return True

    def _view(self, trains: list[views.TrainRow]) -> RenderableType:
        tail = Text("\n".join(self.lines[-8:]), style="dim")
        return Group(render(trains, SystemClock().now()), tail)

    async def summary(self, page: str) -> dict[str, Any]:
        latest = await self._latest()
        pulls = []
        for change in SCENARIO:
            row = latest[change.number]
            green = None
            if row.merged_sha:
                statuses = await self.sim.api("GET", f"/repos/{REPO}/commits/{row.merged_sha}/statuses")
                green = any(s["context"] == "ci/test" and s["status"] == "success" for s in statuses)
            pulls.append(
                {
                    "number": change.number,
                    "title": change.title,
                    "story": change.story,
                    "queued_with": change.command,
                    "outcome": row.state,
                    "reason": row.reason,
                    "reason_text": row.reason_text,
                    "expected": change.expect,
                    "expected_reason": change.expect_reason,
                    "retried": change.number in self.retried,
                    "merged_sha": row.merged_sha,
                    "tested_green": green,
                }
            )
        ok = all(
            p["outcome"] == p["expected"] and p["reason"] == p["expected_reason"] and p["tested_green"] is not False
            for p in pulls
        )
        main = await self.sim.api("GET", f"/repos/{REPO}/branches/main")
        return {
            "ok": ok,
            "seconds": round(time.monotonic() - self.started, 1),
            "queue_page": page,
            "repository": REPO,
            "main": main["commit"]["id"],
            "pulls": pulls,
        }


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['repository']}: what the queue did", title_justify="left")
    for column in ("PR", "Title", "The case", "Queued with", "Outcome", "Why", "Expected"):
        table.add_column(column)
    for pull in summary["pulls"]:
        style = "green" if pull["outcome"] == "merged" else "red"
        good = pull["outcome"] == pull["expected"] and pull["reason"] == pull["expected_reason"]
        why = (pull["reason_text"] or "") + (" (after a /merge retry)" if pull["retried"] else "")
        table.add_row(
            f"#{pull['number']}",
            pull["title"],
            pull["story"],
            pull["queued_with"],
            Text(pull["outcome"], style=style),
            why,
            "yes" if good else Text(f"no: {pull['expected']}", style="bold red"),
        )
    console.print(table)
    merged = [p for p in summary["pulls"] if p["outcome"] == "merged"]
    rejected = [p for p in summary["pulls"] if p["outcome"] != "merged"]
    verdict = "as expected" if summary["ok"] else "NOT as expected"
    console.print(
        f"{len(summary['pulls'])} PRs in {summary['seconds']} s: {len(merged)} merged, {len(rejected)} rejected, "
        f"{verdict}. main is at {summary['main'][:10]}; every commit it moved to was green on that very SHA: "
        f"{'yes' if all(p['tested_green'] for p in merged) else 'NO'}."
    )
