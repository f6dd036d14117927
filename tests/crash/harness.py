"""The crash-test harness: merge-bot as real processes (``python -m bot serve``) against the in-process Gitea
simulator and a real PostgreSQL, killed and restarted at will.

``BotProcess`` is one bot: its settings in ``MERGE_BOT_*`` variables, each life's output captured to its own
file (JSON log lines), started, SIGKILLed, stopped and restarted on the same port (the forge's webhook points
at its URL). ``CrashWorld`` is a scenario: users, repositories with a CI that runs the repository's own
script, PRs, ``/merge`` comments, and read-backs of the database for the waits and the invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db.models import Attempt, AttemptEntry, Entry, PullRequest, Repository
from bot.gate.locks import NAMESPACE
from bot.queue.model import ACTIVE_ATTEMPT_STATES, ACTIVE_ENTRY_STATES, AttemptState
from gitea_sim.gitrepo import run_git
from gitea_sim.testing import SimHandle, SimUser, free_port
from tests.crash.invariants import (
    ZERO_SHA,
    AttemptRow,
    base_moves,
    broken_chains,
    database_disagrees,
    merged_twice,
    overlapping_attempts,
    untested_base_moves,
)
from tests.e2e.conftest import CI_SCRIPT, eventually

FINAL_STATES = ("merged", "failed", "cancelled")


# -- the bot as a process --------------------------------------------------------------------------------


@dataclass
class Life:
    """One run of a bot process, from spawn to exit."""

    number: int
    started: float  # wall clock (time.time()) at spawn, comparable with the simulator's log times
    log: Path
    crash_at: str | None
    pid: int = 0
    returncode: int | None = None

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of this life, each with ``at`` (wall clock seconds) added."""
        found: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.log.read_text(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                stamp = event.get("timestamp")
                if isinstance(stamp, str):
                    event["at"] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                found.append(event)
        return found

    def first(self, name: str, **match: Any) -> dict[str, Any] | None:
        for event in self.events():
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        return None


class BotProcess:
    """``python -m bot serve`` with its own port, data directory and output files, restartable."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.env = env
        self.workdir = workdir
        self.lives: list[Life] = []
        self._proc: asyncio.subprocess.Process | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Where the forge reaches this bot (its webhook is ``url``/webhook)."""
        return self.env["MERGE_BOT_EXTERNAL_URL"]

    @property
    def life(self) -> Life:
        return self.lives[-1]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, crash_at: str | None = None) -> Life:
        assert not self.running, f"{self.name} is already running"
        life = Life(len(self.lives) + 1, time.time(), self.workdir / f"{self.name}-{len(self.lives) + 1}.log", crash_at)
        env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
        env.update(self.env)
        env["MERGE_BOT_LOG_FORMAT"] = "json"
        if crash_at is not None:
            env["MERGE_BOT_CRASH_AT"] = crash_at
        with life.log.open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "serve",
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown kills its git children too
            )
        life.pid = self._proc.pid
        self.lives.append(life)
        return life

    async def listening(self, within: float = 30.0) -> None:
        async def check() -> dict[str, Any] | None:
            return self.life.first("serve.listening")

        await eventually(check, within=within, what=f"{self.name} to listen")

    async def wait_exit(self, within: float) -> int:
        assert self._proc is not None
        try:
            code = await asyncio.wait_for(self._proc.wait(), within)
        except TimeoutError:
            raise AssertionError(f"{self.name} did not exit within {within} s") from None
        self.life.returncode = code
        self._signal(signal.SIGKILL)  # at once: whatever it started and left behind (a git cut short by a crash)
        return code

    async def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running:
            self._signal(signal.SIGKILL)
            await self.wait_exit(10)

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it lingers."""
        if not self.running:
            return
        self._signal(signal.SIGTERM)
        try:
            await self.wait_exit(10)
        except AssertionError:
            await self.kill()

    def _signal(self, signum: int) -> None:
        """Signal the process group this bot leads (it was started in a session of its own)."""
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def output(self, tail: int = 80) -> str:
        parts = []
        for life in self.lives:
            lines = life.log.read_text(errors="replace").splitlines() if life.log.exists() else []
            lines = [line for line in lines if '"logger": "apscheduler' not in line]  # a line per job run
            shown = lines[-tail:]
            parts.append(
                f"--- {self.name} life {life.number} (crash_at={life.crash_at}, exit={life.returncode}, "
                f"{len(lines)} lines, last {len(shown)}) ---\n" + "\n".join(shown)
            )
        return "\n".join(parts)


# -- the scenario ----------------------------------------------------------------------------------------


@dataclass
class CrashWorld:
    """A simulator with users and repositories, a database, and the bots that work them."""

    sim: SimHandle
    engine: AsyncEngine
    database_url: str
    workdir: Path
    owner: SimUser
    bot: SimUser
    maint: SimUser
    repos: list[str]
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    bots: list[BotProcess] = field(default_factory=list)
    baseline_seq: int = 0  # the simulator's log position once the scenario is set up

    def bot_process(
        self,
        name: str = "bot",
        *,
        port: int | None = None,
        external_url: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> BotProcess:
        port = port or free_port()
        env = {
            "MERGE_BOT_DATABASE_URL": self.database_url,
            "MERGE_BOT_GITEA_URL": self.sim.url,
            "MERGE_BOT_GITEA_TOKEN": self.bot.token,
            "MERGE_BOT_WEBHOOK_SECRET": self.secret,
            "MERGE_BOT_LISTEN": f"127.0.0.1:{port}",
            "MERGE_BOT_EXTERNAL_URL": external_url or f"http://127.0.0.1:{port}",
            "MERGE_BOT_REPOS": ",".join(self.repos),
            "MERGE_BOT_DATA_DIR": str(self.workdir / f"{name}-data"),
            "MERGE_BOT_GATE_POLL_SECONDS": "0.5",
            "MERGE_BOT_RECONCILE_SECONDS": "1",
            "MERGE_BOT_REAP_SECONDS": "1",
            "MERGE_BOT_LEASE_SECONDS": "5",
            "MERGE_BOT_CI_TIMEOUT_SECONDS": "120",
            "MERGE_BOT_BATCH_MAX": "1",  # the serial scenarios; the batch ones pass their own (test_crash_batches)
            "MERGE_BOT_MAX_PARALLEL": "1",
            "MERGE_BOT_FLAKY_RETRIES": "0",
            **(extra or {}),
        }
        process = BotProcess(name, env, self.workdir / "logs")
        self.bots.append(process)
        return process

    def output(self) -> str:
        return "\n".join(process.output() for process in self.bots)

    async def close(self) -> None:
        for process in self.bots:
            await process.stop()

    # -- driving ---------------------------------------------------------------------------------------

    async def open_prs(self, repo: str, prs: Iterable[tuple[str, dict[str, str]]]) -> list[int]:
        """One PR per (branch, files), each a commit on main as it is now; the branches go up in one push."""
        work = await self.sim.clone(repo, self.maint)
        branches = []
        for branch, files in prs:
            await run_git(["-C", str(work), "checkout", "--quiet", "-B", branch, "origin/main"])
            for name, content in files.items():
                (work / name).write_text(content)
            await run_git(["-C", str(work), "add", "-A"])
            await run_git(["-C", str(work), "commit", "--quiet", "-m", f"Change on {branch}"])
            branches.append(branch)
        await run_git(["-C", str(work), "push", "--quiet", "origin", *(f"{b}:refs/heads/{b}" for b in branches)])
        numbers = []
        for branch in branches:
            pr = await self.sim.create_pr(repo, self.maint, head=branch, base="main", title=f"PR {branch}")
            numbers.append(int(pr["number"]))
        return numbers

    async def move_main(self, repo: str) -> str:
        """Someone pushes to main (before the bot starts): the PRs' candidates become new commits, which the
        forge knows only once the bot pushed them. The push counts as set-up, not as a move by the bot."""
        sha = await self.sim.push_commit(repo, self.owner, "main", {"NEWS.md": "news\n"}, message="News")
        self.baseline_seq = (await self.sim.log())[-1]["seq"]
        return sha

    async def queue(self, repo: str, number: int) -> None:
        await self.sim.comment(repo, number, self.maint, "/merge")

    async def ready(self, *processes: BotProcess, url: str = "", within: float = 30.0) -> None:
        """Wait until these bots listen and the webhook to ``url`` (default: the first one's) exists on every
        repository: from then on a comment's webhook reaches a bot."""
        for process in processes:
            await process.listening(within)
        hook_url = (url or processes[0].url).rstrip("/") + "/webhook"

        async def check() -> bool:
            for repo in self.repos:
                hooks = await self.sim.api("GET", f"/repos/{repo}/hooks", token=self.owner.token)
                if not any(hook["config"]["url"] == hook_url for hook in hooks):
                    return False
            return True

        await eventually(check, within=within, what="the bot's webhooks")

    async def reconciled(self, within: float = 30.0) -> None:
        """Wait until a bot's reconciler has made its first pass on every repository: from then on, a
        ``/merge`` whose webhook is lost (the bot is down) is still found."""

        async def check() -> bool:
            async with self.engine.connect() as connection:
                done = await connection.scalar(
                    select(func.count()).select_from(Repository).where(Repository.reconciled_at.is_not(None))
                )
            return int(done or 0) >= len(self.repos)

        await eventually(check, within=within, what="the first reconciler pass")

    async def main_sha(self, repo: str) -> str:
        data = await self.sim.api("GET", f"/repos/{repo}/branches/main")
        return str(data["commit"]["id"])

    async def main_tree(self, repo: str) -> str:
        data = await self.sim.api("GET", f"/repos/{repo}/git/commits/{await self.main_sha(repo)}")
        return str(data["commit"]["tree"]["sha"])

    async def staging_branches(self) -> list[str]:
        found = []
        for repo in self.repos:
            branches = await self.sim.api("GET", f"/repos/{repo}/branches", params={"limit": "50"})
            found += [f"{repo}:{b['name']}" for b in branches if b["name"].startswith("merge-bot/")]
        return found

    # -- reading the database --------------------------------------------------------------------------

    async def entries(self) -> list[Any]:
        """Every entry with its repository and PR number, oldest first."""
        query = (
            select(Entry.__table__, Repository.owner, Repository.name.label("repo_name"), PullRequest.number)
            .join(PullRequest, PullRequest.id == Entry.pull_request_id)
            .join(Repository, Repository.id == PullRequest.repository_id)
            .order_by(Entry.id)
        )
        async with self.engine.connect() as connection:
            return list((await connection.execute(query)).all())

    async def attempt_entries(self, attempt_id: int) -> list[int]:
        async with self.engine.connect() as connection:
            query = select(AttemptEntry.entry_id).where(AttemptEntry.attempt_id == attempt_id)
            rows = await connection.execute(query.order_by(AttemptEntry.position))
            return [int(entry_id) for (entry_id,) in rows]

    async def outcomes(self) -> dict[tuple[str, int], str]:
        """(repo, PR number) → the state of its latest entry."""
        return {(f"{row.owner}/{row.repo_name}", row.number): row.state for row in await self.entries()}

    async def active(self) -> tuple[int, int]:
        """(active entries, active attempts)."""
        async with self.engine.connect() as connection:
            entries = await connection.scalar(
                select(func.count()).select_from(Entry).where(Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES]))
            )
            attempts = await connection.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]))
            )
        return int(entries or 0), int(attempts or 0)

    async def settled(self, expected_entries: int, within: float = 90.0) -> dict[tuple[str, int], str]:
        """Wait until ``expected_entries`` entries exist, all final, and no attempt is active; the outcomes."""

        async def check() -> dict[tuple[str, int], str] | None:
            rows = await self.entries()
            if len(rows) < expected_entries or any(row.state not in FINAL_STATES for row in rows):
                return None
            if (await self.active())[1]:
                return None
            return await self.outcomes()

        return await eventually(check, within=within, what=f"{expected_entries} entries to reach a final state")

    async def no_staging_left(self, within: float = 20.0) -> None:
        async def check() -> bool:
            return not await self.staging_branches()

        await eventually(check, within=within, what="the reaper to delete every merge-bot/* branch")

    @contextlib.asynccontextmanager
    async def holding_train(self, train_id: int) -> AsyncIterator[None]:
        """Hold the train's gate lock from the test: the bots store and enqueue, but no gate runs until the
        block ends (so a crash at a gate step cannot also cut an enqueue short)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT pg_advisory_lock(:ns, :train)"), {"ns": NAMESPACE, "train": train_id})
            try:
                yield
            finally:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:ns, :train)"), {"ns": NAMESPACE, "train": train_id}
                )
                await connection.commit()

    async def queued(self, count: int, within: float = 30.0) -> None:
        async def check() -> bool:
            return len(await self.entries()) >= count

        await eventually(check, within=within, what=f"{count} entries")

    async def gate_backends(self) -> list[tuple[int, str]]:
        """(pid, application_name) of the database sessions holding gate locks."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT pid, application_name FROM pg_stat_activity "
                    "WHERE application_name LIKE 'merge-bot gate%' AND datname = current_database()"
                )
            )
            return [(int(row.pid), str(row.application_name)) for row in rows]


