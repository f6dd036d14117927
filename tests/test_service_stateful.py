"""The gate service itself (``bot/gate/service.py`` with the enqueuer) driven by hypothesis, against the
simulator (real git, a CI that runs the repository's script on every push) and a real PostgreSQL.

Where ``tests/test_machine_stateful.py`` models the forge, this one has the real thing, so it checks what the
model cannot: the SQL, the git plumbing, the forge calls and their order. Each example gets a repository of its
own; its rules open PRs (clean, conflicting, green alone but red together, always red), queue and cancel them,
push to PR heads and to the base as a human, close PRs, let CI finish, and run one pass of the gate — which
may be cut short by a crash at any forge write or git push, before it or after it (the seams, ``GiteaClient``
and ``GitRunner``, raise where the process would have died; the gate is dropped with its lock and a new one
takes over, as after a restart).

Histories also run with batches and chains: each draws ``MERGE_BOT_BATCH_MAX`` (1 to 4; the pr-branch strategy
caps it at one), so red batches (a broken PR, or the two feature PRs together) are bisected against the real
service; ``MERGE_BOT_MAX_PARALLEL`` (1 to 4: how many candidates are under CI at once, each built on the one
before; pr-branch tests one at a time; CI then runs on the bot's candidates only, and takes a moment, so that a
chain can build up); and ``MERGE_BOT_FLAKY_RETRIES`` (0 or 1: a PR red alone is tested again on the same commit,
on a fresh ref). The two are drawn as a pair, weighted to chains of single PRs three or four deep; where the
chain may be three deep, two to four green PRs more are queued at the start (and more may be opened), so that
it gets that deep past the red and conflicting ones. A rule arms the simulator's one-shot CI fault: the next
run is red whatever it tests (a spurious red, which a re-test of the same commit turns green); another holds
the next runs back (``silent``: no status at all) until a third releases them, and they report what the CI
script says: a held first candidate keeps the chain built on it under test while the gate goes on.

Invariants after every rule, from the simulator's log and the database: the bot moves the base only by a
fast-forward to a SHA whose CI was green before the push, never twice to the same SHA; no PR merged twice;
the active attempts form one chain (one first attempt on a commit the base held, each next one on the
candidate of the one before; no deeper than max_parallel, a bisection's halves aside; with batches of one and
max_parallel 1, that is at most one active attempt), no entry is in two active attempts, and the live staging
branches are those of active attempts (with batches of one: at most max_parallel). At the end of every
example, liveness: with the interference over, passes of the gate (and one reaper pass) bring every entry to a
final state with its PR told, leave no staging branch, and the database agrees with the forge about what
merged.

The random run must show what it is for (chains three deep, held and spurious reds, re-tests, bisections,
crashes), and ``test_a_deep_chain_with_a_spurious_red_in_it`` writes one history out so that a chain four deep
with a spurious red re-tested and landed in it is exercised on every run, whatever the random draws do.
``MERGE_BOT_STATEFUL_EXAMPLES`` (default 12) runs more random histories.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import SystemClock
from bot.config import Settings, load_settings
from bot.db.migrate import upgrade_async
from bot.db.models import Attempt, AttemptEntry, Entry, PullRequest, Repository, Train
from bot.db.queries import StaleRow
from bot.db.session import make_engine, make_sessionmaker
from bot.forge.client import GiteaClient
from bot.forge.errors import ForgeError
from bot.forge.permissions import Permissions
from bot.gate.locks import TrainLock
from bot.gate.service import Gate, GateDeps
from bot.git.mirror import MirrorCache
from bot.git.runner import GitError, GitResult, GitRunner, Identity
from bot.inbox.enqueue import Claim, Enqueuer, Request
from bot.queue.model import ACTIVE_ATTEMPT_STATES, ACTIVE_ENTRY_STATES
from bot.scheduler.reap import Reaper
from bot.setup import ensure_merge_styles
from gitea_sim.testing import SimHandle, SimUser, running_sim
from tests.conftest import asyncpg_dsn, with_database
from tests.crash.invariants import (
    STAGING_PREFIX,
    ZERO_SHA,
    database_disagrees,
    merged_twice,
    overlapping_attempts,
    untested_base_moves,
)
from tests.e2e.conftest import CI_SCRIPT

pytestmark = pytest.mark.slow
T = TypeVar("T")
_repos = itertools.count()
ACTIVE_STATES = frozenset(s.value for s in ACTIVE_ATTEMPT_STATES)
# (MERGE_BOT_BATCH_MAX, MERGE_BOT_MAX_PARALLEL), drawn as pairs: a chain three or four deep forms only when the
# batches are small, so half the shapes are chains of single PRs three or four deep, two are chains of batches of
# two three deep; the rest are serial, batches without a chain, and shallower chains. A deep chain first: the
# first histories and shrinking go there.
SHAPES = ((1, 4), (2, 2), (1, 3), (1, 1), (1, 4), (3, 1), (2, 3), (1, 3), (1, 2), (4, 1), (1, 4), (2, 3), (3, 4))
DEEP = 3  # a chain this deep (max_parallel >= DEEP) gets more PRs, most of them green
FLAKY_RETRIES = (1, 0)
CHAIN_CI_DELAY = 0.4  # seconds a candidate's CI takes when chains may form: a pass of the gate is quicker
SEEN: Counter[str] = Counter()  # what the examples did, printed at the end (and checked: they must do things)


class Crash(Exception):
    """The process dies here: raised by a seam, never caught by the bot (it catches forge and git errors)."""


@dataclass
class Crasher:
    """Counts the boundaries around writes (before and after each forge write or git push); armed with ``n``,
    the n-th boundary from now raises :class:`Crash`."""

    countdown: int | None = None
    crashes: int = 0

    def boundary(self) -> None:
        if self.countdown is None:
            return
        if self.countdown == 0:
            self.countdown = None
            self.crashes += 1
            raise Crash
        self.countdown -= 1


class CrashingForge(GiteaClient):
    def __init__(self, crasher: Crasher, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.crasher = crasher

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        raw: bool = False,
    ) -> tuple[int, Any, Mapping[str, str]]:
        if method == "GET":
            return await super()._request(method, path, json=json, params=params, raw=raw)
        self.crasher.boundary()
        answer = await super()._request(method, path, json=json, params=params, raw=raw)
        self.crasher.boundary()
        return answer


class CrashingGit(GitRunner):
    def __init__(self, crasher: Crasher, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crasher = crasher

    async def run(self, cwd: Path | str, *args: str, **kwargs: Any) -> GitResult:
        if "push" not in args:
            return await super().run(cwd, *args, **kwargs)
        self.crasher.boundary()
        result = await super().run(cwd, *args, **kwargs)
        self.crasher.boundary()
        return result


@dataclass
class Harness:
    """What every example shares: an event loop, the simulator, users, a database, an HTTP session."""

    loop: asyncio.AbstractEventLoop
    sim: SimHandle
    owner: SimUser
    bot: SimUser
    maint: SimUser
    database_url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    data_dir: Path

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(work)


@dataclass
class World:
    """One example: a repository, the bot's parts wired as ``bot.queue_service`` wires them, a gate."""

    harness: Harness
    repo: str
    settings: Settings
    deps: GateDeps
    enqueuer: Enqueuer
    crasher: Crasher
    prs: list[tuple[int, str]] = field(default_factory=list)  # (number, branch)
    comments: dict[int, int] = field(default_factory=dict)  # PR → id of its last `/merge` comment
    gate: Gate | None = None
    lock: TrainLock | None = None
    waits: bool = True  # the last pass decided to wait (for CI, most likely), or ended on a forge or git error
    edits: itertools.count[int] = field(default_factory=itertools.count)
    deepest: int = 0  # the most active attempts seen at once (after a pass of the gate, or a rule)
    seen: Counter[str] = field(default_factory=Counter)  # what the example did, counted once it settled

    @property
    def sim(self) -> SimHandle:
        return self.harness.sim

    async def train_id(self) -> int | None:
        async with self.harness.sessions() as session:
            query = (
                select(Train.id)
                .join(Repository, Repository.id == Train.repository_id)
                .where(Repository.owner + "/" + Repository.name == self.repo)
            )
            return (await session.execute(query)).scalar_one_or_none()

    async def step(self, crash_at: int | None) -> bool:
        """One pass of the gate; False when it had nothing to do. A crash drops the gate and its lock."""
        train_id = await self.train_id()
        if train_id is None:
            return False
        if self.gate is None:
            self.lock = await TrainLock.try_acquire(self.harness.database_url, train_id)
            assert self.lock is not None, "nobody else holds this train"
            self.gate = Gate(self.deps, train_id, self.lock)
        self.crasher.countdown = crash_at
        self.waits = False
        try:
            done = await self.gate.step()
        except Crash:
            await self.restart()
            return True
        except (ForgeError, GitError, StaleRow):
            self.waits = True  # as Gate.run (which backs off): nothing is assumed, the next pass re-reads everything
            return True
        finally:
            self.crasher.countdown = None
        self.waits = done.decision.waits
        self.deepest = max(self.deepest, await self.active_attempts())
        return not done.idle

    async def restart(self) -> None:
        if self.lock is not None:
            await self.lock.release()
        self.gate, self.lock = None, None

    async def entries(self) -> list[Any]:
        async with self.harness.engine.connect() as connection:
            query = (
                select(Entry.__table__, Repository.owner, Repository.name.label("repo_name"), PullRequest.number)
                .join(PullRequest, PullRequest.id == Entry.pull_request_id)
                .join(Repository, Repository.id == PullRequest.repository_id)
                .where(Repository.owner + "/" + Repository.name == self.repo)
                .order_by(Entry.id)
            )
            return list((await connection.execute(query)).all())

    async def attempts(self) -> list[Any]:
        """Every attempt of this repository's train, oldest first."""
        async with self.harness.engine.connect() as connection:
            query = (
                select(Attempt.__table__)
                .join(Train, Train.id == Attempt.train_id)
                .join(Repository, Repository.id == Train.repository_id)
                .where(Repository.owner + "/" + Repository.name == self.repo)
                .order_by(Attempt.id)
            )
            return list((await connection.execute(query)).all())

    def depth(self) -> int:
        """The deepest the chain may be: max_parallel, or one for a strategy that tests a PR's own branch."""
        return 1 if self.settings.strategy == "pr-branch" else self.settings.max_parallel

    async def active_attempts(self) -> int:
        return sum(1 for row in await self.attempts() if row.state in ACTIVE_STATES)

    async def members(self) -> list[tuple[int, int]]:
        """(attempt, entry) for every entry an active attempt of this train carries."""
        active = [row.id for row in await self.attempts() if row.state in ACTIVE_STATES]
        async with self.harness.engine.connect() as connection:
            query = select(AttemptEntry.attempt_id, AttemptEntry.entry_id).where(AttemptEntry.attempt_id.in_(active))
            return [(int(a), int(e)) for a, e in await connection.execute(query)]

    async def chain_problems(self) -> list[str]:
        """Where the active attempts (read from the database) are not one chain from the base."""
        rows = await self.attempts()
        by_id = {row.id: row for row in rows}
        active = [row for row in rows if row.state in ACTIVE_STATES]
        if not active:
            return []
        ids = {row.id for row in active}
        roots = [row for row in active if row.parent_id not in ids]
        problems = []
        if len(roots) != 1:
            problems.append(f"attempts {[row.id for row in roots]} are each built on no active attempt")
        children: Counter[int] = Counter(row.parent_id for row in active if row.parent_id in ids)
        problems += [f"attempt {parent} has {n} active children" for parent, n in children.items() if n > 1]
        for row in active:
            if row.parent_id not in ids:
                continue
            parent = by_id[row.parent_id]
            built_on = parent.candidate_sha
            if built_on is None and parent.retry_of is not None:
                # A re-test opened (what was built on the attempt it re-tests re-parented to it), its build cut
                # short: it builds the very commit it re-tests.
                built_on = by_id[parent.retry_of].candidate_sha
            if row.base_sha != built_on:
                problems.append(f"attempt {row.id} is not on the candidate of its parent {row.parent_id}")
        log = await self.log()
        held = {e["after"] for e in log if e["kind"] == "push" and e["ref"] == "refs/heads/main"}
        for root in roots:
            parent = by_id.get(root.parent_id) if root.parent_id is not None else None
            # A crash between the transactions of one rebuild may leave the rest of a chain on its ended first
            # attempt's candidate for a moment: the next pass rebuilds it on the base.
            left_by_crash = self.crasher.crashes > 0 and parent is not None and parent.candidate_sha == root.base_sha
            if root.base_sha not in held and not left_by_crash:
                problems.append(f"the first attempt {root.id} is on {root.base_sha[:10]}, never the base")
        return problems

    async def stray_staging(self) -> list[str]:
        """Live ``merge-bot/*`` branches (from the push log) that no active attempt owns."""
        live: set[str] = set()
        for event in await self.log():
            if event["kind"] == "push" and event["ref"].startswith(STAGING_PREFIX):
                (live.discard if event["after"] == ZERO_SHA else live.add)(event["ref"])
        owned = {row.ref for row in await self.attempts() if row.state in ACTIVE_STATES and row.ref}
        return sorted(live - owned)

    async def commands_acting_twice(self) -> list[int]:
        async with self.harness.engine.connect() as connection:
            query = (
                select(Entry.command_id)
                .where(Entry.command_id.is_not(None))
                .group_by(Entry.command_id)
                .having(func.count() > 1)
            )
            return [int(command_id) for (command_id,) in await connection.execute(query)]

    async def outcome_comments(self, number: int) -> list[str]:
        comments = await self.sim.api("GET", f"/repos/{self.repo}/issues/{number}/comments")
        return [str(c["body"]) for c in comments if "merge-bot outcome of entry" in c["body"]]

    async def main_commits(self) -> list[str]:
        """Every commit reachable from main (read from the simulator's repository itself)."""
        owner, name = self.repo.split("/")
        found = self.sim.sim.state.repo_by_name(owner, name)
        assert found is not None
        return await self.sim.sim.git(found).rev_list("main")

    async def log(self) -> list[dict[str, Any]]:
        return [e for e in await self.sim.log() if e.get("repo") in (None, self.repo)]


