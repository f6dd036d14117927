"""One delivery's effects, through the same path whether it came from a webhook or the reconciler.

Facts (a PR's state, labels, a commit status) are upserted; a ``/merge`` comment becomes a command row
(keyed by the comment id, so a redelivered webhook or a reconciler pass acts at most once) recorded in the
same transaction as its effect — through the :class:`~bot.inbox.enqueue.Enqueuer`, an entry bound to the PR
head at that moment — so that a command cut short is not lost. The queue label works
the same way: adding it queues, removing it cancels, keyed by the label's transition in the cached PR row.
Then the train's gate is woken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import holds
from bot.clock import Clock
from bot.config import Settings
from bot.db import queries
from bot.db.models import Dependency, Entry, HoldSource, PullRequest, Train
from bot.forge import events
from bot.forge.client import GiteaClient
from bot.forge.permissions import ADMINS, AllowList
from bot.inbox.enqueue import Claim, Enqueuer, Request, record_command
from bot.logs import get_logger
from bot.queue import commands
from bot.queue.model import ACTIVE_ENTRY_STATES, HoldKind

log = get_logger(__name__)
LABEL_TIMELINE_PAGES = 20  # timeline pages read to find who added the queue label (Gitea lists oldest first)


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
        """Record a PR's state; act on the queue label's arrival or departure; wake whoever depends on it.

        The queue label's arrival is attributed from the PR's timeline, never from the event: Gitea's label
        events carry the whole label set, so the sender of the one that reveals the queue label may have
        added some other label (and the queue label's own event may have been lost). The label is recorded
        only with what came of it (the entry, or the answer why not): a crash or a forge failure in between
        leaves the arrival to be seen again, by the retried delivery or the reconciler. Its departure is a
        state, not an event: a PR queued by the label that no longer carries it is dequeued, whenever that
        is seen.
        """
        # Without labels on the PR, the queue label cannot have arrived: its name is not looked up.
        label = await self.queue_label(repo_ref.owner, repo_ref.name, info.base_ref) if info.labels else ""
        async with self.deps.sessions.begin() as session:
            repo = await queries.ensure_repository(session, repo_ref.owner, repo_ref.name, repo_ref.forge_id)
            cached = (
                await session.execute(
                    select(PullRequest.id, PullRequest.labels)
                    .where(PullRequest.repository_id == repo.id, PullRequest.number == info.number)
                    .with_for_update()
                )
            ).first()
            had = cached is not None and label in (cached.labels or [])
            has = label in info.labels
            entry = await queries.active_entry_for(session, cached.id) if cached is not None else None
            arrived = has and not had and entry is None and info.state == "open" and not info.merged
            recorded = replace(info, labels=tuple(x for x in info.labels if x != label)) if arrived else info
            await queries.upsert_pull(session, repo.id, recorded, self.deps.clock.now())
            dependents = await _dependents(session, repo_ref.owner, repo_ref.name, info.number)
        if arrived:
            await self._label_arrived(repo_ref, info)
        elif not has and entry is not None and entry.trigger == "label" and entry.cancel_requested_by is None:
            await self.enqueuer.cancel(repo_ref.owner, repo_ref.name, info.number, actor or "someone", None)
        for train_id in {*(t for t in [entry.train_id if entry else None] if t), *dependents}:
            self.deps.wake(train_id)

    async def _label_arrived(self, repo_ref: events.RepoRef, info: events.PullRequestInfo) -> None:
        owner, name, number = repo_ref.owner, repo_ref.name, info.number
        label = await self.queue_label(owner, name, info.base_ref)
        who = await self.labeller(owner, name, number, label)
        if who:
            await self.enqueuer.queue(Request(owner, name, number, who, "label"))
        else:
            await self.enqueuer.reply(
                owner,
                name,
                number,
                f"The `{label}` label was added while I was not listening, and I cannot tell by whom: "
                "remove it and add it again (or comment `/merge`) to queue this PR.",
            )
        async with self.deps.sessions.begin() as session:  # the arrival is dealt with: now it is a fact
            repo = await queries.ensure_repository(session, owner, name, repo_ref.forge_id)
            await session.execute(
                update(PullRequest)
                .where(PullRequest.repository_id == repo.id, PullRequest.number == number)
                .values(labels=list(info.labels))
            )

    async def queue_label(self, owner: str, name: str, branch: str) -> str:
        """The label that queues a PR into ``branch`` (the repository's file may name its own)."""
        return (await self.enqueuer.settings_for(owner, name, branch)).queue_label

    async def labeller(self, owner: str, name: str, number: int, label: str | None = None) -> str | None:
        """Who added the queue label, from the PR's timeline (Gitea records a label added with body "1");
        None when its last change there is not an addition (or is beyond what is read of a long timeline)."""
        label = label or self.deps.settings.queue_label
        changes = [
            item
            for item in await self.deps.forge.timeline(owner, name, number, max_pages=LABEL_TIMELINE_PAGES)
            if item.get("type") == "label" and (item.get("label") or {}).get("name") == label
        ]
        if not changes or changes[-1].get("body") != "1":
            return None
        return str((changes[-1].get("user") or {}).get("login") or "") or None

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
        if self.enqueuer.configs is not None:  # commands on PRs into the branch follow its file from now on
            self.enqueuer.configs.moved(event.repo.owner, event.repo.name, event.branch, event.after)
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
            claim = self._claim(event, f"edit:{event.comment_id}", "edited", {})
            if await self.enqueuer.record(claim, "ignored", "edited"):
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
        claim = Claim(repo_ref.owner, repo_ref.name, number, f"button:{timeline_id}", "button", kind, user)
        claim = replace(claim, forge_id=repo_ref.forge_id)
        if await self.enqueuer.seen(claim):
            return False
        owner, name = repo_ref.owner, repo_ref.name
        if scheduled:
            outcome = await self.enqueuer.queue(Request(owner, name, number, user, "button", claim))
        else:
            outcome = await self.enqueuer.cancel(owner, name, number, user, claim)
        return outcome.reason != "seen"

    @staticmethod
    def _claim(event: events.CommentEvent, key: str, kind: str, args: dict[str, Any]) -> Claim:
        repo = event.repo
        return Claim(repo.owner, repo.name, event.number, key, "comment", kind, event.author, args, repo.forge_id)

    async def _command(self, event: events.CommentEvent, command: commands.Command) -> bool:
        """Act on one command; False when it was acted on before (a redelivery, a reconciler pass).

        Nothing is recorded until the command's outcome is: the forge reads in between may fail or the
        process may die, and then the next pass must find the command still to do (see :class:`Claim`).
        """
        kind = type(command).__name__.lower()
        args: dict[str, Any] = {}
        if isinstance(command, commands.Queue):
            args = {
                "priority": command.priority,
                "method": command.method.value if command.method else None,
                "after": [str(ref.resolve(event.repo.owner, event.repo.name)) for ref in command.after],
                "single": command.single,
            }
        claim = self._claim(event, f"comment:{event.comment_id}", kind, args)
        enqueuer = self.enqueuer
        if await enqueuer.seen(claim):
            return False
        owner, name, number = event.repo.owner, event.repo.name, event.number
        if isinstance(command, commands.Invalid):
            if not await enqueuer.record(claim, "refused", "invalid"):
                return False
            await enqueuer.reply(owner, name, number, f"I did not understand `{command.line}`: {command.reason}.")
            return True
        if isinstance(command, commands.StatusQuery):
            if not await enqueuer.record(claim, "accepted", "status"):
                return False
            await enqueuer.status(owner, name, number)
            return True
        if isinstance(command, (commands.Freeze, commands.Unfreeze)):
            return await self._hold(event, command, claim)
        base = (
            event.pull.base_ref
            if event.pull is not None
            else (await enqueuer.forge.get_pull(owner, name, number)).base_ref
        )
        allow = AllowList.of(await enqueuer.settings_for(owner, name, base))
        if not await enqueuer.permissions.may_merge(owner, name, event.author, allow=allow):
            level = await enqueuer.permissions.level(owner, name, event.author)
            if not await enqueuer.record(claim, "refused", "permission"):
                return False
            await enqueuer.reply(
                owner,
                name,
                number,
                f"@{event.author}, only users with write access to {owner}/{name}"
                + (" on the bot's allow-list" if allow.restricted else "")
                + f" can give the queue commands (your access: {level}).",
            )
            return True
        if isinstance(command, commands.Cancel):
            outcome = await enqueuer.cancel(owner, name, number, event.author, claim)
            if outcome.reason == "seen":
                return False
            await enqueuer.react(owner, name, event.comment_id)
            return True
        if isinstance(command, commands.Retry) and await enqueuer.latest_final(owner, name, number) is None:
            if not await enqueuer.record(claim, "refused", "nothing_to_retry"):
                return False
            await enqueuer.reply(owner, name, number, "There is no failed or cancelled entry to retry.")
            return True
        request = Request(owner, name, number, event.author, "comment", claim, event.comment_id)
        if isinstance(command, commands.Queue):
            approved = event.pull.head_sha if event.pull is not None else None
            request = replace(
                request,
                priority=command.priority,
                method=command.method,
                after=command.after,
                approved_sha=approved,
                single=command.single,
            )
        outcome = await enqueuer.queue(request)
        return outcome.reason != "seen"

    async def _hold(
        self, event: events.CommentEvent, command: commands.Freeze | commands.Unfreeze, claim: Claim
    ) -> bool:
        """``/merge freeze REASON`` or ``/merge unfreeze``: a repository admin's (on the allow-list when there is
        one) freezes or unfreezes every train of the repository, recorded with the command in one transaction;
        anyone else is told so, and nothing changes."""
        deps, enqueuer = self.deps, self.enqueuer
        owner, name, number, author = event.repo.owner, event.repo.name, event.number, event.author
        freezing = isinstance(command, commands.Freeze)
        verb = "freeze" if freezing else "unfreeze"
        level = await enqueuer.permissions.level(owner, name, author, fresh=True)
        if level not in ADMINS or not await enqueuer.permissions.allowed(author):
            if not await enqueuer.record(claim, "refused", "permission"):
                return False
            listed = " on the bot's allow-list" if enqueuer.permissions.restricted else ""
            await enqueuer.reply(
                owner,
                name,
                number,
                f"@{author}, only admins of {owner}/{name}{listed} can {verb} its queue (your access: {level}). "
                "Nothing was changed.",
            )
            return True
        target, now = holds.Target(owner, name), deps.clock.now()
        try:
            async with deps.sessions.begin() as session:
                if isinstance(command, commands.Freeze):
                    change = await holds.place(
                        session,
                        deps.settings,
                        target,
                        HoldKind.FREEZE,
                        reason=command.reason,
                        by=author,
                        source=HoldSource.COMMENT,
                        now=now,
                    )
                else:
                    change = await holds.lift(
                        session, deps.settings, target, HoldKind.FREEZE, by=author, source="comment", now=now
                    )
                if await record_command(session, claim, "accepted", verb, now) is None:
                    raise _Recorded
        except _Recorded:
            return False
        except holds.HoldError as exc:
            if not await enqueuer.record(claim, "refused", "not_frozen" if not freezing else "invalid"):
                return False
            await enqueuer.reply(owner, name, number, f"Nothing was changed: {exc}.")
            return True
        for train_id in change.trains:
            deps.wake(train_id)
        await enqueuer.react(owner, name, event.comment_id)
        if isinstance(command, commands.Freeze):
            text = (
                f"Froze the queue of {owner}/{name} (every branch): {change.hold.reason}. PRs are still queued and "
                "tested; nothing lands until an admin comments `/merge unfreeze`."
            )
        else:
            text = f"Unfroze the queue of {owner}/{name}: green PRs land again."
        await enqueuer.reply(owner, name, number, text)
        return True


class _Recorded(Exception):
    """The command was recorded meanwhile (a redelivery or a reconciler pass): nothing is done twice."""


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