async def make_crash_world(
    sim: SimHandle,
    *,
    engine: AsyncEngine,
    database_url: str,
    workdir: Path,
    repos: tuple[str, ...] = ("app",),
    ci_delay: float = 0.0,
) -> CrashWorld:
    """Users (owner, the bot as admin collaborator, a maintainer with write access) and repositories whose
    CI runs the repository's own script on every staging branch (``merge-bot/*``)."""
    owner = await sim.create_user("owner")
    bot = await sim.create_user("merge-bot")
    maint = await sim.create_user("maint")
    full_names = []
    for name in repos:
        repo = await sim.create_repo(owner, name)
        await sim.add_collaborator(repo, bot.login, "admin", as_user=owner)
        await sim.add_collaborator(repo, maint.login, "write", as_user=owner)
        # The same tree in every repository (README.md included), so that runs on two of them compare by tree.
        files: dict[str, str | None] = {"ci.sh": CI_SCRIPT, "app.txt": "app\n", "README.md": "# app\n"}
        await sim.push_commit(repo, owner, "main", files, message="Initial")
        # CI on the candidates only: that is what the promise is about, and it spares the two cores.
        await sim.set_ci(repo, "sh ci.sh", context="ci/test", delay_s=ci_delay, branches=["merge-bot/*"])
        full_names.append(repo)
    log = await sim.log()
    world = CrashWorld(sim, engine, database_url, workdir, owner, bot, maint, full_names)
    world.baseline_seq = log[-1]["seq"] if log else 0
    return world


