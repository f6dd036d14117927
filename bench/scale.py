"""How the reconciler scales with the number of repositories it manages.

For each size N (default 10, 100 and 1000 repositories), against the Gitea simulator on 127.0.0.1 (a separate
process), with a private PostgreSQL:

1. seeds an organisation with N repositories holding about 10 open PRs each (10,000 at N = 1000; the same
   ratio at every size), through the simulator's seeding helper ``POST /_sim/seed`` (records, no git: see
   gitea_sim/api/seed.py), and gives up to 50 of them an active queue (a queued entry in the bot's database);
2. runs the bot's own reconciler (``bot.scheduler.reconcile.Reconciler``, set up as ``merge-bot serve`` sets
   it up, with ``MERGE_BOT_REPOS=<org>/*``) in this process, pass by pass:
   - the first pass (discovery of the N repositories, their setup under one organisation hook, a full read of
     each one);
   - ``--idle`` passes with nothing changed;
   - a pass after K changes (a comment on K PRs in K repositories, ``--changes``);
3. reports per N: the forge calls each pass made (counted from the simulator's request log, the bot's user
   only), how long it took, and the resident memory of this process — the one doing the reconciling; the
   simulator and PostgreSQL are other processes and are not counted. Peak RSS is ``ru_maxrss`` of
   ``resource.getrusage(RUSAGE_SELF)``, so at each size it is the peak so far.

What to look for: calls per idle pass flat in N (one change feed read per owner and one updated-sorted
listing, whatever the number of repositories), calls after K changes growing with K, not N; the first pass
linear in N (it reads everything once). Durations depend on the machine and what else runs on it.

It stops by itself once every size is measured. It asserts nothing: it is a measurement, not a test
(``tests/test_bench_scale.py`` only runs it at a tiny size to keep it working).

    python bench/scale.py                 # 10, 100 and 1000 repositories
    python bench/scale.py --sizes 3 --idle 1 --changes 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.append(sys.path.pop(0))  # see bench/harness.py: the standard library's queue must win

import aiohttp
from harness import eventually, fresh_database, progress
from sqlalchemy import select

from bot.clock import SystemClock
from bot.config import load_settings
from bot.db import queries
from bot.db.models import Entry, PullRequest, Repository
from bot.db.session import make_engine, make_sessionmaker
from bot.forge.client import GiteaClient
from bot.forge.permissions import Permissions
from bot.inbox.enqueue import Enqueuer
from bot.inbox.intake import Intake, IntakeDeps
from bot.logs import configure
from bot.scheduler.reconcile import Reconciler
from bot.setup import Setup
from gitea_sim.testing import free_port

ORG = "bench"
PRS_PER_REPO = 10  # on average: 1000 repositories hold 10,000 open PRs
ACTIVE_QUEUES = 50
DEADLINE_S = 60 * 60  # the whole run, at most


def spread(n: int) -> list[int]:
    """PRs per repository: uneven (1 to 19, some past one page of 50 together), PRS_PER_REPO on average."""
    counts = [1 + (i * 7) % 19 for i in range(n)]
    total, wanted = sum(counts), PRS_PER_REPO * n
    counts[0] += max(wanted - total, 1 - counts[0])  # exactly PRS_PER_REPO * n in all
    return counts


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    current = peak
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024
    return current, peak


@dataclass
class Pass:
    calls: int
    seconds: float


@dataclass
class Row:
    repos: int
    prs: int
    active: int
    first: Pass
    idle: list[Pass] = field(default_factory=list)
    changed: Pass | None = None
    changes: int = 0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0


class Sim:
    """The simulator in its own process, and the few calls the benchmark makes to it (as the site admin)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(20)
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Sim]:
        command = [sys.executable, "-m", "gitea_sim", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data", str(self.workdir / "sim"), "--admin-token", self.token]
        self.process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            async with aiohttp.ClientSession() as self.http:
                await eventually(self._answers, within=30, what="the simulator to start")
                yield self
        finally:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def _answers(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            await self.call("GET", "/api/v1/version")
            return True
        return False

    async def call(self, method: str, path: str, *, token: str | None = None, body: Any = None,
                   basic: tuple[str, str] | None = None) -> Any:
        assert self.http is not None
        if basic:
            pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            headers = {"Authorization": f"Basic {pair}"}
        else:
            headers = {"Authorization": f"token {token or self.token}"}
        async with self.http.request(method, self.url + path, json=body, headers=headers) as response:
            data = await response.json(content_type=None)
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return data

    seen = 0  # the newest log entry read so far

    async def last_seq(self) -> int:
        """The newest entry of the request log (reading only what came since the last look)."""
        entries = await self.call("GET", f"/_sim/log?since={self.seen}")
        self.seen = max((int(e["seq"]) for e in entries), default=self.seen)
        return self.seen

    async def calls_since(self, seq: int, user: str) -> tuple[int, int]:
        """(calls by ``user`` after ``seq``, the newest seq)."""
        entries = await self.call("GET", f"/_sim/log?kind=api&since={seq}")
        newest = max((int(e["seq"]) for e in entries), default=seq)
        self.seen = max(self.seen, newest)
        return sum(1 for e in entries if e.get("user") == user), newest


async def measure(sim: Sim, n: int, args: argparse.Namespace, database_url: str, workdir: Path) -> Row:
    """One size: a fresh organisation and database, the passes, the figures."""
    login = f"merge-bot-{n}"
    await sim.call("POST", "/api/v1/admin/users", body={"username": login, "password": "bench-password-1",
                                                         "email": f"{login}@bench.invalid"})
    token = (await sim.call("POST", f"/api/v1/users/{login}/tokens", basic=(login, "bench-password-1"),
                            body={"name": "bench", "scopes": ["all"]}))["sha1"]
    org = f"{ORG}{n}"
    await sim.call("POST", "/api/v1/orgs", token=token, body={"username": org})  # the bot owns the org
    counts = spread(n)
    seeded = await sim.call("POST", "/_sim/seed", body={"owner": org, "repos": n, "pulls": counts})
    progress(f"N={n}: seeded {len(seeded['repos'])} repositories, {seeded['pulls']} open PRs")
    env = {
        "MERGE_BOT_GITEA_URL": sim.url,
        "MERGE_BOT_GITEA_TOKEN": token,
        "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
        "MERGE_BOT_EXTERNAL_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens: deliveries fail, fine
        "MERGE_BOT_REPOS": f"{org}/*",
        "MERGE_BOT_DATABASE_URL": database_url,
        "MERGE_BOT_DATA_DIR": str(workdir / f"bot-{n}"),
        "MERGE_BOT_LOG_LEVEL": "warning",
    }
    settings = load_settings(env)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    clock = SystemClock()
    try:
        async with aiohttp.ClientSession() as http:
            forge = GiteaClient(http, sim.url, settings.gitea_token)
            permissions = Permissions(forge, clock)
            enqueuer = Enqueuer(settings, sessions, forge, clock, permissions, lambda _t: None)
            intake = Intake(IntakeDeps(settings, sessions, forge, clock, login, lambda _t: None), enqueuer)
            setup = Setup(forge, settings)
            reconciler = Reconciler(settings, sessions, forge, intake, clock, lambda _t: None, setup)

            async def one_pass() -> Pass:
                seq = await sim.last_seq()
                started = time.monotonic()
                await reconciler.run()
                seconds = time.monotonic() - started
                calls, _ = await sim.calls_since(seq, login)
                return Pass(calls, round(seconds, 3))

            seq = await sim.last_seq()
            started = time.monotonic()
            await setup.start()  # as serve does at start: the organisation hook
            first = await one_pass()
            setup_calls, _ = await sim.calls_since(seq, login)
            first = Pass(setup_calls, round(time.monotonic() - started, 3))
            progress(f"N={n}: first pass {first.calls} calls in {first.seconds:.1f} s")
            active = await give_queues(sessions, org, min(ACTIVE_QUEUES, n), login)
            row = Row(n, int(seeded["pulls"]), active, first)
            await one_pass()  # the queues' own PRs were seen: settle before measuring idle passes
            for _ in range(args.idle):
                row.idle.append(await one_pass())
            progress(f"N={n}: idle passes {[p.calls for p in row.idle]} calls")
            row.changes = min(args.changes, n)
            for i in range(row.changes):
                repo = seeded["repos"][i * n // row.changes]
                await sim.call("POST", f"/api/v1/repos/{repo}/issues/1/comments", body={"body": f"change {i}"})
            row.changed = await one_pass()
            progress(f"N={n}: after {row.changes} changes {row.changed.calls} calls")
            row.rss_mb, row.peak_rss_mb = (round(x, 1) for x in rss_mb())
            return row
    finally:
        await engine.dispose()


async def give_queues(sessions: Any, org: str, count: int, login: str) -> int:
    """A queued entry on the first PR of ``count`` repositories: queues the reconciler must keep in view."""
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(Repository.id, PullRequest.id, PullRequest.head_sha, PullRequest.base_ref)
                .join(PullRequest, PullRequest.repository_id == Repository.id)
                .where(Repository.owner == org, PullRequest.number == 1)
                .order_by(Repository.id)
                .limit(count)
            )
        ).all()
        for repository_id, pull_id, head, base in rows:
            train = await queries.ensure_train(session, repository_id, base or "main")
            session.add(Entry(train_id=train.id, pull_request_id=pull_id, state="queued", approved_sha=head,
                              approved_by=login, trigger="cli"))
    return len(rows)


def table(rows: list[Row]) -> str:
    lines = [
        "| repos | open PRs | active queues | first pass calls | first s | idle calls/pass | idle s | "
        "changes | calls after changes | changed s | idle calls / repo | RSS MB (peak) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        idle_calls = statistics.median(p.calls for p in r.idle) if r.idle else 0
        idle_s = statistics.median(p.seconds for p in r.idle) if r.idle else 0
        changed = r.changed or Pass(0, 0)
        lines.append(
            f"| {r.repos} | {r.prs} | {r.active} | {r.first.calls} | {r.first.seconds:.1f} | {idle_calls:g} | "
            f"{idle_s:.2f} | {r.changes} | {changed.calls} | {changed.seconds:.2f} | "
            f"{idle_calls / r.repos:.3f} | {r.rss_mb:.0f} ({r.peak_rss_mb:.0f}) |"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    configure("warning", "console")

    with tempfile.TemporaryDirectory(prefix="mb-scale-") as tmp:
        workdir = Path(tmp)
        rows: list[Row] = []
        async with Sim(workdir).running() as sim, asyncio.timeout(DEADLINE_S):
            for n in args.sizes:
                # A database of its own per size: what one size discovered is not another's managed set.
                async with fresh_database(args.database, workdir / f"db-{n}", f"scale{n}") as url:
                    rows.append(await measure(sim, n, args, url, workdir))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(table(rows))
        print(f"\nRSS: of this process, which runs the reconciler (the simulator and PostgreSQL are other "
              f"processes); pid {os.getpid()}.")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/scale.py",
        description=__doc__.split("\n\n")[0] + " Counts the forge calls of the bot's reconciler passes (first, "
        "idle, after K changes), their duration and this process's RSS, for N repositories in one organisation "
        "on the Gitea simulator (127.0.0.1), about 10 open PRs each, up to 50 with an active queue. A "
        "measurement, not a test: it prints a table and asserts nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[10, 100, 1000],
                        help="numbers of repositories, comma-separated (default 10,100,1000)")
    parser.add_argument("--idle", type=int, default=3, help="passes with nothing changed (default 3)")
    parser.add_argument("--changes", type=int, default=5, help="K: PRs changed before the last pass (default 5)")
    parser.add_argument("--database", default=os.environ.get("MERGE_BOT_TEST_DATABASE_URL"),
                        help="a PostgreSQL server's maintenance database URL (default: an embedded one)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    if any(n < 1 or n > 5000 for n in args.sizes) or args.idle < 1 or args.changes < 0:
        parser.error("sizes are 1 to 5000 repositories, --idle at least 1, --changes at least 0")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
