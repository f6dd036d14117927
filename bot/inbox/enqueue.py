"""Turning a request to queue (a `/merge` comment, the queue label, Gitea's merge button) into an entry.

Every trigger ends here, so the rules are the same for all of them: the requester must have write access
at that moment (and be on the allow-list if there is one); the PR must be open and not a draft; a priority
above the ceiling needs an admin; approvals the branch protection requires must be there (or the entry
waits for them, if configured); dependencies from Gitea, ``Depends-On:`` lines and ``/merge after`` are
recorded, and an entry with any waits (state ``waiting``) until the gate finds them all merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Attempt, Command, Dependency, Entry, PullRequest
from bot.db.views import entry_view
from bot.forge import errors
from bot.forge.client import GiteaClient
from bot.forge.events import PullRequestInfo
from bot.forge.permissions import ADMINS, AllowList, Permissions
from bot.logs import get_logger
from bot.queue import commands, deps, machine
from bot.queue.commands import DepRef
from bot.queue.model import EntryState, MergeMethod
from bot.repoconfig.cache import RepoConfigs

log = get_logger(__name__)


@dataclass(frozen=True)
class Claim:
    """A command (a comment's, a press of Gitea's merge button) to record at most once.

    It is recorded in the same transaction as what it did — the entry it created, the cancel it asked for —
    or, when it did nothing, together with the reason. Cut short before that commit (a crash, a forge read
    failing), it leaves nothing behind, so the retried delivery or the reconciler's next pass acts on it.
    """

    owner: str
    name: str
    number: int
    key: str  # comment:<id>, edit:<id>, button:<timeline id>: what makes it the same command when seen again
    trigger: str
    kind: str
    author: str
    args: dict[str, Any] = field(default_factory=dict)
    forge_id: int | None = None


class _SeenBefore(Exception):
    """The command was recorded meanwhile (a redelivery or a reconciler pass beat this one to it)."""


@dataclass(frozen=True)
class Request:
    owner: str
    name: str
    number: int
    actor: str
    trigger: str  # comment | label | button
    claim: Claim | None = None
    comment_id: int | None = None
    priority: int = 0
    method: MergeMethod | None = None
    after: tuple[DepRef, ...] = ()
    approved_sha: str | None = None  # the head the trigger saw; else the head now
    single: bool = False  # /merge single: tested in a batch of its own


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    reason: str
    entry_id: int | None = None
    train_id: int | None = None


@dataclass
class Enqueuer:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    forge: GiteaClient
    clock: Clock
    permissions: Permissions
    wake: Callable[[int], None]
    notes: list[str] = field(default_factory=list)
    configs: RepoConfigs | None = None  # the repositories' own files; None: the bot's settings everywhere

    async def settings_for(self, owner: str, name: str, branch: str) -> Settings:
        """The settings a PR into ``branch`` is judged with: the repository's own file there, over the bot's."""
        if self.configs is None:
            return self.settings
        try:
            return await self.configs.for_branch(owner, name, branch)
        except errors.NotFound:  # the branch is gone (a closed PR's): it has no file
            return self.settings

    async def queue(self, request: Request) -> Outcome:
        owner, name, number = request.owner, request.name, request.number
        info = await self.forge.get_pull(owner, name, number)
        settings = await self.settings_for(owner, name, info.base_ref)
        allow = AllowList.of(settings)
        level = await self.permissions.level(owner, name, request.actor)
        if not await self.permissions.may_merge(owner, name, request.actor, allow=allow):
            return await self._refuse(
                request,
                "permission",
                f"@{request.actor}, only users with write access to {owner}/{name}"
                + (" on the bot's allow-list" if allow.restricted else "")
                + f" can queue PRs (your access: {level}).",
            )
        too_high = commands.check_priority(request.priority, settings.priority_ceiling, level in ADMINS)
        if too_high:
            return await self._refuse(request, "priority", too_high)
        if request.method is not None and request.method.value not in settings.allowed_methods:
            allowed = ", ".join(f"`{method}`" for method in settings.allowed_methods)
            return await self._refuse(
                request,
                "method",
                f"`method={request.method.value}` is not allowed for `{info.base_ref}` in {owner}/{name}; "
                f"allowed: {allowed}.",
            )
        if info.merged or info.state != "open":
            return await self._refuse(request, "closed", "This PR is not open, so there is nothing to queue.")
        if info.draft:
            return await self._refuse(request, "draft", "This PR is a draft: mark it ready for review, then queue it.")
        waiting_for_approvals = False
        protection = await self.forge.branch_protection(owner, name, info.base_ref)
        if protection is not None and protection.required_approvals:
            have = await self.forge.approvals(owner, name, number)
            if have < protection.required_approvals:
                if not settings.wait_for_approvals:
                    return await self._refuse(
                        request,
                        "approvals",
                        f"`{info.base_ref}` requires {protection.required_approvals} approving review(s); "
                        f"this PR has {have}. Queue it again once it is approved.",
                    )
                waiting_for_approvals = True
        needs = await self._dependencies(owner, name, number, info, request.after)
        method = request.method or MergeMethod(settings.merge_method)
        return await self._create(replace(request, method=method), info, needs, waiting_for_approvals)

    async def _dependencies(
        self, owner: str, name: str, number: int, info: PullRequestInfo, after: tuple[DepRef, ...]
    ) -> list[tuple[DepRef, str]]:
        found: list[tuple[DepRef, str]] = []
        for dep_owner, dep_repo, dep_number, _is_pull in await self.forge.dependencies(owner, name, number):
            found.append((DepRef(dep_owner.lower(), dep_repo.lower(), dep_number), "native"))
        for ref in deps.depends_on(info.body).refs:
            found.append((ref.resolve(owner, name), "body"))
        for ref in after:
            found.append((ref.resolve(owner, name), "command"))
        first: dict[DepRef, str] = {}
        for ref, source in found:
            first.setdefault(ref, source)
        return list(first.items())

    async def _create(
        self, request: Request, info: PullRequestInfo, needs: list[tuple[DepRef, str]], for_approvals: bool
    ) -> Outcome:
        owner, name, number = request.owner, request.name, request.number
        approved = request.approved_sha or info.head_sha
        method = request.method or MergeMethod.REBASE
        waits = bool(needs) or for_approvals or bool(deps.depends_on(info.body).unreadable)
        now = self.clock.now()
        try:
            async with self.sessions.begin() as session:
                repo = await queries.ensure_repository(session, owner, name)
                train = await queries.ensure_train(session, repo.id, info.base_ref)
                pull = await queries.upsert_pull(session, repo.id, info, now)
                command_id = None
                if request.claim is not None:
                    command_id = await record_command(session, request.claim, "accepted", "queued", now)
                    if command_id is None:
                        raise _SeenBefore
                entry = Entry(
                    train_id=train.id,
                    pull_request_id=pull.id,
                    command_id=command_id,
                    state=(EntryState.WAITING if waits else EntryState.QUEUED).value,
                    approved_sha=approved,
                    approved_by=request.actor,
                    trigger=request.trigger,
                    priority=request.priority,
                    merge_method=method.value,
                    single=request.single,
                    queued_at=now,
                    reason_detail={"awaiting_approvals": True} if for_approvals else None,
                )
                session.add(entry)
                await session.flush()
                for ref, source in needs:
                    assert ref.owner is not None and ref.repo is not None
                    session.add(
                        Dependency(entry_id=entry.id, owner=ref.owner, repo=ref.repo, number=ref.number, source=source)
                    )
                queries.record(
                    session,
                    entry.id,
                    "queued" if not waits else "waiting",
                    actor=request.actor,
                    detail={
                        "sha": approved,
                        "priority": request.priority,
                        "method": method.value,
                        "trigger": request.trigger,
                        "after": [str(ref.relative_to(owner, name)) for ref, _ in needs],
                        "single": request.single,
                    },
                )
                position = await position_of(session, train.id, entry.id)
        except _SeenBefore:
            return Outcome(False, "seen")
        except IntegrityError:
            if request.trigger == "label":
                return Outcome(False, "already_queued")  # the label again (or twice): it is queued, nothing to say
            return await self._refuse(request, "already_queued", "This PR is already in the queue.")
        log.info(
            "intake.queued",
            repo=f"{owner}/{name}",
            pull=number,
            sha=approved,
            by=request.actor,
            trigger=request.trigger,
            waiting=waits,
        )
        if request.comment_id is not None:
            await self.react(owner, name, request.comment_id)
        if waits:
            what = ", ".join(str(ref.relative_to(owner, name)) for ref, _ in needs) or "the required approvals"
            await self.reply(owner, name, number, f"Queued {approved[:10]} for `{info.base_ref}`; waiting for {what}.")
        else:
            await self.reply(
                owner,
                name,
                number,
                f"Queued {approved[:10]} for `{info.base_ref}` at position {position} (method: {method.value})."
                + await self._eta(train.id, position),
            )
        self.wake(train.id)
        return Outcome(True, "queued", entry.id, train.id)

    async def _eta(self, train_id: int, position: int) -> str:
        seconds = await recent_attempt_seconds(self.sessions, train_id)
        if seconds is None:
            return ""
        return f" Estimated time to merge: about {max(1, round(position * seconds / 60))} min."

    async def cancel(self, owner: str, name: str, number: int, actor: str, claim: Claim | None) -> Outcome:
        try:
            async with self.sessions.begin() as session:
                entry = await _active_entry(session, owner, name, number)
                if entry is not None:
                    await session.execute(update(Entry).where(Entry.id == entry.id).values(cancel_requested_by=actor))
                if claim is not None:
                    outcome, reason = ("accepted", "cancel_requested") if entry else ("refused", "not_queued")
                    if await record_command(session, claim, outcome, reason, self.clock.now()) is None:
                        raise _SeenBefore
        except _SeenBefore:
            return Outcome(False, "seen")
        if entry is None:
            await self.reply(owner, name, number, "This PR is not in the queue.")
            return Outcome(False, "not_queued")
        self.wake(entry.train_id)
        return Outcome(True, "cancel_requested", entry.id, entry.train_id)

    async def status(self, owner: str, name: str, number: int) -> None:
        async with self.sessions() as session:
            entry = await _latest_entry(session, owner, name, number)
            position = await position_of(session, entry.train_id, entry.id) if entry is not None else 0
        if entry is None:
            text = "This PR has never been queued."
        elif entry.state == EntryState.QUEUED:
            text = f"Queued at position {position} (priority {entry.priority}), approved at {entry.approved_sha[:10]}."
        elif entry.state == EntryState.TESTING:
            text = f"Being tested now, approved at {entry.approved_sha[:10]}."
        elif entry.state == EntryState.WAITING:
            text = "Waiting for its dependencies or approvals before it enters the queue."
        else:
            text = f"Not in the queue: the last entry ended as **{entry.state}**"
            text += f" ({entry.reason})." if entry.reason else "."
            if entry.state in (EntryState.FAILED, EntryState.CANCELLED):
                text += " `/merge retry` queues it again at its current head."
        await self.reply(owner, name, number, text)

    async def latest_final(self, owner: str, name: str, number: int) -> Entry | None:
        async with self.sessions() as session:
            entry = await _latest_entry(session, owner, name, number)
        return entry if entry is not None and entry.state in (EntryState.FAILED, EntryState.CANCELLED) else None

    async def _refuse(self, request: Request, reason: str, text: str) -> Outcome:
        if request.claim is not None and not await self.record(request.claim, "refused", reason):
            return Outcome(False, "seen")
        log.info(
            "intake.refused",
            repo=f"{request.owner}/{request.name}",
            pull=request.number,
            reason=reason,
            by=request.actor,
            trigger=request.trigger,
        )
        await self.reply(request.owner, request.name, request.number, text)
        return Outcome(False, reason)

    async def record(self, claim: Claim, outcome: str, reason: str) -> bool:
        """Record a command that did nothing but answer; False when it was recorded before (do not answer)."""
        async with self.sessions.begin() as session:
            return await record_command(session, claim, outcome, reason, self.clock.now()) is not None

    async def seen(self, claim: Claim) -> bool:
        """Whether the command was recorded before: a cheap check that saves the forge reads of a redelivery."""
        async with self.sessions() as session:
            repo = await queries.find_repository(session, f"{claim.owner}/{claim.name}")
            if repo is None:
                return False
            query = select(Command.id).where(Command.repository_id == repo.id, Command.source_key == claim.key)
            return (await session.execute(query)).first() is not None

    async def reply(self, owner: str, name: str, number: int, body: str) -> None:
        try:
            await self.forge.comment(owner, name, number, body)
        except errors.ForgeError as exc:
            log.warning("intake.reply_failed", pull=number, error=str(exc))

    async def react(self, owner: str, name: str, comment_id: int) -> None:
        try:
            await self.forge.react(owner, name, comment_id, "+1")
        except errors.ForgeError as exc:
            log.warning("intake.react_failed", comment=comment_id, error=str(exc))


async def record_command(session: AsyncSession, claim: Claim, outcome: str, reason: str, now: Any) -> int | None:
    """Insert the command with its outcome; None when it is there already (each command acts at most once)."""
    repo = await queries.ensure_repository(session, claim.owner, claim.name, claim.forge_id)
    statement = (
        insert(Command)
        .values(
            repository_id=repo.id,
            number=claim.number,
            source_key=claim.key,
            trigger=claim.trigger,
            kind=claim.kind,
            args=claim.args,
            author=claim.author,
            outcome=outcome,
            outcome_reason=reason,
            processed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["repository_id", "source_key"])
        .returning(Command.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def _pull_row(session: AsyncSession, owner: str, name: str, number: int) -> PullRequest | None:
    repo = await queries.find_repository(session, f"{owner}/{name}")
    if repo is None:
        return None
    query = select(PullRequest).where(PullRequest.repository_id == repo.id, PullRequest.number == number)
    return (await session.execute(query)).scalar_one_or_none()


async def _active_entry(session: AsyncSession, owner: str, name: str, number: int) -> Entry | None:
    pull = await _pull_row(session, owner, name, number)
    return await queries.active_entry_for(session, pull.id) if pull is not None else None


async def _latest_entry(session: AsyncSession, owner: str, name: str, number: int) -> Entry | None:
    pull = await _pull_row(session, owner, name, number)
    if pull is None:
        return None
    query = select(Entry).where(Entry.pull_request_id == pull.id).order_by(Entry.id.desc()).limit(1)
    return (await session.execute(query)).scalar_one_or_none()


async def position_of(session: AsyncSession, train_id: int, entry_id: int) -> int:
    rows = await queries.active_entries(session, train_id)
    order = machine.queue_order(entry_view(entry, pull) for entry, pull in rows)
    testing = sum(1 for entry, _ in rows if entry.state == EntryState.TESTING)
    return testing + next((i for i, view in enumerate(order, start=1) if view.id == entry_id), len(order))


async def recent_attempt_seconds(sessions: async_sessionmaker[AsyncSession], train_id: int) -> float | None:
    """Median duration of the train's last finished attempts, for an ETA."""
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Attempt.created_at, Attempt.finished_at)
                .where(Attempt.train_id == train_id, Attempt.finished_at.is_not(None))
                .order_by(Attempt.id.desc())
                .limit(10)
            )
        ).all()
    durations = sorted((finished - created).total_seconds() for created, finished in rows if finished)
    return durations[len(durations) // 2] if durations else None