Files = dict[str, str | None]
FILES: dict[str, Callable[[int], Files]] = {
    "plain": lambda i: {f"plain-{i}.txt": f"{i}\n"},
    "feature-a": lambda i: {"feature-a.flag": f"{i}\n"},  # green alone, red with feature-b (CI_SCRIPT)
    "feature-b": lambda i: {"feature-b.flag": f"{i}\n"},
    "broken": lambda i: {"broken.flag": f"{i}\n"},  # always red
    "conflict": lambda i: {"app.txt": f"app, changed by {i}\n"},  # conflicts with every other change of app.txt
}


class GateServiceMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        self.world: World

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.harness.run(work)

    @initialize(
        strategy=st.sampled_from(["staging", "staging", "staging", "pr-branch"]),
        shape=st.sampled_from(SHAPES),
        flaky_retries=st.sampled_from(FLAKY_RETRIES),
        kinds=st.lists(st.sampled_from(sorted(FILES)), min_size=2, max_size=4, unique=True),
        greens=st.integers(2, 4),
    )
    def setup(self, strategy: str, shape: tuple[int, int], flaky_retries: int, kinds: list[str], greens: int) -> None:
        """A repository with two to four PRs of different kinds in the queue, so that every history has work to
        interfere with (and, with batch_max above one, a batch to test; with max_parallel above one, a chain);
        where a chain three or more deep may form, ``greens`` plain PRs more are queued behind them, so that
        the chain can grow that deep past the red and conflicting ones."""
        batch_max, max_parallel = shape
        self.world = self.run(new_world(self.harness, strategy, batch_max, max_parallel, flaky_retries))
        for kind in kinds + ["plain"] * (greens if self.world.depth() >= DEEP else 0):
            self.open_pr(kind)
            self.queue(len(self.world.prs) - 1)

    # -- people and CI ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.world.prs) < (9 if self.world.depth() >= DEEP else 5))
    @rule(kind=st.sampled_from(["plain", "plain", *sorted(FILES)]))
    def open_pr(self, kind: str) -> None:
        world, sim = self.world, self.world.sim
        i = len(world.prs)
        branch = f"{kind}-{i}"

        async def work() -> None:
            await sim.push_commit(world.repo, self.harness.maint, branch, FILES[kind](i), base="main")
            pr = await sim.create_pr(world.repo, self.harness.maint, head=branch, base="main", title=branch)
            world.prs.append((int(pr["number"]), branch))

        self.run(work())

    @precondition(lambda self: bool(self.world.prs))
    @rule(pick=st.integers(0, 8), redelivered=st.booleans())
    def queue(self, pick: int, redelivered: bool = False) -> None:
        """A `/merge` comment; ``redelivered``: the same comment again (a redelivery, a reconciler pass)."""
        world = self.world
        number, _ = world.prs[pick % len(world.prs)]
        owner, name = world.repo.split("/")
        if not (redelivered and number in world.comments):
            world.comments[number] = next(world.edits)
        key = f"comment:{world.comments[number]}"
        claim = Claim(owner, name, number, key, "comment", "queue", "maint")
        self.run(world.enqueuer.queue(Request(owner, name, number, "maint", "comment", claim)))

    @precondition(lambda self: bool(self.world.prs))
    @rule(pick=st.integers(0, 8))
    def cancel(self, pick: int) -> None:
        number, _ = self.world.prs[pick % len(self.world.prs)]
        owner, name = self.world.repo.split("/")
        self.run(self.world.enqueuer.cancel(owner, name, number, "maint", None))

    @precondition(lambda self: bool(self.world.prs))
    @rule(pick=st.integers(0, 8))
    def push_to_pr(self, pick: int) -> None:
        world = self.world
        number, branch = world.prs[pick % len(world.prs)]
        edit = next(world.edits)

        async def work() -> None:
            pull = await world.sim.api("GET", f"/repos/{world.repo}/pulls/{number}")
            if pull["state"] == "open":
                files: Files = {f"more-{edit}.txt": f"{edit}\n"}
                await world.sim.push_commit(world.repo, self.harness.maint, branch, files)

        self.run(work())

    @rule(conflicting=st.booleans())
    def push_to_main(self, conflicting: bool) -> None:
        edit = next(self.world.edits)
        files: Files = {"app.txt": f"app, changed on main {edit}\n"} if conflicting else {f"main-{edit}.txt": "main\n"}
        self.run(self.world.sim.push_commit(self.world.repo, self.harness.owner, "main", files))

    @precondition(lambda self: bool(self.world.prs))
    @rule(pick=st.integers(0, 8))
    def close_pr(self, pick: int) -> None:
        number, _ = self.world.prs[pick % len(self.world.prs)]
        path = f"/repos/{self.world.repo}/pulls/{number}"
        self.run(self.world.sim.api("PATCH", path, token=self.harness.owner.token, json={"state": "closed"}))

    @rule()
    def ci_finishes(self) -> None:
        self.run(self.world.sim.wait_idle())

    @rule(action=st.sampled_from(["fail", "error"]))
    def ci_flakes(self, action: str) -> None:
        """The next CI run of this repository reports red whatever it tests (the simulator's one-shot CI fault):
        a spurious red, so a PR red alone is re-tested on the same commit (when flaky_retries allows) and lands
        if the re-test is green, and a red batch is bisected though every part of it passes."""
        self.run(self.world.sim.fault(kind="ci", action=action, repo=self.world.repo, count=1))

    @rule(count=st.integers(1, 2))
    def ci_held(self, count: int) -> None:
        """The next ``count`` CI runs of this repository are held back (the simulator's ``silent`` fault): no
        status until ``ci_released``. A held first candidate keeps the chain built on it under test, as deep
        as max_parallel allows, while the gate goes on."""
        self.run(self.world.sim.fault(kind="ci", action="silent", repo=self.world.repo, count=count))

    @rule()
    def ci_released(self) -> None:
        """The held CI runs run now and report what the CI script says of their commits."""
        self.run(self.world.sim.release_ci(self.world.repo))

    # -- the bot ------------------------------------------------------------------------------------

    @rule(crash_at=st.none() | st.integers(0, 5))
    def gate_pass(self, crash_at: int | None) -> None:
        self.run(self.world.step(crash_at))

    @rule(crash_at=st.none() | st.integers(0, 3))
    def ci_then_gate_pass(self, crash_at: int | None) -> None:
        """The common case, weighted up: CI has answered when the gate looks."""
        self.run(self.world.sim.wait_idle())
        self.run(self.world.step(crash_at))

    @rule()
    def gate_runs(self) -> None:
        """As ``Gate.run``: pass after pass (at most six) until the gate decides to wait, while CI runs, so a
        chain builds up as deep as max_parallel allows."""
        for _ in range(6):
            if not self.run(self.world.step(None)) or self.world.waits:
                break

    # -- promises -----------------------------------------------------------------------------------

    @invariant()
    def base_holds_only_tested_commits(self) -> None:
        log = self.run(self.world.log())
        assert untested_base_moves(log, 0, pusher=self.harness.bot.login) == []
        assert merged_twice(log) == []
        world = self.world
        assert self.run(world.chain_problems()) == []
        depth = world.depth()
        serial = world.settings.batch_max == 1 or world.settings.strategy == "pr-branch"
        # Batches of one are never bisected: the chain is at most max_parallel deep (one: the serial queue).
        active = self.run(world.active_attempts())
        assert active <= (depth if serial else max(depth, 2))
        world.deepest = max(world.deepest, active)
        carried = Counter(entry for _, entry in self.run(world.members()))
        assert [entry for entry, n in carried.items() if n > 1] == [], "an entry in two active attempts"
        assert self.run(world.commands_acting_twice()) == []
        if not world.crasher.crashes:
            # An attempt's staging branch goes when the attempt ends; after a crash a dead attempt's may be left
            # for the reaper (run at the end of the example, which must leave none).
            assert self.run(world.stray_staging()) == []
            if serial:
                assert overlapping_attempts(log, most=depth) == []

    def teardown(self) -> None:
        if hasattr(self, "world"):
            self.run(settle(self.world))


