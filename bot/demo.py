"""``merge-bot demo``: the whole queue on one machine, with nothing to set up but Python and git.

It starts the embedded PostgreSQL, the Gitea simulator (real git over HTTP, a CI that runs the repository's
own tests) and the bot, all in this process; creates ``acme/calculator`` with a unittest suite as its CI;
opens twelve PRs and queues them the way people would (``/merge``, a priority, a dependency, ``single``).
The queue tests them in batches of up to three, down a speculative chain of up to four candidates under CI
at once. Two PRs are green alone and red together (a semantic conflict): their batch is bisected and the
culprit, re-tested once in case it was flaky, is rejected. One conflicts textually with an earlier one; one
has a flaky test, re-tested on the same commit and merged. While it runs it shows the queue (the same view
as ``merge-bot status``) and the queue page's URL; at the end it prints what merged, what did not and why,
how many CI runs the queue used against what a serial queue would have needed, and checks that every commit
the base branch moved to was green on that very SHA.

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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import logs
from bot.clock import SystemClock
from bot.config import Settings, load_settings
from bot.db.models import Attempt, AttemptEntry, Entry
from bot.db.session import make_engine
from bot.queue.model import FINAL_ENTRY_STATES
from bot.status import render
from bot.web import views
from gitea_sim.logcheck import untested_base_moves

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
        # Flaky on purpose: its first run in the merge queue fails, every later one passes. (Runs of candidates
        # that also hold stats.py are red anyway and do not count.)
        marker = pathlib.Path(os.environ["DEMO_STATE"]) / "flaky-ran-once"
        queued = os.environ.get("CI_COMMIT_BRANCH", "").startswith("merge-bot/")
        if queued and not pathlib.Path("stats.py").exists() and not marker.exists():
            marker.touch()
            self.fail("connection reset by peer (a flaky test)")
"""


def _small(name: str, text: str) -> dict[str, str | None]:
    return {f"docs/{name}.md": text}


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
        "green alone, red on top of #2 (semantic conflict): its batch is bisected",
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
        "/merge single",
        "merged",
        "merged",
        "a flaky test: red once, re-tested on the same commit",
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
    *(
        Change(number, branch, title, author, _small(branch, f"# {title}\n"), "/merge", "merged", "merged", "clean")
        for number, branch, title, author in (
            (7, "install", "Document installing", "carol"),
            (8, "usage", "Document usage", "dave"),
            (9, "faq", "Add a FAQ", "alice"),
            (10, "contributing", "Say how to contribute", "bob"),
            (11, "security", "Add a security policy", "carol"),
            (12, "roadmap", "Sketch a roadmap", "dave"),
        )
    ),
)