# -- the verdict -----------------------------------------------------------------------------------------


async def violations(
    world: CrashWorld, committed_faults: frozenset[int] = frozenset(), *, most: int = 1
) -> list[str]:
    """Every broken promise the simulator's log and the database show (see ``invariants``); ``most``: the
    longest chain of attempts the queue may run at once (1: serial)."""
    log = await world.sim.log()
    found = untested_base_moves(log, world.baseline_seq)
    found += merged_twice(log, committed_faults)
    found += overlapping_attempts(log, most=most, retried=await retests(world.engine))
    # The base's history: every commit reachable from a SHA it pointed to (a batch's PRs are merged at the
    # commits where their own changes end, below the candidate the base moved to).
    history: defaultdict[str, set[str]] = defaultdict(set)
    reach = await reachable(world, base_moves(log, 0))
    for (repo, _), commits in reach.items():
        history[repo] |= commits
    rows = await world.entries()
    pulls = {}
    for repo in world.repos:
        for pull in await world.sim.api("GET", f"/repos/{repo}/pulls", params={"state": "all", "limit": "50"}):
            pulls[(repo, int(pull["number"]))] = pull
    found += database_disagrees(rows, pulls, history)
    found += [
        f"entry {row.id} ({row.repo_name}#{row.number}) is {row.state}" for row in rows if row.state not in FINAL_STATES
    ]
    attempts = (await world.active())[1]
    if attempts:
        found.append(f"{attempts} attempts still active")
    found += [f"{branch} left behind" for branch in await world.staging_branches()]
    return found