async def settle(world: World) -> None:
    """Liveness: no more interference, CI answers; passes of the gate end every entry, and tell it. As in
    ``Gate.run``, the gate acts pass after pass until it decides to wait (so a chain builds up while CI runs),
    and CI answers while it waits."""
    try:
        for _ in range(120):
            busy = await world.step(None)
            if not world.waits:
                continue
            await world.sim.release_ci(world.repo)  # runs held back by ``ci_held``, and any still armed
            await world.sim.wait_idle()
            rows = await world.entries()
            final = all(row.state not in ACTIVE_ENTRY_STATES for row in rows)
            if not busy and final and all(row.told_at is not None for row in rows):
                break
        rows = await world.entries()
        assert [row.state for row in rows if row.state in ACTIVE_ENTRY_STATES] == []
        assert [row.id for row in rows if row.told_at is None] == [], "every final entry's PR is told"
        for row in rows:  # exactly once: a crash between the comment and told_at must not post it twice
            told = [body for body in await world.outcome_comments(row.number) if f"entry {row.id} " in body]
            assert len(told) == 1, (row.number, row.id, told)
        assert await world.active_attempts() == 0
        sessions, forge, clock = world.harness.sessions, world.deps.forge, world.deps.clock
        await Reaper(world.settings, sessions, forge, clock, lambda _train: None).run()
        branches = await world.sim.api("GET", f"/repos/{world.repo}/branches")
        assert [b["name"] for b in branches if b["name"].startswith("merge-bot/")] == []
        pulls = {
            (world.repo, int(p["number"])): p
            for p in await world.sim.api("GET", f"/repos/{world.repo}/pulls", params={"state": "all"})
        }
        log = await world.log()
        # A batch lands in one push, each PR merged at the commit where its own change ends: main's history is
        # every commit reachable from it, not only the tips it pointed to.
        tips = {e["after"] for e in log if e["kind"] == "push" and e["ref"] == "refs/heads/main"}
        history = {world.repo: tips | set(await world.main_commits())}
        assert database_disagrees(rows, pulls, history) == []
        assert untested_base_moves(log, 0, pusher=world.harness.bot.login) == []
        seen = Counter(f"entry {row.state}" for row in rows)
        attempts = await world.attempts()
        seen[f"examples with batch_max {world.settings.batch_max}"] += 1
        seen[f"examples with max_parallel {world.depth()}, flaky_retries {world.settings.flaky_retries}"] += 1
        seen["bisections"] += sum(1 for row in attempts if row.reason == "bisected")
        # Built on another attempt's candidate as the chain grew (not a bisection's part, not a re-test).
        seen["chained attempts"] += sum(
            1 for row in attempts if row.parent_id is not None and row.split_from is None and row.retry_of is None
        )
        seen["re-tests"] += sum(1 for row in attempts if row.retry_of is not None)
        seen["re-tests landed"] += sum(1 for row in attempts if row.retry_of is not None and row.state == "done")
        seen["spurious reds"] += sum(1 for e in log if e["kind"] == "ci" and e.get("fault") in ("fail", "error"))
        # A re-test of a candidate whose CI run was a spurious red (the same commit, on a fresh ref).
        faulted = {e["sha"] for e in log if e["kind"] == "ci" and e.get("fault") in ("fail", "error")}
        by_id = {row.id: row for row in attempts}
        retests = [row for row in attempts if row.retry_of is not None]
        spurious = [row for row in retests if by_id[row.retry_of].candidate_sha in faulted]
        seen["spurious reds re-tested"] += len(spurious)
        seen["spurious reds re-tested and landed"] += sum(1 for row in spurious if row.state == "done")
        seen[f"examples with {world.deepest} active attempts at most"] += 1
        seen[f"examples with a chain {DEEP} deep or more"] += world.deepest >= DEEP
        seen["held CI runs"] += sum(1 for e in log if e["kind"] == "ci" and e.get("fault") == "silent")
        seen["settled flaky"] += sum(1 for row in attempts if (row.reason_detail or {}).get("outcome") == "flaky")
        async with world.harness.engine.connect() as connection:
            sizes = select(AttemptEntry.attempt_id).where(AttemptEntry.attempt_id.in_([row.id for row in attempts]))
            counts = Counter(int(a) for (a,) in await connection.execute(sizes))
        seen["attempts of two or more"] += sum(1 for n in counts.values() if n > 1)
        seen["examples"] += 1
        seen["crashes"] += world.crasher.crashes
        seen["base moves by the bot"] += sum(
            1 for e in log if e["kind"] == "push" and e["ref"] == "refs/heads/main" and e.get("pusher") == "merge-bot"
        )
        world.seen = seen
        SEEN.update(seen)
    finally:
        await world.restart()


