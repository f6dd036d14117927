"""Freezes and pauses: placed and lifted by the CLI, the API and ``/merge freeze`` comments, read by the gate.

A freeze stops merging (PRs are still queued and tested, green ones wait); a pause stops new attempts (the
running ones finish, or with ``cancel_running`` are abandoned). Each is on one branch's train or on every
train of a repository, with a reason, who placed it and an optional end time after which it lifts by itself.
What the machine does with them is in :mod:`bot.queue.machine`; this module is the edge that stores them.

Every change is recorded in ``train_events`` with who made it, and a freeze or unfreeze is told through
``bot.notifications``, in the same transaction. :func:`place` and :func:`lift` refuse bad input with a
:class:`HoldError` (one line) and change nothing; the caller wakes the trains they name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.config import REPO_RE, Settings
from bot.db import queries
from bot.db.models import HoldRow, HoldSource, Repository, Train, TrainEvent, TrainEventKind
from bot.notifications import enqueue, targets, text
from bot.notifications.outbox import Message
from bot.queue import windows
from bot.queue.model import Hold, HoldKind
from bot.repos.managed import explicit, is_managed
from bot.repos.patterns import discovers

REASON_LIMIT = 500
_DURATION = re.compile(r"(?:(\d{1,4})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?", re.ASCII)
_BRANCH = re.compile(r"[^\s:~^?*\[\\]{1,255}")
PLACED = {HoldKind.FREEZE: TrainEventKind.FROZEN, HoldKind.PAUSE: TrainEventKind.PAUSED}
LIFTED = {HoldKind.FREEZE: TrainEventKind.UNFROZEN, HoldKind.PAUSE: TrainEventKind.UNPAUSED}
EXPIRED = "schedule"  # the source of a hold lifted because its end time passed
EXPIRE_SECONDS = 15.0  # how often the scheduler lifts holds whose end time passed


class HoldError(Exception):
    """Bad input, or nothing to lift: one line for the person who asked; nothing was changed."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a hold is on: ``owner/name``'s train of ``branch``, or every train of the repository (None)."""

    owner: str
    name: str
    branch: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Target:
        """``owner/repo`` or ``owner/repo:branch``."""
        repository, sep, branch = spec.strip().partition(":")
        if not REPO_RE.match(repository):
            raise HoldError(f"expected owner/repo or owner/repo:branch, got {spec!r}")
        if sep and not _BRANCH.fullmatch(branch):
            raise HoldError(f"{branch!r} is not a branch name")
        owner, _, name = repository.partition("/")
        return cls(owner, name, branch if sep else None)

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        return self.repository + (f":{self.branch}" if self.branch else "")


@dataclass(frozen=True, slots=True)
class Change:
    """What :func:`place` or :func:`lift` did: the hold, and the trains to wake."""

    hold: HoldRow
    trains: tuple[int, ...]
    replaced: bool = False


def describe(change: Change, command: str, target: Target) -> str:
    """The one line that says what was done."""
    hold = change.hold
    if command in ("unfreeze", "unpause"):
        return f"{target}: {'unfrozen' if command == 'unfreeze' else 'unpaused'} (it was for: {hold.reason})"
    what = "frozen" if command == "freeze" else "paused"
    until = f" until {hold.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if hold.until is not None else ""
    running = " (running candidates cancelled)" if hold.cancel_running else ""
    again = " (replacing the earlier one)" if change.replaced else ""
    return f"{target}: {what}{until}{running}: {hold.reason}{again}"


def parse_until(value: str, now: datetime) -> datetime:
    """An end time: a duration from now (``90m``, ``2h``, ``1d12h``) or an ISO 8601 time with its offset."""
    value = value.strip()
    duration = _DURATION.fullmatch(value)
    if value and duration is not None:
        days, hours, minutes = (int(part or 0) for part in duration.groups())
        until = now + timedelta(days=days, hours=hours, minutes=minutes)
    else:
        try:
            until = datetime.fromisoformat(value)
        except ValueError:
            raise HoldError(
                f"--until {value!r} is neither a duration (30m, 2h, 1d12h) nor an ISO 8601 time"
            ) from None
        if until.tzinfo is None:
            raise HoldError(f"--until {value!r} has no time zone: add one, e.g. {value}Z or {value}+01:00")
    if until <= now:
        raise HoldError(f"--until {value!r} is not in the future")
    return until


