"""One delivery's effects, through the same path whether it came from a webhook or the reconciler.

Facts (a PR's state, labels, a commit status) are upserted; a ``/merge`` comment becomes a command row
(keyed by the comment id, so a redelivered webhook or a reconciler pass acts at most once) and, through the
:class:`~bot.inbox.enqueue.Enqueuer`, an entry bound to the PR head at that moment. The queue label works
the same way: adding it queues, removing it cancels, keyed by the label's transition in the cached PR row.
Then the train's gate is woken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Command, Dependency, Entry, PullRequest, Train
from bot.forge import events
from bot.forge.client import GiteaClient
from bot.inbox.enqueue import Enqueuer, Request, set_outcome
from bot.logs import get_logger
from bot.queue import commands
from bot.queue.model import ACTIVE_ENTRY_STATES

log = get_logger(__name__)


@dataclass(frozen=True)
class IntakeDeps:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    forge: GiteaClient
    clock: Clock
    bot_login: str
    wake: Callable[[int], None]


class Intake:
    def __init__(self, deps: IntakeDeps, enqueuer: Enqueuer) -> None:
        self.deps = deps
        self.enqueuer = enqueuer

    async def handle(self, event_type: str, payload: Any) -> None:
        event = events.parse_event(event_type, payload)
        if not events.wanted(event):
            return
        if isinstance(event, events.CommentEvent):
            await self.comment_seen(event)
        elif isinstance(event, (events.PullRequestEvent, events.LabelsChanged, events.ReviewEvent)):
            await self.pull_seen(event.repo, event.pull, actor=event.sender)
        elif isinstance(event, events.StatusEvent):
            await self._status(event)
        elif isinstance(event, events.PushEvent):
            await self._push(event)

    # -- facts ------------------------------------------------------------------------------------

    async def pull_seen(self, repo_ref: events.RepoRef, info: events.PullRequestInfo, *, actor: str | None) -> None:
        """Record a PR's state; act on the queue label's arrival or departure; wake whoever depends on it."""
        label = self.deps.settings.queue_label
        async with self.deps.sessions.begin() as session:
            repo = await queries.ensure_repository(session, repo_ref.owner, repo_ref.name, repo_ref.forge_id)
            before = (
                await session.execute(
                    select(PullRequest.labels)
                    .where(PullRequest.repository_id == repo.id, PullRequest.number == info.number)
                    .with_for_update()
                )
            ).scalar_one_or_none()
            pull = await queries.upsert_pull(session, repo.id, info, self.deps.clock.now())
            entry = await queries.active_entry_for(session, pull.id)
            dependents = await _dependents(session, repo_ref.owner, repo_ref.name, info.number)
        had = label in (before or [])
        has = label in info.labels
        if has and not had and entry is None and info.state == "open" and not info.merged:
            if actor:
                await self.enqueuer.queue(Request(repo_ref.owner, repo_ref.name, info.number, actor, "label"))
            else:
                await self.enqueuer.reply(
                    repo_ref.owner,
                    repo_ref.name,
                    info.number,
                    f"The `{label}` label was added while I was not listening, and I cannot tell by whom: "
                    "remove it and add it again (or comment `/merge`) to queue this PR.",
                )
        elif had and not has and entry is not None and entry.trigger == "label" and actor != self.deps.bot_login:
            await self.enqueuer.cancel(repo_ref.owner, repo_ref.name, info.number, actor or "someone", None)
        for train_id in {*(t for t in [entry.train_id if entry else None] if t), *dependents}:
            self.deps.wake(train_id)

    async def _status(self, event: events.StatusEvent) -> None:
        own = self.deps.settings.status_context
        if event.context == own or event.context.startswith(own + "/"):
            return  # the bot's own statuses tell it nothing
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
        """Act on the command of a comment; 1 when it was new (not seen before), else 0."""
        if event.author == self.deps.bot_login or event.action == "deleted":
            return 0
        found = commands.parse(event.body)
        if not found:
            return 0
        owner, name = event.repo.owner, event.repo.name
        if event.action == "edited":
            if await self._claim(event, f"edit:{event.comment_id}", "edited", {}):
                await self.enqueuer.reply(
                    owner,
                    name,
                    event.number,
                    "Commands in edited comments are ignored: post a new comment to give the queue a command.",
                )
            return 0
        command = found[0]
        return int(await self._command(event, command))

    async def button_seen(
        self, repo_ref: events.RepoRef, number: int, timeline_id: int, user: str, scheduled: bool
    ) -> bool:
        """Gitea's "merge when checks succeed" was pressed (or its cancel): queue (or cancel) once per press."""
        kind = "queue" if scheduled else "cancel"
        command_id = await self.claim(repo_ref, number, f"button:{timeline_id}", "button", kind, {}, user)
        if command_id is None:
            return False
        owner, name = repo_ref.owner, repo_ref.name
        if scheduled:
            await self.enqueuer.queue(Request(owner, name, number, user, "button", command_id))
        else:
            await self.enqueuer.cancel(owner, name, number, user, command_id)
        return True

    async def _claim(self, event: events.CommentEvent, key: str, kind: str, args: dict[str, Any]) -> int | None:
        return await self.claim(event.repo, event.number, key, "comment", kind, args, event.author)

    async def claim(
        self,
        repo_ref: events.RepoRef,
        number: int,
        key: str,
        trigger: str,
        kind: str,
        args: dict[str, Any],
        author: str,
    ) -> int | None:
        """Record the command; None when this command was seen before (each acts at most once)."""
        async with self.deps.sessions.begin() as session:
            repo = await queries.ensure_repository(session, repo_ref.owner, repo_ref.name, repo_ref.forge_id)
            statement = (
                insert(Command)
                .values(
                    repository_id=repo.id,
                    number=number,
                    source_key=key,
                    trigger=trigger,
                    kind=kind,
                    args=args,
                    author=author,
                )
                .on_conflict_do_nothing(index_elements=["repository_id", "source_key"])
                .returning(Command.id)
            )
            return (await session.execute(statement)).scalar_one_or_none()

    async def _command(self, event: events.CommentEvent, command: commands.Command) -> bool:
        kind = type(command).__name__.lower()
        args: dict[str, Any] = {}
        if isinstance(command, commands.Queue):
            args = {
                "priority": command.priority,
                "method": command.method.value if command.method else None,
                "after": [str(ref.resolve(event.repo.owner, event.repo.name)) for ref in command.after],
            }
        command_id = await self._claim(event, f"comment:{event.comment_id}", kind, args)
        if command_id is None:
            return False  # seen before: a redelivery or a reconciler pass
        owner, name, number = event.repo.owner, event.repo.name, event.number
        enqueuer = self.enqueuer
        if isinstance(command, commands.Invalid):
            await enqueuer.reply(owner, name, number, f"I did not understand `{command.line}`: {command.reason}.")
            await self._outcome(command_id, "refused", "invalid")
            return True
        if isinstance(command, commands.StatusQuery):
            await enqueuer.status(owner, name, number)
            await self._outcome(command_id, "accepted", "status")
            return True
        if not await enqueuer.permissions.may_merge(owner, name, event.author):
            level = await enqueuer.permissions.level(owner, name, event.author)
            await enqueuer.reply(
                owner,
                name,
                number,
                f"@{event.author}, only users with write access to {owner}/{name}"
                + (" on the bot's allow-list" if enqueuer.permissions.restricted else "")
                + f" can give the queue commands (your access: {level}).",
            )
            await self._outcome(command_id, "refused", "permission")
            return True
        if isinstance(command, commands.Cancel):
            await enqueuer.cancel(owner, name, number, event.author, command_id)
            await enqueuer.react(owner, name, event.comment_id)
        elif isinstance(command, commands.Retry):
            if await enqueuer.latest_final(owner, name, number) is None:
                await enqueuer.reply(owner, name, number, "There is no failed or cancelled entry to retry.")
                await self._outcome(command_id, "refused", "nothing_to_retry")
            else:
                await enqueuer.queue(
                    Request(owner, name, number, event.author, "comment", command_id, event.comment_id)
                )
        elif isinstance(command, commands.Queue):
            approved = event.pull.head_sha if event.pull is not None else None
            await enqueuer.queue(
                Request(
                    owner,
                    name,
                    number,
                    event.author,
                    "comment",
                    command_id,
                    event.comment_id,
                    priority=command.priority,
                    method=command.method,
                    after=command.after,
                    approved_sha=approved,
                )
            )
        return True

    async def _outcome(self, command_id: int, outcome: str, reason: str) -> None:
        async with self.deps.sessions.begin() as session:
            await set_outcome(session, command_id, outcome, reason, self.deps.clock.now())


async def _dependents(session: AsyncSession, owner: str, name: str, number: int) -> set[int]:
    """Trains holding a waiting entry that depends on this PR."""
    rows = await session.execute(
        select(Entry.train_id)
        .join(Dependency, Dependency.entry_id == Entry.id)
        .where(
            Dependency.owner == owner.lower(),
            Dependency.repo == name.lower(),
            Dependency.number == number,
            Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES]),
        )
    )
    return {int(train_id) for (train_id,) in rows}