ATTEMPTS_SQL = (
    "SELECT a.id, a.train_id, a.parent_id, a.base_sha, a.candidate_sha, a.state, a.retry_of,"
    " coalesce(array_agg(m.entry_id ORDER BY m.position) FILTER (WHERE m.entry_id IS NOT NULL), '{}') AS entry_ids"
    " FROM attempts a LEFT JOIN attempt_entries m ON m.attempt_id = a.id"
    " WHERE a.state = ANY(:states) GROUP BY a.id ORDER BY a.id"
)


async def attempt_rows(engine: AsyncEngine, states: list[str]) -> list[AttemptRow]:
    """The attempts in these states, each with its entries in order, read in one statement."""
    async with engine.connect() as connection:
        rows = (await connection.execute(text(ATTEMPTS_SQL), {"states": states})).all()
    return [_attempt_row(row) for row in rows]


def _attempt_row(row: Any) -> AttemptRow:
    return AttemptRow(
        int(row.id),
        int(row.train_id),
        row.parent_id,
        str(row.base_sha),
        row.candidate_sha,
        str(row.state),
        tuple(int(e) for e in row.entry_ids),
        row.retry_of,
    )


async def retests(engine: AsyncEngine) -> dict[int, int]:
    """Re-test attempt id → the red attempt it re-tests (``attempts.retry_of``)."""
    async with engine.connect() as connection:
        rows = await connection.execute(select(Attempt.id, Attempt.retry_of).where(Attempt.retry_of.is_not(None)))
        return {int(attempt_id): int(retry_of) for attempt_id, retry_of in rows}


