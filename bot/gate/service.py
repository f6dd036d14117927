"""The gate of one train: snapshot (database + forge) → ``decide`` (pure) → act → persist, until idle.

It runs only while it holds the train's lock (``locks.TrainLock``), and every step is fenced twice more:
database transitions check the row's version (``queries.move_*``), and forge writes are conditional on
SHAs — the staging ref is written with a lease on its old value, the base only by a fast-forward push or
``Do=fast-forward-only`` with ``head_commit_id``. Before each forge write the gate records its intent and
proves it still holds the lock; after a crash the next gate re-reads the forge and the machine decides
from what it sees (the base already at the candidate → finish the bookkeeping, docs/faults.md #1-#3).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, assert_never

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import crashpoints, holds
from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.history import train_history
from bot.db.models import Attempt, AttemptEntry, Entry, PullRequest, Repository, Train
from bot.db.views import attempt_view, entry_view
from bot.forge import errors
from bot.forge.client import GiteaClient, Status
from bot.forge.permissions import AllowList, Permissions
from bot.gate import checks, waiting
from bot.gate.build import build_candidate
from bot.gate.build import failure as build_failure
from bot.gate.display import Display
from bot.gate.locks import TrainLock
from bot.gate.notices import Notices
from bot.gate.rows import Loaded, Running
from bot.gate.strategies import Base, Landed, Refused, plan_for
from bot.gate.waiting import Waits
from bot.git.candidates import Broken
from bot.git.mirror import Mirror, MirrorCache, Pushed, Rejected, Rejection
from bot.git.runner import GitError, GitRunner
from bot.logs import get_logger
from bot.queue import adaptive, machine, messages
from bot.queue.checks import RED_STATES, Verdict, evaluate, is_own
from bot.queue.checks import latest_per_context as checks_latest
from bot.queue.commands import DepRef
from bot.queue.deps import Blocked, DepPull, Ready
from bot.queue.machine import (
    AbandonAttempt,
    Action,
    BuildCandidate,
    CancelEntry,
    FailAttempt,
    FinishMerged,
    MergeAttempt,
    PromoteEntry,
    ReplaceChain,
    RequeueEntry,
    RetryAttempt,
    SettleBisection,
    StartAttempt,
    WaitUntil,
)
from bot.queue.model import (
    AttemptState,
    AttemptView,
    BisectionOutcome,
    BisectionView,
    EntryState,
    EntryView,
    Hold,
    Reason,
    RequiredChecks,
    StatusView,
    Strategy,
    TrainSnapshot,
)
from bot.queue.policy import QueuePolicy
from bot.repoconfig.cache import RepoConfigs
from bot.repos.managed import retired

log = get_logger(__name__)


@dataclass(frozen=True)
class GateDeps:
    """What a gate needs from the process: settings, database, forge, git, time, and who it is."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    forge: GiteaClient
    git: GitRunner
    mirrors: MirrorCache
    clock: Clock
    owner: str
    permissions: Permissions
    configs: RepoConfigs | None = None  # the repositories' own files; None: the process's settings everywhere

    def clone_url(self, repo: Repository) -> str:
        return f"{str(self.settings.gitea_url).rstrip('/')}/{repo.owner}/{repo.name}.git"

    def queue_url(self, repo: Repository, number: int) -> str:
        return f"{str(self.settings.external_url).rstrip('/')}/queue/{repo.owner}/{repo.name}/pull/{number}"


@dataclass(frozen=True)
class Pass:
    """What one pass of the gate decided; ``idle``: nothing is active, the gate may stop."""

    decision: machine.Decision
    idle: bool
    now: datetime