@dataclass(frozen=True)
class Options:
    once: bool = False
    port: int | None = None
    as_json: bool = False
    data_dir: Path | None = None
    ci_delay: float = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="exit when the queue is drained (for scripts and tests)")
    parser.add_argument(
        "--port", type=int, default=None, help="the bot's port (default 8080 when free; 0: any free port)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("--data-dir", type=Path, default=None, help="keep everything here (default: a temp dir)")
    parser.add_argument(
        "--ci-delay", type=float, default=2.0, help="seconds each CI run waits before testing (default 2)"
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
            "MERGE_BOT_BATCH_MAX": "3",
            # The first batch starts once #1-#3 are queued (full) or 5 s after #1: #2's priority puts it first.
            "MERGE_BOT_BATCH_WAIT_SECONDS": "5",
            "MERGE_BOT_MAX_PARALLEL": "4",
            "MERGE_BOT_WINDOW_FLOOR": "2",
            "MERGE_BOT_FLAKY_RETRIES": "1",
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

    def _drained(self, latest: dict[int, views.EntryRow], trains: list[views.TrainRow]) -> bool:
        if any(train.depth or train.running for train in trains):
            return False
        for change in SCENARIO:
            row = latest.get(change.number)
            if row is None or row.state not in FINAL_ENTRY_STATES:
                return False
        return True

    def _view(self, trains: list[views.TrainRow]) -> RenderableType:
        tail = Text("\n".join(self.lines[-8:]), style="dim")
        return Group(render(trains, SystemClock().now()), tail)

    async def ci_figures(self) -> dict[str, Any]:
        """What the queue spent on CI, read from its attempts: runs, runs wasted on candidates abandoned because
        something ahead of them failed, the most candidates under CI at once, bisections and re-tests; and the
        runs a serial queue would have needed at the least (one per PR that reached CI, plus a re-test for each
        PR red alone), one after another."""
        async with self.engine.connect() as connection:
            attempts = (
                await connection.execute(
                    select(
                        Attempt.id,
                        Attempt.state,
                        Attempt.reason,
                        Attempt.ref,
                        Attempt.created_at,
                        Attempt.finished_at,
                        Attempt.retry_of,
                    )
                )
            ).all()
            counted = await connection.execute(
                select(AttemptEntry.attempt_id, func.count()).group_by(AttemptEntry.attempt_id)
            )
            sizes: dict[int, int] = {attempt_id: count for attempt_id, count in counted}
            entries = (await connection.execute(select(Entry.state, Entry.reason))).all()
        pushed = [a for a in attempts if a.ref]
        wasted = [a for a in pushed if a.state == "abandoned" and a.reason != "retried"]
        ended = {a.id: a.finished_at for a in attempts}
        # A re-test keeps the created_at of the attempt it re-tests (its commit's date): it starts when that ended.
        began = [(ended.get(a.retry_of) or a.created_at) if a.retry_of else a.created_at for a in pushed]
        events = sorted([(t, 1) for t in began] + [(a.finished_at, -1) for a in pushed if a.finished_at])
        deepest = under = 0
        for _, step in events:
            under += step
            deepest = max(deepest, under)
        tested = sum(1 for e in entries if e.state == "merged" or (e.state == "failed" and e.reason == "checks_failed"))
        red_alone = sum(1 for a in attempts if a.reason == "retried" and sizes.get(a.id, 0) == 1)  # re-tested
        return {
            "ci_runs": len(pushed),
            "ci_runs_wasted": len(wasted),
            "most_at_once": deepest,
            "bisections": sum(1 for a in attempts if a.reason == "bisected"),
            "retests": sum(1 for a in attempts if a.retry_of is not None),
            "serial_ci_runs": tested + red_alone,
        }

    async def summary(self, page: str) -> dict[str, Any]:
        latest = await self._latest()
        pulls = []
        for change in SCENARIO:
            row = latest[change.number]
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
                    "retested": await self._retested(row.id),
                    "merged_sha": row.merged_sha,
                }
            )
        # Every commit the base moved to was green on that very SHA (the simulator's log of pushes and CI runs);
        # a PR's own commit inside a batch need not be a tip itself, only an ancestor of a tested one.
        untested = untested_base_moves(await self.sim.log(), 0, pusher="merge-bot")
        ok = not untested and all(p["outcome"] == p["expected"] and p["reason"] == p["expected_reason"] for p in pulls)
        main = await self.sim.api("GET", f"/repos/{REPO}/branches/main")
        return {
            "ok": ok,
            "seconds": round(time.monotonic() - self.started, 1),
            "queue_page": page,
            "repository": REPO,
            "main": main["commit"]["id"],
            "pulls": pulls,
            "base_green": not untested,
            "untested_base_moves": untested,
            "ci": await self.ci_figures(),
        }

    async def _retested(self, entry_id: int) -> bool:
        async with self.engine.connect() as connection:
            query = (
                select(func.count())
                .select_from(Attempt)
                .join(AttemptEntry, AttemptEntry.attempt_id == Attempt.id)
                .where(AttemptEntry.entry_id == entry_id, Attempt.retry_of.is_not(None))
            )
            return bool((await connection.execute(query)).scalar())


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['repository']}: what the queue did", title_justify="left")
    for column in ("PR", "Title", "The case", "Queued with", "Outcome", "Why", "Expected"):
        table.add_column(column)
    for pull in summary["pulls"]:
        style = "green" if pull["outcome"] == "merged" else "red"
        good = pull["outcome"] == pull["expected"] and pull["reason"] == pull["expected_reason"]
        why = (pull["reason_text"] or "") + (" (after a re-test)" if pull["retested"] else "")
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
        f"{'yes' if summary['base_green'] else 'NO'}."
    )
    ci = summary["ci"]
    console.print(
        f"CI: {_count(ci['ci_runs'], 'run')}, up to {ci['most_at_once']} candidates under test at once "
        f"({_count(ci['ci_runs_wasted'], 'run')} of candidates abandoned when something ahead failed, "
        f"{_count(ci['bisections'], 'bisection')}, {_count(ci['retests'], 're-test')}); a serial queue would have "
        f"needed at least {_count(ci['serial_ci_runs'], 'run')}, one after another."
    )