class ChainWatch:
    """Reads the active attempts (with their entries) over and over while a scenario runs, each read one
    statement and so one consistent snapshot of the database, and keeps every distinct one: the samples
    ``broken_chains`` judges."""

    def __init__(self, engine: AsyncEngine, every: float = 0.05) -> None:
        self.engine = engine
        self.every = every
        self.samples: list[tuple[AttemptRow, ...]] = []
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> tuple[AttemptRow, ...]:
        return tuple(await attempt_rows(self.engine, [s.value for s in ACTIVE_ATTEMPT_STATES]))

    async def _run(self) -> None:
        while True:
            sample = await self.read()
            if not self.samples or self.samples[-1] != sample:
                self.samples.append(sample)
            await asyncio.sleep(self.every)

    async def __aenter__(self) -> ChainWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.samples.append(await self.read())

    @property
    def longest(self) -> int:
        """The most active attempts one train held in one sample (the longest chain seen)."""
        return max(
            (n for sample in self.samples for n in Counter(row.train_id for row in sample).values()), default=0
        )


async def reachable(
    world: CrashWorld, log: list[dict[str, Any]], branch: str = "main"
) -> dict[tuple[str, str], frozenset[str]]:
    """(repo, SHA) → the commits reachable from it, for every SHA the base or a staging branch pointed to
    (read from the simulator's repositories themselves)."""
    reach: dict[tuple[str, str], frozenset[str]] = {}
    for event in log:
        if event["kind"] != "push" or event["after"] == ZERO_SHA:
            continue
        if event["ref"] != f"refs/heads/{branch}" and not event["ref"].startswith("refs/heads/merge-bot/"):
            continue
        key = (event["repo"], event["after"])
        if key in reach:
            continue
        owner, name = key[0].split("/")
        repo = world.sim.sim.state.repo_by_name(owner, name)
        assert repo is not None
        reach[key] = frozenset(await world.sim.sim.git(repo).rev_list(key[1]))
    return reach


async def chain_violations(world: CrashWorld, watch: ChainWatch, *, most: int) -> list[str]:
    """The chain invariant, on the database's samples and on what the forge saw (see ``invariants``)."""
    log = await world.sim.log()
    every = {row.id: row for row in await attempt_rows(world.engine, [s.value for s in AttemptState])}
    retried = {row.id: row.retry_of for row in every.values() if row.retry_of is not None}
    found = overlapping_attempts(log, most=most, reach=await reachable(world, log), retried=retried)
    history = {move["after"] for move in base_moves(log, 0)}
    return found + broken_chains(watch.samples, every, history)


class WebhookBalancer:
    """One webhook URL in front of several bots, as a load balancer gives replicas: each delivery goes to the
    next bot in turn (to another one if that one does not answer)."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.url = ""
        self.forwarded: Counter[str] = Counter()
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self._session = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        first = next(self._turn)
        for i in range(len(self.targets)):
            target = self.targets[(first + i) % len(self.targets)]
            try:
                async with self._session.request(
                    request.method, target + request.path_qs, data=body, headers=headers
                ) as answer:
                    self.forwarded[target] += 1
                    return web.Response(status=answer.status, body=await answer.read())
            except aiohttp.ClientConnectionError:
                continue
        return web.Response(status=502)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