def check_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise HoldError("a reason is required (what the freeze or pause is for)")
    if len(reason) > REASON_LIMIT:
        raise HoldError(f"the reason is longer than {REASON_LIMIT} characters")
    return reason


def managed(settings: Settings, target: Target) -> None:
    """Without the database: a repository no setting could name is refused at once."""
    if not (explicit(settings, target.repository) or discovers(settings.patterns)):
        raise HoldError(f"{target.repository} is not managed by this bot (setting repos)")


async def managed_now(session: AsyncSession, settings: Settings, target: Target) -> None:
    """With the database: named in the settings, or discovered under a pattern and still managed."""
    if not await is_managed(session, settings, target.repository):
        raise HoldError(f"{target.repository} is not managed by this bot (setting repos)")


async def place(
    session: AsyncSession,
    settings: Settings,
    target: Target,
    kind: HoldKind,
    *,
    reason: str,
    by: str,
    source: HoldSource,
    now: datetime,
    until: datetime | None = None,
    cancel_running: bool = False,
) -> Change:
    """Freeze or pause ``target`` (a hold of that kind already on it is replaced), in the caller's transaction."""
    await managed_now(session, settings, target)
    reason = check_reason(reason)
    if until is not None and until <= now:
        raise HoldError("the end time is not in the future")
    repo = await queries.ensure_repository(session, target.owner, target.name)
    old = await _unlifted(session, repo.id, target.branch, kind)
    if old is not None:
        old.lifted_at, old.lifted_by = now, by
        await session.flush()
    hold = HoldRow(
        repository_id=repo.id,
        branch=target.branch,
        kind=kind.value,
        reason=reason,
        actor=by,
        source=source.value,
        until=until,
        cancel_running=cancel_running and kind is HoldKind.PAUSE,
        created_at=now,
    )
    session.add(hold)
    await session.flush()
    detail: dict[str, Any] = {"until": until.isoformat() if until else None}
    if kind is HoldKind.PAUSE:
        detail["cancel_running"] = hold.cancel_running
    if old is not None:
        detail["replaces"] = old.id
    _event(session, hold, PLACED[kind], by, source.value, reason, detail, now)
    if kind is HoldKind.FREEZE:
        message = text.frozen(settings, target.repository, target.branch, by, _with_until(reason, until))
        await enqueue(session, targets(settings), _keyed(message, f"hold:{hold.id}:placed"), now=now)
    return Change(hold, await _trains(session, repo.id, target.branch), replaced=old is not None)


async def lift(
    session: AsyncSession,
    settings: Settings,
    target: Target,
    kind: HoldKind,
    *,
    by: str | None,
    source: str,
    now: datetime,
) -> Change:
    """Unfreeze or unpause ``target``; :class:`HoldError` when no such hold is in force on it."""
    await managed_now(session, settings, target)
    repo = await queries.find_repository(session, target.repository)
    hold = await _unlifted(session, repo.id, target.branch, kind) if repo is not None else None
    if repo is None or hold is None or (hold.until is not None and hold.until <= now):
        what = "frozen" if kind is HoldKind.FREEZE else "paused"
        scope = f"{target.repository}:{target.branch}" if target.branch else f"{target.repository} (the repository)"
        raise HoldError(f"{scope} is not {what}")
    hold.lifted_at, hold.lifted_by = now, by
    await session.flush()
    _event(session, hold, LIFTED[kind], by, source, hold.reason, {}, now)
    if kind is HoldKind.FREEZE:
        message = text.unfrozen(settings, target.repository, target.branch, by)
        await enqueue(session, targets(settings), _keyed(message, f"hold:{hold.id}:lifted"), now=now)
    return Change(hold, await _trains(session, repo.id, target.branch))