class Gate:
    def __init__(self, deps: GateDeps, train_id: int, lock: TrainLock) -> None:
        self.deps = deps
        self.train_id = train_id
        self.lock = lock
        # The settings this train is worked with (the process's; a repository's own file may override them).
        self.settings: Settings = deps.settings
        self._landed_now: dict[int, str] = {}  # attempt → candidate the base was just fast-forwarded to
        # Entries merged in this pass: told after the next pass's actions, so that the next candidate is
        # under CI while the PRs get their statuses and comments (told_at makes sure they are told).
        self._tell_later: set[int] = set()
        self._seen_status: dict[tuple[str, str], StatusView] = {}
        self._required = RequiredChecks()  # the last snapshot's: what a PR's own head must have to land as it is
        self.notices = Notices(deps.settings, deps.sessions, deps.forge, deps.clock, lock, train_id, deps.queue_url)
        self.display = Display(deps.settings, deps.sessions, deps.forge, self.notices)

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self, wake: asyncio.Event) -> None:
        """Work the train until it has nothing active; wait for ``wake`` (or a poll tick) in between."""
        backoff = 1.0
        previous: machine.Decision | None = None
        repeats = 0
        while True:
            await self.lock.check()
            try:
                done = await self.step()
                if done.decision.waits:
                    if done.idle:
                        return
                    await self._sleep(wake, done.decision.actions, done.now)
                    continue
                # The same decision twice in a row means the last try changed nothing (a refused push,
                # "try again later"): back off before the next fresh snapshot instead of hammering the forge.
                repeats = repeats + 1 if done.decision == previous else 0
                previous = done.decision
                if repeats:
                    # Not cut short by a wake: the reconciler and every webhook wake the train, which would turn
                    # the back-off into one merge call per event (docs/faults.md #17).
                    await asyncio.sleep(min(0.5 * 2**repeats, 30.0))
                backoff = 1.0
            except (errors.ForgeError, GitError, queries.StaleRow) as exc:
                # Infrastructure trouble or a race: nothing is assumed, the next snapshot re-reads everything.
                log.warning("gate.retry", train=self.train_id, error=str(exc), error_type=type(exc).__name__)
                await self._wait(wake, backoff)
                backoff = min(backoff * 2, 30.0)

    async def step(self) -> Pass:
        """One pass: tell the outcomes still untold; load the train, refresh its facts from the forge and renew
        its leases; snapshot (reads only); record what it read (statuses) and tell waiting entries what they
        wait for; decide; act (or, when the decision is to wait, show the queued entries their positions)."""
        earlier, self._tell_later = self._tell_later, set()
        await self.notices.tell_untold(skip=earlier)  # what a crash or the forge cut short
        loaded = await self.load()
        if retired(self.deps.settings, loaded.repo):
            return await self.retire(loaded)  # before anything reads the forge: the repository may be gone
        if self.deps.configs is not None:  # the branch's own file at its tip, read once per tip
            self.settings = self.notices.settings = await self.deps.configs.for_train(loaded.train, loaded.repo)
        await self.refresh_facts(loaded)
        await self.renew_leases(loaded)
        snapshot, waits = await self.snapshot(loaded)
        self._required = snapshot.required
        await self.remember_statuses(loaded, snapshot)
        await self.display.tell_waiting(loaded, waits)
        decision = machine.decide(snapshot)
        log.info(
            "gate.decision",
            train=self.train_id,
            reason=decision.reason.value,
            actions=[type(action).__name__ for action in decision.actions],
        )
        await self.display.mirror_checks(loaded, snapshot)
        if decision.waits:
            await self.notices.tell_untold(skip=self._tell_later)  # nothing started: tell them now
            self._tell_later.clear()
            idle = not loaded.entries and not loaded.attempts
            if not idle:
                await self.display.post_positions(loaded, snapshot, decision)
            return Pass(decision, idle, snapshot.now)
        for action in decision.actions:
            await self.apply(action, loaded, snapshot)
        used, decided = snapshot, decision
        if self._landed_now:
            # The forge accepted the fast-forward: that is the fact the next decision needs, so
            # decide on it at once instead of re-reading everything (the machine still decides).
            used, decided = await self._decide_landed(snapshot, loaded)
        await self._fill_window(used, decided, loaded)
        await self.notices.tell_untold(skip=self._tell_later)  # the last pass's merges, now this pass's work runs
        return Pass(decision, False, snapshot.now)

    async def _fill_window(self, snapshot: TrainSnapshot, decision: machine.Decision, loaded: Loaded) -> None:
        """A chain fills its window in one pass rather than one attempt per pass: once the attempts a decision
        started are under test, the machine is asked again on what this pass read with them at the chain's
        end (pending, no statuses yet), and the next attempt it starts is built at once. Only a decision that
        did nothing but start attempts (and finish landed ones) is followed this way, and only the starts of
        the next decision are taken: everything else waits for the next pass's fresh read."""
        if not any(isinstance(a, StartAttempt) for a in decision.actions):
            return
        if not all(isinstance(a, (StartAttempt, FinishMerged)) for a in decision.actions):
            return
        for _ in range(self.policy().max_parallel):
            known = {view.id for view in snapshot.attempts}
            new = [running for attempt_id, running in loaded.attempts.items() if attempt_id not in known]
            if not new or any(r.row.state != AttemptState.TESTING.value or r.row.candidate_sha is None for r in new):
                return  # a build stopped (a conflict), or was known red or landed as it was: a fresh pass decides
            testing = {entry_id for running in new for entry_id in running.entry_ids}
            snapshot = replace(
                snapshot,
                attempts=(*snapshot.attempts, *(attempt_view(r.row, r.members) for r in new)),
                entries=tuple(
                    replace(view, state=EntryState.TESTING) if view.id in testing else view for view in snapshot.entries
                ),
                window=loaded.train.window,
            )
            starts = [a for a in machine.decide(snapshot).actions if isinstance(a, StartAttempt)]
            if not starts:
                return
            log.info(
                "gate.decision", train=self.train_id, reason="window_open", after="started", actions=["StartAttempt"]
            )
            for action in starts:
                await self.apply(action, loaded, snapshot)

    async def retire(self, loaded: Loaded) -> Pass:
        """The repository left the managed set: end every active attempt and cancel every active entry with
        ``repository_unmanaged`` (``machine.retire``), each recorded in its audit log and told on its PR as far
        as the forge still lets the bot. Nothing is left active, so the train goes idle."""
        now = self.deps.clock.now()
        views = [entry_view(entry, pull) for entry, pull in loaded.entries.values()]
        chain = [attempt_view(r.row, r.members, (), landed=False) for r in loaded.attempts.values()]
        decision = machine.retire(views, chain, loaded.repo.unmanaged_reason or "unmanaged")
        log.warning("gate.retired", train=self.train_id, repo=loaded.repo.full_name, actions=len(decision.actions))
        for action in decision.actions:
            if isinstance(action, AbandonAttempt):
                await self._abandon(action, loaded)
            elif isinstance(action, CancelEntry):
                await self._cancel(action, loaded)
        return Pass(decision, not decision.actions, now)

    async def _sleep(self, wake: asyncio.Event, actions: tuple[Action, ...], now: datetime) -> None:
        timeout = self.settings.gate_poll_seconds
        for action in actions:
            if isinstance(action, machine.WaitUntil) and action.at is not None:
                timeout = max(0.0, min(timeout, (action.at - now).total_seconds()))
        await self._wait(wake, timeout)

    @staticmethod
    async def _wait(wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    # -- snapshot ---------------------------------------------------------------------------------

    async def load(self) -> Loaded:
        """The train's rows: its active entries with their PRs, and its active attempts in chain order."""
        async with self.deps.sessions() as session:
            train = await session.get(Train, self.train_id)
            assert train is not None
            repo = await session.get(Repository, train.repository_id)
            assert repo is not None
            rows = await queries.active_entries(session, self.train_id)
            found = await queries.active_attempts(session, self.train_id)
            bisections = await queries.unsettled_bisections(session, self.train_id)
        attempts = {attempt.id: Running(attempt, members) for attempt, members in found}
        return Loaded(train, repo, {entry.id: (entry, pull) for entry, pull in rows}, attempts, bisections)

    async def refresh_facts(self, loaded: Loaded) -> None:
        """Entries under test and waiting ones are judged on a fresh read of the forge, never on cached facts:
        their PRs are read again and stored, and a waiting entry's dependencies (Gitea's and the body's
        ``Depends-On:`` lines) recorded afresh, so fixing a cause unblocks it without a new command."""
        deps, repo = self.deps, loaded.repo
        now = deps.clock.now()
        carried = {entry_id for running in loaded.attempts.values() for entry_id in running.entry_ids}
        fresh = [
            (entry_id, entry, pull)
            for entry_id, (entry, pull) in loaded.entries.items()
            if entry.id in carried or entry.state == EntryState.WAITING
        ]
        # A batch's PRs are read at once: the forge answers them side by side.
        infos = await asyncio.gather(*(deps.forge.get_pull(repo.owner, repo.name, pull.number) for _, _, pull in fresh))
        for (entry_id, entry, _), info in zip(fresh, infos, strict=True):
            async with deps.sessions.begin() as session:
                pull = await queries.upsert_pull(session, repo.id, info, now)
            loaded.entries[entry_id] = (entry, pull)
            if entry.state == EntryState.WAITING:
                native = await deps.forge.dependencies(repo.owner, repo.name, pull.number)
                async with deps.sessions.begin() as session:
                    await waiting.refresh_needs(session, entry.id, repo.owner, repo.name, pull.body, native)

    async def renew_leases(self, loaded: Loaded) -> None:
        """This gate works the train's active attempts: their leases say so to the reaper."""
        deps = self.deps
        expires = deps.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        for running in loaded.attempts.values():
            async with deps.sessions.begin() as session:
                await queries.move_attempt(session, running.row, lease_owner=deps.owner, lease_expires_at=expires)

    async def snapshot(self, loaded: Loaded) -> tuple[TrainSnapshot, dict[int, Waits]]:
        """What the machine decides on, read from the database and the forge; writes nothing. Also what each
        waiting entry that may not join the queue yet waits for."""
        deps, repo, train = self.deps, loaded.repo, loaded.train
        now = deps.clock.now()
        base_tip = await deps.forge.branch_sha(repo.owner, repo.name, train.branch)
        views: list[EntryView] = []
        waits: dict[int, Waits] = {}
        facts: dict[DepRef, DepPull] = {}
        for entry, pull in loaded.entries.values():
            view = entry_view(entry, pull)
            if entry.state == EntryState.WAITING:
                wait = await self._waits(repo, entry, pull, facts)
                if wait is not None:
                    waits[entry.id] = wait
                view = replace(view, ready=wait is None)
            views.append(view)
        attempt_views = [
            await self._attempt_view(repo, train.branch, base_tip, running) for running in loaded.attempts.values()
        ]
        own = self.settings.status_context
        required = await checks.required_checks(
            deps.forge,
            repo.owner,
            repo.name,
            train.branch,
            self.settings.required_contexts,
            own,
        )
        policy, window = await self._adapted(loaded, views)
        snapshot = TrainSnapshot(
            holds=await self._holds(loaded, now),
            train_id=self.train_id,
            base_branch=train.branch,
            base_tip=base_tip,
            entries=tuple(views),
            attempts=tuple(attempt_views),
            now=now,
            required=required,
            own_context=self.settings.status_context,
            policy=policy,
            window=window,
            bisections=tuple(
                BisectionView(
                    attempt.id,
                    tuple((entry_id, EntryState(state)) for entry_id, state in states),
                    str((attempt.reason_detail or {}).get("context", "")),
                )
                for attempt, states in loaded.bisections
            ),
        )
        return snapshot, waits

    async def _holds(self, loaded: Loaded, now: datetime) -> tuple[Hold, ...]:
        """The freezes and pauses on this train now: its own, its repository's, and the merge windows' (from the
        train's effective settings)."""
        async with self.deps.sessions() as session:
            rows = await holds.in_force(session, now, loaded.repo.id)
        found = holds.for_branch(rows, loaded.repo.id, loaded.train.branch)
        outside = holds.window_hold(self.settings.windows, now)
        return (*found, outside) if outside is not None else found

    async def _adapted(self, loaded: Loaded, views: list[EntryView]) -> tuple[QueuePolicy, int | None]:
        """The policy and window this pass works with: the settings and the train's window, or, with
        ``adaptive``, the batch size and depth chosen from the train's own history for what is waiting
        (the choice is the depth: the window rule does not move it)."""
        policy, train = self.policy(), loaded.train
        if not policy.adaptive:
            return policy, train.window
        async with self.deps.sessions() as session:
            history = await train_history(session, train.id, own_context=self.settings.status_context)
        backlog = sum(1 for view in views if view.state is EntryState.QUEUED)
        choice = adaptive.choose(backlog, adaptive.estimate(history), policy)
        shown = {"batch": choice.batch, "window": choice.window, "reason": choice.reason}
        if train.adaptive is None or {k: train.adaptive.get(k) for k in shown} != shown:
            async with self.deps.sessions.begin() as session:
                await session.execute(update(Train).where(Train.id == train.id).values(adaptive=shown))
            train.adaptive = shown
            log.info("gate.adaptive", train=train.id, **shown)
        return adaptive.adapt(policy, choice), choice.window

    def policy(self) -> QueuePolicy:
        """How this train forms batches: the settings, capped by what the strategy can carry."""
        settings = self.settings
        limit = plan_for(Strategy(settings.strategy)).max_entries
        # A strategy that tests the PR's own branch carries one entry and cannot build on another candidate.
        chains = limit is None
        return QueuePolicy(
            batch_max=min(settings.batch_max, limit) if limit else settings.batch_max,
            batch_wait_seconds=settings.batch_wait_seconds,
            bisect=settings.bisect,
            urgent_priority=settings.urgent_priority,
            max_parallel=settings.max_parallel if chains else 1,
            window=settings.window if chains else None,
            window_floor=min(settings.window_floor, settings.max_parallel) if chains else 1,
            optimistic=settings.optimistic and chains,
            flaky_retries=settings.flaky_retries,
            adaptive=settings.adaptive,
        )

    async def _attempt_view(self, repo: Repository, branch: str, base_tip: str, running: Running) -> AttemptView:
        """An attempt as the machine sees it: whether its candidate landed, and its statuses."""
        attempt = running.row
        statuses: tuple[StatusView, ...] = ()
        landed = False
        if attempt.candidate_sha:
            if attempt.state == AttemptState.MERGING and base_tip != attempt.candidate_sha:
                landed = await self._landed(repo, branch, attempt.candidate_sha)
            known_red = "inherits" in (attempt.reason_detail or {})  # never pushed: the forge does not know it
            if (
                attempt.state != AttemptState.BUILDING
                and not landed
                and not known_red
                and base_tip != attempt.candidate_sha
            ):
                # Statuses count until the base is at the candidate: a merge is retried only while still green.
                # A building candidate is recorded before it is pushed, so after a crash the forge may not know
                # it (404, or 500 on Gitea): the machine rebuilds it without looking at statuses
                # (docs/faults.md #1).
                listed = await self.deps.forge.list_statuses(repo.owner, repo.name, attempt.candidate_sha)
                floor = attempt.status_floor
                statuses = tuple(
                    StatusView(s.context, s.state, s.target_url, s.description)
                    for s in listed
                    if floor is None or (s.id is not None and s.id > floor)  # a re-test: only what came after it
                )
        return attempt_view(attempt, running.members, statuses, landed=landed)

    async def remember_statuses(self, loaded: Loaded, snapshot: TrainSnapshot) -> None:
        """Keep each candidate's latest statuses for the queue page (Forgejo sends no status webhooks)."""
        for view in snapshot.attempts:
            if view.candidate_sha and view.statuses:
                await self._remember_statuses(loaded.repo, view.candidate_sha, view.statuses, snapshot.now)

    async def _remember_statuses(
        self, repo: Repository, sha: str, statuses: tuple[StatusView, ...], now: datetime
    ) -> None:
        """Keep the candidate's latest statuses for the queue page (Forgejo sends no status webhooks)."""
        fresh = {c: st for c, st in checks_latest(statuses).items() if self._seen_status.get((sha, c)) != st}
        if not fresh:
            return
        async with self.deps.sessions.begin() as session:
            for context, status in fresh.items():
                await queries.save_status(
                    session,
                    repo.id,
                    sha,
                    context,
                    status.state,
                    target_url=status.target_url,
                    description=status.description,
                    now=now,
                )
        for context, status in fresh.items():
            self._seen_status[(sha, context)] = status

    async def _waits(
        self, repo: Repository, entry: Entry, pull: PullRequest, facts: dict[DepRef, DepPull]
    ) -> Waits | None:
        """None when a waiting entry may join the queue, else what it waits for (or why it is blocked)."""
        async with self.deps.sessions() as session:
            needs = await waiting.entry_needs(session, entry.id)
            graph = await waiting.waiting_graph(session)
        known = await waiting.dependency_facts(self.deps.forge, needs, facts)
        verdict = waiting.verdict(repo.owner, repo.name, pull.number, needs, known, graph, pull.body)
        if isinstance(verdict, Ready) and (entry.reason_detail or {}).get("awaiting_approvals"):
            protection = await self.deps.forge.branch_protection(repo.owner, repo.name, pull.base_ref)
            required = protection.required_approvals if protection else 0
            if await self.deps.forge.approvals(repo.owner, repo.name, pull.number) < required:
                return Waits(f"waiting for {required} approving review(s)", blocked=False)
        if isinstance(verdict, Ready):
            return None
        return Waits(waiting.describe(verdict, repo.owner, repo.name), blocked=isinstance(verdict, Blocked))

    async def _requeue(self, action: RequeueEntry, loaded: Loaded) -> None:
        entry, _ = loaded.entries[action.entry_id]
        async with self.deps.sessions.begin() as session:
            await queries.move_entry(session, entry, EntryState.QUEUED.value)
            queries.record(session, entry.id, "requeued", reason=Reason.ORPHANED.value)
        log.info("gate.requeued", train=self.train_id, entry=entry.id, reason=Reason.ORPHANED.value)

    async def _promote(self, action: PromoteEntry, loaded: Loaded) -> None:
        entry, _ = loaded.entries[action.entry_id]
        async with self.deps.sessions.begin() as session:
            await queries.move_entry(session, entry, EntryState.QUEUED.value, queued_at=self.deps.clock.now())
            queries.record(session, entry.id, "dependencies_met", reason=Reason.DEPENDENCIES_MET.value)
        self.display.promoted(entry.id)
        log.info("gate.promoted", train=self.train_id, entry=entry.id)

    async def _landed(self, repo: Repository, branch: str, candidate: str) -> bool:
        mirror = await self._mirror(repo)
        await mirror.fetch(f"+refs/heads/{branch}:refs/heads/{branch}")
        tip = await mirror.resolve(f"refs/heads/{branch}")
        if tip is None:
            return False
        result = await self.deps.git.run(
            mirror.path, "merge-base", "--is-ancestor", candidate, tip, ok_returncodes=(0, 1)
        )
        return result.returncode == 0

    async def _mirror(self, repo: Repository) -> Mirror:
        return await self.deps.mirrors.ensure(self.deps.clone_url(repo))

    # -- actions ----------------------------------------------------------------------------------

    async def _decide_landed(self, snapshot: TrainSnapshot, loaded: Loaded) -> tuple[TrainSnapshot, machine.Decision]:
        landed_now, self._landed_now = self._landed_now, {}
        base_tip = snapshot.base_tip
        attempts = []
        for view in snapshot.attempts:
            if view.id in landed_now:
                base_tip = landed_now[view.id]
                view = replace(view, state=AttemptState.MERGING, landed=True)
            attempts.append(view)
        landed = replace(snapshot, base_tip=base_tip, attempts=tuple(attempts))
        decision = machine.decide(landed)
        log.info(
            "gate.decision",
            train=self.train_id,
            reason=decision.reason.value,
            after="fast-forward",
            actions=[type(action).__name__ for action in decision.actions],
        )
        for action in decision.actions:
            await self.apply(action, loaded, landed)
        return landed, decision

    async def apply(self, action: Action, loaded: Loaded, snapshot: TrainSnapshot) -> None:
        """Carry out one action, on exactly the attempt or entry it names."""
        if isinstance(action, StartAttempt):
            await self._start(action, loaded)
        elif isinstance(action, BuildCandidate):
            await self._build(loaded.attempt(action.attempt_id), loaded)
        elif isinstance(action, MergeAttempt):
            await self._merge(action, loaded)
        elif isinstance(action, FinishMerged):
            await self._finish(action, loaded)
        elif isinstance(action, FailAttempt):
            await self._fail(action, loaded)
        elif isinstance(action, AbandonAttempt):
            await self._abandon(action, loaded)
        elif isinstance(action, CancelEntry):
            await self._cancel(action, loaded)
        elif isinstance(action, PromoteEntry):
            await self._promote(action, loaded)
        elif isinstance(action, RequeueEntry):
            await self._requeue(action, loaded)
        elif isinstance(action, ReplaceChain):
            await self._replace(action, loaded)
        elif isinstance(action, SettleBisection):
            await self._settle(action, loaded)
        elif isinstance(action, RetryAttempt):
            await self._retry(action, loaded)
        elif isinstance(action, WaitUntil):
            pass  # a wait is carried out by the loop (``run``), not here
        else:
            assert_never(action)

    async def _start(self, action: StartAttempt, loaded: Loaded) -> None:
        running = await self._open(action.entry_ids, action.base_sha, action.parent_id, None, loaded)
        await self._build(running, loaded)

    async def _open(
        self, entry_ids: tuple[int, ...], base_sha: str, parent_id: int | None, split_from: int | None, loaded: Loaded
    ) -> Running:
        """A new attempt for ``entry_ids`` (in this order) on ``base_sha``, its entries under test."""
        deps = self.deps
        now = deps.clock.now()
        strategy = self._strategy(loaded, entry_ids)
        limit = plan_for(strategy).max_entries
        assert limit is None or len(entry_ids) <= limit, (strategy, entry_ids)
        async with deps.sessions.begin() as session:
            attempt = Attempt(
                train_id=self.train_id,
                parent_id=parent_id,
                split_from=split_from,
                state=AttemptState.BUILDING.value,
                strategy=strategy.value,
                base_sha=base_sha,
                lease_owner=deps.owner,
                lease_expires_at=now + timedelta(seconds=self.settings.lease_seconds),
                created_at=now.replace(microsecond=0),
            )
            session.add(attempt)
            await session.flush()
            members = []
            for position, entry_id in enumerate(entry_ids):
                entry, _ = loaded.entries[entry_id]
                members.append(
                    AttemptEntry(
                        attempt_id=attempt.id, entry_id=entry_id, position=position, head_sha=entry.approved_sha
                    )
                )
                await queries.move_entry(session, entry, EntryState.TESTING.value)
                detail = {"base": base_sha, "with": [loaded.entries[other][1].number for other in entry_ids]}
                queries.record(session, entry_id, "attempt_started", attempt_id=attempt.id, detail=detail)
            session.add_all(members)
        running = loaded.attempts[attempt.id] = Running(attempt, members)
        self._crashpoint("attempt_created")
        log.info(
            "gate.attempt_started",
            train=self.train_id,
            attempt=attempt.id,
            entries=list(entry_ids),
            parent=parent_id,
            split_from=split_from,
        )
        return running

    async def _replace(self, action: ReplaceChain, loaded: Loaded) -> None:
        """End a tail of the chain and build its groups in its place, each on the one before; the groups'
        entries stay under test (a bisection's parts, new or rebuilt after a change)."""
        deps = self.deps
        now = deps.clock.now()
        kept = {entry_id for group in action.groups for entry_id in group.entry_ids}
        ended = [loaded.attempt(attempt_id) for attempt_id in action.attempt_ids]
        async with deps.sessions.begin() as session:
            for running in ended:
                attempt = running.row
                if attempt.id == action.bisected:
                    detail = {
                        **(attempt.reason_detail or {}),  # "inherits" stays: it was split without a run of its own
                        **action.detail,
                        "base": loaded.train.branch,
                        "entries": list(running.entry_ids),
                        "failed_as": action.reason.value,  # checks_failed or ci_timeout
                    }
                    values: dict[str, Any] = {"state": AttemptState.FAILED.value, "reason": Reason.BISECTED.value}
                    values["reason_detail"] = detail
                    await self._move_window(session, loaded, failed=True)
                else:
                    values = {"state": AttemptState.ABANDONED.value, "reason": action.reason.value}
                await queries.move_attempt(session, attempt, finished_at=now, intent=None, **values)
                plan = plan_for(attempt.strategy)
                for entry_id in running.entry_ids:
                    if entry_id not in kept:
                        continue  # a stale entry: cancelled by the same decision
                    entry, pull = loaded.entries[entry_id]
                    approval = plan.approval_after_abandon(attempt.candidate_sha, pull)
                    if approval is not None:
                        await queries.move_entry(session, entry, EntryState.TESTING.value, approved_sha=approval)
                    event = "bisected" if attempt.id == action.bisected else "rebuilt"
                    queries.record(session, entry_id, event, reason=action.reason.value, attempt_id=attempt.id)
        for running in ended:
            del loaded.attempts[running.row.id]
            await self._delete_staging(running.row, loaded)
            if running.row.id == action.bisected:  # its parts are built next: a part with its tree is known red
                loaded.bisections.append((running.row, [(e, EntryState.TESTING.value) for e in running.entry_ids]))
        log.info(
            "gate.chain_replaced",
            train=self.train_id,
            ended=list(action.attempt_ids),
            bisected=action.bisected,
            groups=[list(group.entry_ids) for group in action.groups],
            reason=action.reason.value,
        )
        self._crashpoint("chain_replaced")
        parent_id, base = action.parent_id, action.base_sha
        for group in action.groups:
            running = await self._open(group.entry_ids, base, parent_id, group.split_from, loaded)
            await self._build(running, loaded)
            if running.row.candidate_sha is not None and running.row.state == AttemptState.TESTING:
                parent_id, base = running.row.id, running.row.candidate_sha

    async def _retry(self, action: RetryAttempt, loaded: Loaded) -> None:
        """Test the red candidate again: the attempt ends ``retried`` and a new one, for the same entry on the
        same base, builds the very same commit (same committer date) onto a fresh ref; statuses the candidate
        had before count no more (``status_floor``). What was built on the old attempt moves onto the new one."""
        deps = self.deps
        running = loaded.attempt(action.attempt_id)
        old = running.row
        assert old.candidate_sha is not None
        listed = await deps.forge.list_statuses(loaded.repo.owner, loaded.repo.name, old.candidate_sha)
        floor = max((s.id for s in listed if s.id is not None), default=old.status_floor)
        # Forge first, then the database: after a crash in between, the old attempt sees the re-run's statuses
        # (pending, then the result) and is judged by them; a red one is re-tested once more (docs/faults.md #39).
        rerun = await self._rerun(old, listed, floor, loaded)
        if rerun:
            self._crashpoint("rerun_requested")
        now = deps.clock.now()
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session,
                old,
                state=AttemptState.ABANDONED.value,
                finished_at=now,
                reason=Reason.RETRIED.value,
                reason_detail={**action.detail, "base": loaded.train.branch},
                intent=None,
            )
            new = Attempt(
                train_id=self.train_id,
                parent_id=old.parent_id,
                split_from=old.split_from,
                retry_of=old.id,
                retries=(old.retries or 0) + 1,
                status_floor=floor,
                state=(AttemptState.TESTING if rerun else AttemptState.BUILDING).value,
                strategy=old.strategy,
                base_sha=old.base_sha,
                candidate_sha=old.candidate_sha if rerun else None,
                ref=old.ref if rerun else None,  # re-run in place: the same commit on the same ref
                deadline_at=now + timedelta(seconds=self.settings.ci_timeout_seconds) if rerun else None,
                lease_owner=deps.owner,
                lease_expires_at=now + timedelta(seconds=self.settings.lease_seconds),
                created_at=old.created_at,  # the committer date: the rebuild is the very same commit
            )
            session.add(new)
            await session.flush()
            members = [
                AttemptEntry(
                    attempt_id=new.id,
                    entry_id=m.entry_id,
                    position=m.position,
                    head_sha=m.head_sha,
                    end_sha=m.end_sha if rerun else None,
                )
                for m in running.members
            ]
            session.add_all(members)
            await queries.adopt_children(session, old.id, new.id)
            for member in running.members:
                detail = {
                    "context": action.detail.get("context", ""),
                    "retry": new.retries,
                    "how": "actions-rerun" if rerun else "re-push",
                }
                queries.record(
                    session, member.entry_id, "retried", reason=Reason.RETRIED.value, attempt_id=old.id, detail=detail
                )
        loaded.attempts = {
            (new.id if attempt_id == old.id else attempt_id): (Running(new, members) if attempt_id == old.id else each)
            for attempt_id, each in loaded.attempts.items()
        }
        for each in loaded.attempts.values():
            if each.row.parent_id == old.id:  # as adopt_children moved it
                each.row.parent_id = new.id
                each.row.version += 1
        log.info(
            "gate.retried",
            train=self.train_id,
            attempt=old.id,
            retry=new.id,
            candidate=old.candidate_sha,
            how="actions-rerun" if rerun else "re-push",
        )
        self._crashpoint("retry_opened")
        if rerun:
            await self._say_testing(loaded.attempts[new.id], loaded, old.candidate_sha, old.ref or "")
            return
        await self._build(loaded.attempts[new.id], loaded)  # it deletes the red attempt's ref first

    async def _rerun(self, attempt: Attempt, listed: list[Status], floor: int | None, loaded: Loaded) -> bool:
        """Re-test through Gitea Actions where the server can (newer than 1.25): re-run the candidate's failed
        runs on the same commit and ref, so what was green is not run again and nothing is pushed. True when
        every red context got a fresh status from it (Gitea posts the re-run jobs' ``pending`` as it accepts the
        re-run); False, and the caller re-pushes to a fresh ref, where the server has no such API (Gitea 1.25,
        Forgejo: 404), CI is not Gitea Actions (no failed run for the commit), or a red context is not covered
        (another CI's)."""
        forge, repo, sha = self.deps.forge, loaded.repo, attempt.candidate_sha
        if sha is None or plan_for(attempt.strategy).staging_branch(attempt.ref) is None:
            return False
        views = (StatusView(s.context, s.state, s.target_url, s.description) for s in listed)
        own = self.settings.status_context
        red = {c for c, st in checks_latest(views).items() if st.state in RED_STATES and not is_own(c, own)}
        if not red:
            return False
        try:
            failed = [run for run in await forge.action_runs(repo.owner, repo.name, sha) if run.failed]
            if not failed:
                return False
            for run in failed:
                with contextlib.suppress(errors.Conflict):  # 409: being re-run already
                    await forge.rerun_failed_jobs(repo.owner, repo.name, run.id)
            fresh = await forge.list_statuses(repo.owner, repo.name, sha)
        except errors.ForgeError as exc:
            if isinstance(exc, (errors.ServerError, errors.Unavailable, errors.RateLimited)):
                raise  # the forge is unwell: the next pass decides again
            log.info("gate.rerun_unavailable", train=self.train_id, attempt=attempt.id, error=str(exc))
            return False
        covered = {s.context for s in fresh if s.id is not None and (floor is None or s.id > floor)}
        if not red <= covered:
            log.info("gate.rerun_partial", train=self.train_id, attempt=attempt.id, uncovered=sorted(red - covered))
            return False
        return True

    async def _retried_outcome(self, session: AsyncSession, attempt: Attempt, outcome: str) -> None:
        """A re-tested candidate ended: every red result it re-tested was a flake (it landed green) or
        confirmed (red again). Recorded on those attempts (``reason_detail.outcome``) for the flake counts."""
        retried = attempt.retry_of
        while retried is not None:
            row = await session.get(Attempt, retried)
            if row is None:
                return
            await queries.move_attempt(session, row, reason_detail={**(row.reason_detail or {}), "outcome": outcome})
            retried = row.retry_of

    async def _move_window(
        self, session: AsyncSession, loaded: Loaded, *, landed: int = 0, failed: bool = False
    ) -> None:
        """Zuul's window: one deeper for each attempt landed, halved after a failure."""
        policy, train = self.policy(), loaded.train
        window = policy.shrunk(train.window) if failed else policy.grown(train.window, landed)
        if window != train.window:
            await session.execute(update(Train).where(Train.id == train.id).values(window=window))
            train.window = window

    async def _settle(self, action: SettleBisection, loaded: Loaded) -> None:
        """Record what a bisected batch turned out to be; a flaky failure is counted for its context and said
        on every PR it carried."""
        deps = self.deps
        found = [(row, states) for row, states in loaded.bisections if row.id == action.attempt_id]
        if not found:
            return
        attempt, states = found[0]
        entry_ids = [entry_id for entry_id, _ in states]
        # A part split without a CI run of its own (its tree was the batch's) repeats the batch's failure:
        # settled, but not counted or said again.
        counted = action.outcome is BisectionOutcome.FLAKY and "inherits" not in (attempt.reason_detail or {})
        async with deps.sessions.begin() as session:
            detail = {**(attempt.reason_detail or {}), "outcome": action.outcome.value}
            await queries.move_attempt(session, attempt, reason_detail=detail)
            if counted:
                for entry_id in entry_ids:
                    queries.record(
                        session,
                        entry_id,
                        "flaky",
                        reason=Reason.FLAKY.value,
                        attempt_id=attempt.id,
                        detail={"context": action.context},
                    )
            pulls = await queries.pulls_of(session, entry_ids)
        log.info(
            "gate.bisection_settled",
            train=self.train_id,
            attempt=attempt.id,
            outcome=action.outcome.value,
            context=action.context,
        )
        if counted:
            numbers = [pull.number for pull in pulls]
            body = messages.flaky_comment(action.context, detail.get("target_url", ""), numbers)
            for pull in pulls:
                await self.notices.comment(loaded.repo, pull, body)

    def _crashpoint(self, step: str) -> None:
        crashpoints.reached(step, self.settings.crash_at)

    def _strategy(self, loaded: Loaded, entry_ids: tuple[int, ...]) -> Strategy:
        heads = [loaded.entries[entry_id][1].head_repo for entry_id in entry_ids]
        return strategy_for(Strategy(self.settings.strategy), f"{loaded.repo.owner}/{loaded.repo.name}", heads)

    async def _build(self, running: Running, loaded: Loaded) -> None:
        """Build the attempt's candidate from all its entries, in order; record it, push it, test it."""
        deps = self.deps
        attempt = running.row
        repo, branch = loaded.repo, loaded.train.branch
        await self._drop_retried_ref(attempt, loaded)
        mirror = await self._mirror(repo)
        entry_ids = list(running.entry_ids)
        carried = [loaded.entries[entry_id] for entry_id in entry_ids]
        result = await build_candidate(deps.git, mirror, branch, attempt, carried, self.settings, deps.settings)
        if isinstance(result, Broken):
            decision = machine.after_build(attempt_view(attempt, running.members), build_failure(result))
            log.info("gate.build_stopped", train=self.train_id, attempt=attempt.id, entry=result.key)
            for action in decision.actions:
                assert isinstance(action, FailAttempt)
                await self._fail(action, loaded)
            return
        plan = plan_for(attempt.strategy)
        ends = {link.key: link.end_sha for link in result.links}
        red = await self._known_red(mirror, result.sha, loaded) if len(entry_ids) > 1 else None
        if red is not None:
            await self._record_known_red(running, result.sha, ends, red)
            return
        if await self._green_as_is(running, loaded, result.sha):
            await self._record_as_is(running, loaded, result.sha, ends)
            return
        ref = plan.candidate_ref(branch, attempt.id, [pull for _, pull in carried])
        async with deps.sessions.begin() as session:  # the intent, before the push
            await queries.move_attempt(session, attempt, candidate_sha=result.sha, ref=ref, intent={"push": ref})
            await queries.record_ends(session, attempt.id, ends)
        for member in running.members:
            member.end_sha = ends[member.entry_id]
        self._crashpoint("candidate_recorded")
        await self.lock.check()
        expected = plan.push_lease([entry for entry, _ in carried])
        pushed = await self._push_owned(mirror, ref, result.sha, expected)
        if isinstance(pushed, Rejected):
            raise errors.ForgeError("PUSH", ref, None, f"{pushed.reason}: {pushed.detail}")
        self._crashpoint("candidate_pushed")
        deadline = deps.clock.now() + timedelta(seconds=self.settings.ci_timeout_seconds)
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session, attempt, state=AttemptState.TESTING.value, deadline_at=deadline, intent=None
            )
            for entry_id in entry_ids:
                queries.record(
                    session, entry_id, "candidate_built", attempt_id=attempt.id, detail={"sha": result.sha, "ref": ref}
                )
        log.info("gate.testing", train=self.train_id, attempt=attempt.id, candidate=result.sha, ref=ref)
        self._crashpoint("testing_recorded")
        await self._say_testing(running, loaded, result.sha, ref)

    async def _say_testing(self, running: Running, loaded: Loaded, sha: str, ref: str) -> None:
        """Each PR's ``merge-bot`` status: pending, tested on this ref with these others."""
        plan = plan_for(running.row.strategy)
        short_ref = ref.removeprefix("refs/heads/")
        carried = [loaded.entries[entry_id] for entry_id in running.entry_ids]
        numbers = [pull.number for _, pull in carried]
        for e, p in carried:
            head = plan.tested_head(e, sha)
            started = {"ref": short_ref, "with": [n for n in numbers if n != p.number]}
            await self.notices.status(
                loaded.repo, p, head, "pending", messages.status_description(Reason.STARTED, started)
            )

    async def _drop_retried_ref(self, attempt: Attempt, loaded: Loaded) -> None:
        """A re-test goes to a fresh ref: the red attempt's ref is deleted before it is built — also when the
        build resumes after a crash that came between opening the re-test and that deletion, so no ended
        candidate stays on the forge beside the chain until the reaper comes by."""
        if attempt.retry_of is None:
            return
        async with self.deps.sessions() as session:
            old = await session.get(Attempt, attempt.retry_of)
        if old is not None and old.ref and old.ref != attempt.ref:
            await self._delete_staging(old, loaded)

    async def _green_as_is(self, running: Running, loaded: Loaded, sha: str) -> bool:
        """Skip the build: one rebase-method PR at the head of an empty chain whose head already sits on the
        base tip (so the candidate is its own head) and whose required checks are green on that very commit
        lands as it is, without a CI run of its own."""
        attempt = running.row
        if len(running.members) != 1 or attempt.parent_id is not None or attempt.retry_of is not None:
            return False
        entry, _ = loaded.entries[running.members[0].entry_id]
        if attempt.strategy != Strategy.STAGING.value or entry.merge_method != "rebase" or sha != entry.approved_sha:
            return False
        listed = await self.deps.forge.list_statuses(loaded.repo.owner, loaded.repo.name, sha)
        statuses = tuple(StatusView(s.context, s.state, s.target_url, s.description) for s in listed)
        return evaluate(self._required, statuses, self.settings.status_context).verdict is Verdict.SUCCESS

    async def _record_as_is(self, running: Running, loaded: Loaded, sha: str, ends: dict[int, str]) -> None:
        """The PR's own head is the candidate, green already: recorded as tested, with no ref pushed."""
        deps = self.deps
        attempt = running.row
        deadline = deps.clock.now() + timedelta(seconds=self.settings.ci_timeout_seconds)
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session,
                attempt,
                candidate_sha=sha,
                state=AttemptState.TESTING.value,
                deadline_at=deadline,
                reason_detail={**(attempt.reason_detail or {}), "skipped_build": True},
                intent=None,
            )
            await queries.record_ends(session, attempt.id, ends)
            for member in running.members:
                member.end_sha = ends[member.entry_id]
                built = {"sha": sha, "as_is": True}
                queries.record(session, member.entry_id, "candidate_built", attempt_id=attempt.id, detail=built)
        log.info("gate.skipped_build", train=self.train_id, attempt=attempt.id, candidate=sha)

    async def _known_red(self, mirror: Mirror, sha: str, loaded: Loaded) -> Attempt | None:
        """The red batch under bisection whose candidate has exactly this candidate's tree, if any: the second
        half of a split, built on the first, is the very tree that failed (until the base moves). CI would only
        say again what it said, so it is not asked; a single PR is always tested itself."""
        tree = await mirror.tree_of(sha)
        for batch, _ in loaded.bisections:
            if batch.candidate_sha and tree is not None and await mirror.tree_of(batch.candidate_sha) == tree:
                return batch
        return None

    async def _record_known_red(self, running: Running, sha: str, ends: dict[int, str], red: Attempt) -> None:
        """The attempt's candidate is a tree already known red: recorded as tested, red as that batch was."""
        deps = self.deps
        attempt = running.row
        failed: dict[str, Any] = dict(red.reason_detail or {})
        kept = ("context", "state", "target_url", "description")
        known: dict[str, Any] = {key: failed[key] for key in kept if key in failed}
        known["sha"] = red.candidate_sha
        detail: dict[str, Any] = {"inherits": red.id, "red": known}
        deadline = deps.clock.now() + timedelta(seconds=self.settings.ci_timeout_seconds)
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session,
                attempt,
                candidate_sha=sha,
                state=AttemptState.TESTING.value,
                deadline_at=deadline,
                reason_detail=detail,
                intent=None,
            )
            await queries.record_ends(session, attempt.id, ends)
        for member in running.members:
            member.end_sha = ends[member.entry_id]
        log.info("gate.known_red", train=self.train_id, attempt=attempt.id, candidate=sha, same_tree_as=red.id)

    async def _push_owned(self, mirror: Mirror, ref: str, sha: str, expected: str | None) -> Pushed | Rejected:
        """Write a ref the bot owns, with a lease on the value it expects there.

        A refused lease is looked into once: the ref may already hold ``sha`` (our own push before a crash),
        or, for a staging ref the bot alone writes, an older candidate it may replace from exactly that value.
        """
        pushed = await mirror.push_ref(ref, sha, expected)
        if isinstance(pushed, Pushed) or pushed.reason is not Rejection.STALE_LEASE:
            return pushed
        current = await mirror.remote_sha(ref)
        if current == sha:
            return Pushed(ref, sha, up_to_date=True)
        if expected is None and ref.startswith("refs/heads/merge-bot/"):
            return await mirror.push_ref(ref, sha, current)
        return pushed

    async def _merge(self, action: MergeAttempt, loaded: Loaded) -> None:
        """Land the attempt (and the green ones ahead of it, ``through``) by one fast-forward to its candidate:
        every approver is checked again first, and the intent is recorded on each attempt before the push."""
        deps = self.deps
        landing_set = [loaded.attempt(attempt_id) for attempt_id in (*action.through, action.attempt_id)]
        running = landing_set[-1]
        for each in landing_set:
            if each.row.state == AttemptState.MERGING:
                continue
            approvers = sorted({loaded.entries[member.entry_id][0].approved_by for member in each.members})
            allow = AllowList.of(self.settings)  # the branch's allow-list (its file's, when it sets one)
            answers = await asyncio.gather(
                *(
                    deps.permissions.may_merge(loaded.repo.owner, loaded.repo.name, who, fresh=True, allow=allow)
                    for who in approvers
                )
            )
            allowed = dict(zip(approvers, answers, strict=True))  # each approver asked once, all at once
            for member in each.members:
                entry, _ = loaded.entries[member.entry_id]
                if not allowed[entry.approved_by]:
                    why = {"by": entry.approved_by, "base": loaded.train.branch}
                    others = tuple(entry_id for entry_id in each.entry_ids if entry_id != entry.id)
                    revoked = FailAttempt(each.row.id, (entry.id,), Reason.PERMISSION_REVOKED, why, others)
                    await self._fail(revoked, loaded)
                    return
            detail: dict[str, Any] = {**(each.row.reason_detail or {}), "push": action.candidate_sha}
            if each.row.id in action.optimistic:  # landed inside a green candidate behind it
                context = action.optimistic[each.row.id]
                detail["optimistic"], detail["context"] = True, context
                if context:
                    detail["outcome"] = "flaky"  # red on its own candidate, green inside the one that landed
            async with deps.sessions.begin() as session:
                await queries.move_attempt(
                    session,
                    each.row,
                    state=AttemptState.MERGING.value,
                    intent={"merge": action.candidate_sha},
                    reason_detail=detail,
                )
            self._crashpoint("merge_intent")
        await self.lock.check()
        attempt = running.row
        pulls = [loaded.entries[entry_id][1] for each in landing_set for entry_id in each.entry_ids]
        landing = await plan_for(attempt.strategy).land(self._base(loaded), pulls, action.candidate_sha)
        if isinstance(landing, Refused):
            detail = {"message": landing.message, "base": loaded.train.branch, "via": landing.via}
            for each in landing_set:
                await self._fail(FailAttempt(each.row.id, each.entry_ids, Reason.MERGE_REFUSED, detail), loaded)
        elif isinstance(landing, Landed):
            self._crashpoint("base_pushed")
            if landing.known:
                for each in landing_set:
                    self._landed_now[each.row.id] = each.row.candidate_sha or action.candidate_sha

    def _base(self, loaded: Loaded) -> Base:
        repo = loaded.repo
        return Base(
            self.deps.forge,
            repo,
            loaded.train.branch,
            lambda: self._mirror(repo),
            self.settings.delete_branch_after_merge,
        )

    async def _finish(self, action: FinishMerged, loaded: Loaded) -> None:
        """The candidate is in the base: each PR is marked merged at the commit where its own change ends."""
        deps = self.deps
        running = loaded.attempt(action.attempt_id)
        attempt = running.row
        plan = plan_for(attempt.strategy)
        ends = {entry_id: running.end_of(entry_id, action.candidate_sha) for entry_id in action.entry_ids}
        base = self._base(loaded)
        # Each PR is marked merged at its own commit; the PRs of a batch side by side.
        await asyncio.gather(
            *(plan.mark_merged(base, self.lock, loaded.entries[e][1], ends[e]) for e in action.entry_ids)
        )
        self._crashpoint("marked_merged")
        await self._delete_staging(attempt, loaded)
        now = deps.clock.now()
        async with deps.sessions.begin() as session:
            await queries.move_attempt(session, attempt, state=AttemptState.DONE.value, finished_at=now, intent=None)
            await self._retried_outcome(session, attempt, "flaky")
            await self._move_window(session, loaded, landed=1)
            for entry_id in action.entry_ids:
                entry, _ = loaded.entries[entry_id]
                detail: dict[str, Any] = {
                    "sha": ends[entry_id],
                    "base": loaded.train.branch,
                    "strategy": plan.strategy.value,
                }
                if len(action.entry_ids) > 1:  # a batch: said on the PR, with the candidate it was tested as
                    detail["with"] = [loaded.entries[e][1].number for e in action.entry_ids if e != entry_id]
                    detail["candidate"] = action.candidate_sha
                await queries.move_entry(
                    session,
                    entry,
                    EntryState.MERGED.value,
                    merged_sha=ends[entry_id],
                    finished_at=now,
                    reason=Reason.MERGED.value,
                    reason_detail=detail,
                )
                queries.record(
                    session,
                    entry_id,
                    "merged",
                    reason=Reason.MERGED.value,
                    attempt_id=attempt.id,
                    detail={"sha": ends[entry_id]},
                )
        log.info("gate.merged", train=self.train_id, attempt=attempt.id, sha=action.candidate_sha)
        self._crashpoint("merge_recorded")
        self._tell_later.update(action.entry_ids)  # told once the next attempt is under way (see step)

    async def _fail(self, action: FailAttempt, loaded: Loaded) -> None:
        """The attempt ends failed; the entries it names fail with its reason."""
        deps = self.deps
        attempt = loaded.attempt(action.attempt_id).row
        entry_ids, reason, detail = action.entry_ids, action.reason, dict(action.detail)
        now = deps.clock.now()
        detail.setdefault("base", loaded.train.branch)
        if reason is Reason.CI_TIMEOUT:
            detail.setdefault("timeout", f"{self.settings.ci_timeout_seconds} s")
        if attempt.split_from is not None:
            detail["bisected"] = True  # found by splitting a red batch: red alone on top of what passed
        carried = loaded.attempt(action.attempt_id).entry_ids
        if len(carried) > 1 and reason in (Reason.CHECKS_FAILED, Reason.CI_TIMEOUT):
            detail["with"] = [loaded.entries[e][1].number for e in carried]  # a batch failed as one (no bisect)
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session,
                attempt,
                state=AttemptState.FAILED.value,
                finished_at=now,
                reason=reason.value,
                reason_detail=detail,
                intent=None,
            )
            if reason in (Reason.CHECKS_FAILED, Reason.CI_TIMEOUT):
                await self._retried_outcome(session, attempt, "confirmed")
                await self._move_window(session, loaded, failed=True)
            for entry_id in entry_ids:
                entry, pull = loaded.entries[entry_id]
                await queries.move_entry(
                    session,
                    entry,
                    EntryState.FAILED.value,
                    reason=reason.value,
                    reason_detail={**detail, "status_sha": pull.head_sha},  # where the failure shows
                    finished_at=now,
                )
                queries.record(
                    session,
                    entry_id,
                    "failed",
                    reason=reason.value,
                    attempt_id=attempt.id,
                    detail=detail,
                )
            for entry_id in action.requeue:  # not at fault: back in line as they were
                entry, _ = loaded.entries[entry_id]
                await queries.move_entry(session, entry, EntryState.QUEUED.value)
                queries.record(session, entry_id, "requeued", reason=reason.value, attempt_id=attempt.id)
        requeued = list(action.requeue)
        log.info("gate.failed", train=self.train_id, reason=reason.value, entries=list(entry_ids), requeued=requeued)
        for entry_id in entry_ids:
            entry, pull = loaded.entries[entry_id]
            await self.notices.tell(loaded.repo, entry, pull)
        await self._delete_staging(attempt, loaded)

    async def _abandon(self, action: AbandonAttempt, loaded: Loaded) -> None:
        deps = self.deps
        attempt = loaded.attempt(action.attempt_id).row
        async with deps.sessions.begin() as session:
            await queries.move_attempt(
                session,
                attempt,
                state=AttemptState.ABANDONED.value,
                finished_at=deps.clock.now(),
                reason=action.reason.value,
                intent=None,
            )
            for entry_id in action.requeue:
                entry, pull = loaded.entries[entry_id]
                values: dict[str, Any] = {}
                approval = plan_for(attempt.strategy).approval_after_abandon(attempt.candidate_sha, pull)
                if approval is not None:
                    values["approved_sha"] = approval
                await queries.move_entry(session, entry, EntryState.QUEUED.value, **values)
                queries.record(session, entry_id, "requeued", reason=action.reason.value, attempt_id=attempt.id)
        log.info("gate.abandoned", train=self.train_id, attempt=attempt.id, reason=action.reason.value)
        await self._delete_staging(attempt, loaded)

    async def _cancel(self, action: CancelEntry, loaded: Loaded) -> None:
        deps = self.deps
        entry, pull = loaded.entries[action.entry_id]
        detail = dict(action.detail)
        async with deps.sessions.begin() as session:
            await queries.move_entry(
                session,
                entry,
                EntryState.CANCELLED.value,
                reason=action.reason.value,
                reason_detail=detail,
                finished_at=deps.clock.now(),
            )
            queries.record(session, entry.id, "cancelled", reason=action.reason.value, detail=detail)
        log.info("gate.cancelled", train=self.train_id, entry=entry.id, reason=action.reason.value)
        await self.notices.tell(loaded.repo, entry, pull)

    async def _delete_staging(self, attempt: Attempt, loaded: Loaded) -> None:
        """Delete the attempt's staging branch. Its name is unique to the attempt and only the lock holder
        writes it, so a plain branch delete through the API is safe (and cheaper than a git push)."""
        branch = plan_for(attempt.strategy).staging_branch(attempt.ref)
        if branch is None:
            return
        await self.notices.best_effort(self.deps.forge.delete_branch, loaded.repo.owner, loaded.repo.name, branch)


def strategy_for(wanted: Strategy, repository: str, head_repos: list[str | None]) -> Strategy:
    """pr-branch pushes to the PR's own branch: never to a fork's, so a fork PR is tested by staging."""
    forks = [head for head in head_repos if head and head.lower() != repository.lower()]
    return Strategy.STAGING if forks else wanted