async def new_world(harness: Harness, strategy: str, batch_max: int, max_parallel: int, flaky_retries: int) -> World:
    sim, owner = harness.sim, harness.owner
    repo = await sim.create_repo(owner, f"app{next(_repos)}")
    await sim.add_collaborator(repo, harness.bot.login, "admin", as_user=owner)
    await sim.add_collaborator(repo, harness.maint.login, "write", as_user=owner)
    await sim.push_commit(repo, owner, "main", {"ci.sh": CI_SCRIPT, "app.txt": "app\n"}, message="Initial")
    if strategy == "staging" and max_parallel > 1:
        # CI on the bot's candidates only, taking a moment, so that a chain builds up behind the first candidate
        # (as tests/e2e/test_chains.py does); an instant CI answers before the next pass could build on it.
        await sim.set_ci(repo, "sh ci.sh", context="ci/test", delay_s=CHAIN_CI_DELAY, branches=["merge-bot/**"])
    else:
        await sim.set_ci(repo, "sh ci.sh", context="ci/test")
    settings = load_settings(
        {
            "MERGE_BOT_GITEA_URL": sim.url,
            "MERGE_BOT_GITEA_TOKEN": harness.bot.token,
            "MERGE_BOT_WEBHOOK_SECRET": secrets.token_hex(16),
            "MERGE_BOT_REPOS": repo,
            "MERGE_BOT_DATA_DIR": str(harness.data_dir),
            "MERGE_BOT_STRATEGY": strategy,
            "MERGE_BOT_CI_TIMEOUT_SECONDS": "600",
            "MERGE_BOT_BATCH_MAX": str(batch_max),
            "MERGE_BOT_BATCH_WAIT_SECONDS": "0",
            "MERGE_BOT_MAX_PARALLEL": str(max_parallel),
            "MERGE_BOT_FLAKY_RETRIES": str(flaky_retries),
        }
    )
    crasher = Crasher()
    clock = SystemClock()
    token = SecretStr(harness.bot.token)
    forge = CrashingForge(crasher, harness.http, sim.url, token, backoff=0.01)
    git = CrashingGit(
        crasher,
        committer=Identity(harness.bot.login, f"{harness.bot.login}@merge-bot.invalid"),
        token=token,
        auth_url=sim.url,
        home=harness.data_dir / "git-home",
    )
    permissions = Permissions(forge, clock)
    mirrors = MirrorCache(git, harness.data_dir / "mirrors")
    deps = GateDeps(settings, harness.sessions, forge, git, mirrors, clock, "stateful", permissions)
    enqueuer = Enqueuer(settings, harness.sessions, forge, clock, permissions, lambda _train: None)
    await ensure_merge_styles(forge, settings)  # as the bot's setup does (no webhooks here: the test drives it)
    return World(harness, repo, settings, deps, enqueuer, crasher)