async def expire(session: AsyncSession, settings: Settings, now: datetime) -> list[Change]:
    """Lift the holds whose end time passed, recorded as lifted by themselves (at their end time)."""
    due = (
        await session.execute(
            select(HoldRow, Repository)
            .join(Repository, Repository.id == HoldRow.repository_id)
            .where(HoldRow.lifted_at.is_(None), HoldRow.until.is_not(None), HoldRow.until <= now)
            .order_by(HoldRow.id)
            .with_for_update(of=HoldRow, skip_locked=True)
        )
    ).all()
    changes = []
    for hold, repo in due:
        assert hold.until is not None
        hold.lifted_at = hold.until
        kind = HoldKind(hold.kind)
        _event(session, hold, LIFTED[kind], None, EXPIRED, hold.reason, {"expired": True}, hold.until)
        if kind is HoldKind.FREEZE:
            message = text.unfrozen(settings, repo.full_name, hold.branch, None)
            await enqueue(session, targets(settings), _keyed(message, f"hold:{hold.id}:lifted"), now=now)
        changes.append(Change(hold, await _trains(session, repo.id, hold.branch)))
    await session.flush()
    return changes


async def expire_due(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock, wake: Callable[[int], None]
) -> int:
    """The scheduled job: lift what is due (recorded, told) and wake its trains; how many holds were lifted.
    The gate already ignores a hold past its end time: this is the record and the message."""
    async with sessions.begin() as session:
        changes = await expire(session, settings, clock.now())
    for change in changes:
        for train_id in change.trains:
            wake(train_id)
    return len(changes)


async def in_force(session: AsyncSession, now: datetime, repository_id: int | None = None) -> list[HoldRow]:
    """The holds in force now (of one repository when given): the branch's first, then the repository's."""
    query = select(HoldRow).where(HoldRow.lifted_at.is_(None), or_(HoldRow.until.is_(None), HoldRow.until > now))
    if repository_id is not None:
        query = query.where(HoldRow.repository_id == repository_id)
    rows = (await session.execute(query.order_by(HoldRow.id))).scalars().all()
    return sorted(rows, key=lambda row: (row.branch is None, row.id))


def for_branch(rows: Sequence[HoldRow], repository_id: int, branch: str) -> tuple[Hold, ...]:
    """The holds of ``rows`` on that train (its own, then its repository's), as the machine sees them."""
    return tuple(
        Hold(
            HoldKind(row.kind),
            row.reason,
            by=row.actor,
            until=row.until,
            scope="branch" if row.branch is not None else "repository",
            cancel_running=row.cancel_running,
        )
        for row in rows
        if row.repository_id == repository_id and row.branch in (None, branch)
    )


def window_hold(merge_windows: Sequence[str], now: datetime) -> Hold | None:
    """A freeze while ``now`` is outside every merge window, lifting when the next one opens; else None."""
    parsed = windows.parse_all(merge_windows)
    if windows.is_open(parsed, now):
        return None
    return Hold(
        HoldKind.FREEZE,
        "outside the merge windows (" + "; ".join(merge_windows) + ")",
        until=windows.next_change(parsed, now),
        scope="window",
    )


async def train_log(session: AsyncSession, repository_id: int, limit: int = 50) -> list[TrainEvent]:
    query = (
        select(TrainEvent)
        .where(TrainEvent.repository_id == repository_id)
        .order_by(TrainEvent.id.desc())
        .limit(limit)
    )
    return list((await session.execute(query)).scalars().all())


async def _unlifted(session: AsyncSession, repository_id: int, branch: str | None, kind: HoldKind) -> HoldRow | None:
    scope = HoldRow.branch.is_(None) if branch is None else HoldRow.branch == branch
    query = (
        select(HoldRow)
        .where(HoldRow.repository_id == repository_id, scope, HoldRow.kind == kind.value, HoldRow.lifted_at.is_(None))
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def _trains(session: AsyncSession, repository_id: int, branch: str | None) -> tuple[int, ...]:
    query = select(Train.id).where(Train.repository_id == repository_id)
    if branch is not None:
        query = query.where(Train.branch == branch)
    return tuple((await session.execute(query.order_by(Train.id))).scalars().all())


def _event(
    session: AsyncSession,
    hold: HoldRow,
    kind: TrainEventKind,
    by: str | None,
    source: str,
    reason: str,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    session.add(
        TrainEvent(
            repository_id=hold.repository_id,
            branch=hold.branch,
            hold_id=hold.id,
            kind=kind.value,
            actor=by,
            source=source,
            reason=reason,
            detail=detail,
            at=at,
        )
    )


def _with_until(reason: str, until: datetime | None) -> str:
    return f"{reason} (until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" if until is not None else reason


def _keyed(message: Message, key: str) -> Message:
    return replace(message, key=key)

