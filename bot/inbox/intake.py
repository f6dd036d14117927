"""One delivery's effects, through the same path whether it came from a webhook or the reconciler.

Facts (a PR's state, a commit status) are upserted; a ``/merge`` comment becomes a command row (keyed by
the comment id, so a redelivered webhook or a reconciler pass acts at most once) and, when the author may
merge, an entry bound to the PR head at that moment. Then the train's gate is woken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Command, Entry, PullRequest, Train
from bot.db.views import entry_view
from bot.forge import errors, events
from bot.forge.client import GiteaClient
from bot.logs import get_logger
from bot.queue import commands, machine
from bot.queue.model import EntryState, MergeMethod

log = get_logger(__name__)
WRITERS = frozenset({"write", "admin", "owner"})


@dataclass(frozen=True)
class IntakeDeps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    forge: GiteaClient
    clock: Clock
    bot_login: str
    wake: Callable[[int], None]


class Intake:
    def __init__(self, deps: IntakeDeps) -> None:
        self.deps = deps

    async def handle(self, event_type: str, payload: Any) -> None:
        event = events.parse_event(event_type, payload)
        if not events.wanted(event):
            return
        if isinstance(event, events.CommentEvent):
            await self.comment_seen(event)
        elif isinstance(event, (events.PullRequestEvent, events.LabelsChanged, events.ReviewEvent)):
            await self.pull_seen(event.repo, event.pull)
        elif isinstance(event, events.StatusEvent):
            await self._status(event)
        elif isinstance(event, events.PushEvent):
            await self._push(event)

    # -- facts ------------------------------------------------------------------------------------

    async def pull_seen(self, repo_ref: events.RepoRef, info: events.PullRequestInfo) -> None:
        async with self.deps.sessions.begin() as session:
            repo = await queries.ensure_repository(session, repo_ref.owner, repo_ref.name, repo_ref.forge_id)
            pull = await queries.upsert_pull(session, repo.id, info, self.deps.clock.now())
            entry = await queries.active_entry_for(session, pull.id)
        if entry is not None:
            self.deps.wake(entry.train_id)

    async def _status(self, event: events.StatusEvent) -> None:
        async with self.deps.sessions.begin() as session:
            repo = await queries.find_repository(session, event.repo.full_name)
            if repo is None:
                return
            await queries.save_status(
                session,
                repo.id,
                event.sha,
                event.context,
                event.state,
                target_url=event.target_url,
                description=event.description,
                forge_id=event.status_id,
                now=self.deps.clock.now(),
            )
            trains = await queries.trains_testing(session, repo.id, event.sha)
        for train_id in trains:
            self.deps.wake(train_id)

    async def _push(self, event: events.PushEvent) -> None:
        if event.branch is None:
            return
        async with self.deps.sessions() as session:
            repo = await queries.find_repository(session, event.repo.full_name)
            if repo is None:
                return
            train = (
                await session.execute(select(Train).where(Train.repository_id == repo.id, Train.branch == event.branch))
            ).scalar_one_or_none()
        if train is not None:
            self.deps.wake(train.id)

    # -- commands ---------------------------------------------------------------------------------

    async def comment_seen(self, event: events.CommentEvent) -> int:
        """Act on the commands of a comment; the number of commands that were new (not seen before)."""
        if event.author == self.deps.bot_login or event.action == "deleted":
            return 0
        found = commands.parse(event.body)
        if not found:
            return 0
        owner, name = event.repo.owner, event.repo.name
        if event.action == "edited":
            if await self._claim(event, f"edit:{event.comment_id}", "edited", {}):
                await self._reply(
                    owner,
                    name,
                    event.number,
                    "Commands in edited comments are ignored: post a new comment to give the queue a command.",
                )
            return 0
        new = 0
        for index, command in enumerate(found):
            key = f"comment:{event.comment_id}" + (f":{index}" if index else "")
            new += await self._command(event, key, command)
        return new

    async def _claim(self, event: events.CommentEvent, key: str, kind: str, args: dict[str, Any]) -> int | None:
        """Record the command; None when this comment's command was seen before (it acts at most once)."""
        async with self.deps.sessions.begin() as session:
            repo = await queries.ensure_repository(session, event.repo.owner, event.repo.name, event.repo.forge_id)
            statement = (
                insert(Command)
                .values(
                    repository_id=repo.id,
                    number=event.number,
                    source_key=key,
                    trigger="comment",
                    kind=kind,
                    args=args,
                    author=event.author,
                )
                .on_conflict_do_nothing(index_elements=["repository_id", "source_key"])
                .returning(Command.id)
            )
            return (await session.execute(statement)).scalar_one_or_none()

    async def _finish(self, command_id: int, outcome: str, reason: str) -> None:
        async with self.deps.sessions.begin() as session:
            await session.execute(
                update(Command)
                .where(Command.id == command_id)
                .values(outcome=outcome, outcome_reason=reason, processed_at=self.deps.clock.now())
            )

    async def _command(self, event: events.CommentEvent, key: str, command: commands.Command) -> bool:
        kind = type(command).__name__.lower()
        args: dict[str, Any] = {}
        if isinstance(command, commands.Queue):
            args = {"priority": command.priority, "method": command.method.value if command.method else None}
        command_id = await self._claim(event, key, kind, args)
        if command_id is None:
            return False  # seen before: a redelivery or a reconciler pass
        owner, name, number = event.repo.owner, event.repo.name, event.number
        if isinstance(command, commands.Invalid):
            await self._finish(command_id, "refused", "invalid")
            await self._reply(owner, name, number, f"I did not understand `{command.line}`: {command.reason}.")
            return True
        permission = await self.deps.forge.permission(owner, name, event.author)
        if permission not in WRITERS:
            await self._finish(command_id, "refused", "permission")
            await self._reply(
                owner,
                name,
                number,
                f"@{event.author}, only users with write access to {owner}/{name} can give the queue commands "
                f"(your access: {permission}).",
            )
            return True
        if isinstance(command, commands.Queue):
            await self._queue(event, command, command_id)
        elif isinstance(command, commands.Cancel):
            await self._cancel(event, command_id)
        else:
            await self._finish(command_id, "refused", "unsupported")
            await self._reply(owner, name, number, f"`/merge {kind}` is not supported yet.")
        return True

    async def _queue(self, event: events.CommentEvent, command: commands.Queue, command_id: int) -> None:
        deps = self.deps
        owner, name, number = event.repo.owner, event.repo.name, event.number
        info = await deps.forge.get_pull(owner, name, number)
        if info.merged or info.state != "open":
            await self._finish(command_id, "refused", "closed")
            await self._reply(owner, name, number, "This PR is not open, so there is nothing to queue.")
            return
        if info.draft:
            await self._finish(command_id, "refused", "draft")
            await self._reply(owner, name, number, "This PR is a draft: mark it ready for review, then `/merge`.")
            return
        # The approval covers the head as it was when the comment was written, when the payload says so.
        approved = event.pull.head_sha if event.pull is not None else info.head_sha
        method = command.method or MergeMethod.REBASE
        try:
            async with deps.sessions.begin() as session:
                repo = await queries.ensure_repository(session, owner, name, event.repo.forge_id)
                train = await queries.ensure_train(session, repo.id, info.base_ref)
                pull = await queries.upsert_pull(session, repo.id, info, deps.clock.now())
                entry = Entry(
                    train_id=train.id,
                    pull_request_id=pull.id,
                    command_id=command_id,
                    state=EntryState.QUEUED.value,
                    approved_sha=approved,
                    approved_by=event.author,
                    trigger="comment",
                    priority=command.priority,
                    merge_method=method.value,
                    queued_at=deps.clock.now(),
                )
                session.add(entry)
                await session.flush()
                queries.record(
                    session,
                    entry.id,
                    "queued",
                    actor=event.author,
                    detail={"sha": approved, "priority": command.priority, "method": method.value},
                )
                await session.execute(
                    update(Command)
                    .where(Command.id == command_id)
                    .values(outcome="accepted", outcome_reason="queued", processed_at=deps.clock.now())
                )
                position = await self._position(session, train.id, entry.id)
        except IntegrityError:
            await self._finish(command_id, "refused", "already_queued")
            await self._reply(owner, name, number, "This PR is already in the queue.")
            return
        log.info("intake.queued", repo=f"{owner}/{name}", pull=number, sha=approved, by=event.author)
        await self._react(owner, name, event.comment_id)
        await self._reply(
            owner,
            name,
            number,
            f"Queued {approved[:10]} for `{info.base_ref}` at position {position} (method: {method.value}).",
        )
        deps.wake(train.id)

    async def _position(self, session: AsyncSession, train_id: int, entry_id: int) -> int:
        rows = await queries.active_entries(session, train_id)
        order = machine.queue_order(entry_view(entry, pull) for entry, pull in rows)
        testing = sum(1 for entry, _ in rows if entry.state == EntryState.TESTING)
        return testing + next((i for i, view in enumerate(order, start=1) if view.id == entry_id), len(order))

    async def _cancel(self, event: events.CommentEvent, command_id: int) -> None:
        owner, name, number = event.repo.owner, event.repo.name, event.number
        async with self.deps.sessions.begin() as session:
            repo = await queries.find_repository(session, event.repo.full_name)
            entry = None
            if repo is not None:
                pull = (
                    await session.execute(
                        select(PullRequest).where(PullRequest.repository_id == repo.id, PullRequest.number == number)
                    )
                ).scalar_one_or_none()
                entry = await queries.active_entry_for(session, pull.id) if pull else None
            if entry is not None:
                await session.execute(
                    update(Entry).where(Entry.id == entry.id).values(cancel_requested_by=event.author)
                )
        if entry is None:
            await self._finish(command_id, "refused", "not_queued")
            await self._reply(owner, name, number, "This PR is not in the queue.")
            return
        await self._finish(command_id, "accepted", "cancel_requested")
        await self._react(owner, name, event.comment_id)
        self.deps.wake(entry.train_id)

    async def _reply(self, owner: str, name: str, number: int, body: str) -> None:
        try:
            await self.deps.forge.comment(owner, name, number, body)
        except errors.ForgeError as exc:
            log.warning("intake.reply_failed", pull=number, error=str(exc))

    async def _react(self, owner: str, name: str, comment_id: int) -> None:
        try:
            await self.deps.forge.react(owner, name, comment_id, "+1")
        except errors.ForgeError as exc:
            log.warning("intake.react_failed", comment=comment_id, error=str(exc))