async def start_harness(loop: asyncio.AbstractEventLoop, pg_server_url: str, tmp: Path) -> tuple[Harness, Any]:
    sim_context = running_sim(tmp / "sim")
    sim = await sim_context.__aenter__()
    name = f"merge_bot_stateful_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(pg_server_url, name)
    await upgrade_async(url)
    engine = make_engine(url, pool_size=4)
    owner = await sim.create_user("owner")
    bot = await sim.create_user("merge-bot")
    maint = await sim.create_user("maint")
    (tmp / "bot" / "git-home").mkdir(parents=True)
    harness = Harness(
        loop, sim, owner, bot, maint, url, engine, make_sessionmaker(engine), aiohttp.ClientSession(), tmp / "bot"
    )
    return harness, sim_context


async def stop_harness(harness: Harness, sim_context: Any, pg_server_url: str) -> None:
    await harness.http.close()
    await harness.engine.dispose()
    await sim_context.__aexit__(None, None, None)
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{harness.database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="merge-bot-stateful-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def harness(pg_server_url: str, workdir: Path) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    harness, sim_context = loop.run_until_complete(start_harness(loop, pg_server_url, workdir))
    try:
        GateServiceMachine.harness = harness
        yield harness
    finally:
        loop.run_until_complete(stop_harness(harness, sim_context, pg_server_url))
        loop.close()


def test_gate_service_under_hostile_histories(harness: Harness) -> None:
    before = SEEN.copy()
    run_state_machine_as_test(
        GateServiceMachine,
        settings=settings(
            max_examples=int(os.environ.get("MERGE_BOT_STATEFUL_EXAMPLES", "12")),
            stateful_step_count=26,  # 30 before chains: a chain's history does more per step
            deadline=None,
            database=None,
            derandomize=True,  # the same histories on every CI run (MERGE_BOT_STATEFUL_EXAMPLES explores more)
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    seen = SEEN - before
    print("gate service state machine:", dict(sorted(seen.items())))
    assert seen["entry merged"] and seen["crashes"], "the examples must merge PRs and crash along the way"
    assert seen["attempts of two or more"] and seen["bisections"], "the examples must test batches and bisect them"
    assert seen["chained attempts"] and seen["re-tests"], "the examples must build chains and re-test a red PR"
    assert seen[f"examples with a chain {DEEP} deep or more"], f"the examples must build a chain {DEEP} deep"
    assert seen["held CI runs"] and seen["spurious reds"], "the examples must hold CI back and see spurious reds"


def test_a_deep_chain_with_a_spurious_red_in_it(harness: Harness) -> None:
    """The coverage the random histories are meant to have, made certain by one history written out: six
    green PRs, batches of one, four under test at once. The first candidate's CI is held back and the second
    one's is a spurious red: the chain fills four deep on the held one; the red one waits behind it; once the
    held run reports green the first lands, the red one is re-tested on the same commit (what was built on it
    moved onto the re-test) and lands, and so does the rest. Every rule is followed by the invariants, and the
    end by the liveness pass, as in the random histories."""
    machine = GateServiceMachine()
    steps: list[Callable[[], None]] = [
        lambda: machine.setup("staging", (1, 4), 1, ["plain", "feature-a"], 4),
        lambda: machine.ci_held(1),
        lambda: machine.ci_flakes("fail"),
        lambda: machine.gate_runs(),
        machine.ci_finishes,
        lambda: machine.gate_pass(None),
        machine.ci_released,
        lambda: machine.ci_then_gate_pass(None),
        machine.gate_runs,
    ]
    try:
        for step in steps:
            step()
            machine.base_holds_only_tested_commits()
        world = machine.world
        assert world.deepest >= 4, "the chain fills max_parallel deep on the held first candidate"
    finally:
        machine.teardown()
    seen = world.seen
    print("the deep chain's history:", dict(sorted(seen.items())), "deepest", world.deepest)
    assert seen["held CI runs"] == 1 and seen["spurious reds"] == 1, dict(seen)
    assert seen["spurious reds re-tested"] == 1, dict(seen)
    assert seen["spurious reds re-tested and landed"] == 1, dict(seen)
    assert seen["entry merged"] == 6, dict(seen)
