"""Queries shared by the inbox and the gate. Each takes the session it runs in; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import (
    ACTIVE_ATTEMPT_STATES_SQL,
    Attempt,
    AttemptEntry,
    CommitStatus,
    Cursor,
    Entry,
    EntryEvent,
    PullRequest,
    Repository,
    Train,
)
from bot.forge.events import PullRequestInfo
from bot.queue.model import ACTIVE_ATTEMPT_STATES, ACTIVE_ENTRY_STATES


class StaleRow(RuntimeError):
    """A conditional update matched no row: someone else moved it first. Re-read and decide again."""


async def ensure_repository(session: AsyncSession, owner: str, name: str, forge_id: int | None = None) -> Repository:
    statement = (
        insert(Repository)
        .values(owner=owner, name=name, forge_id=forge_id)
        .on_conflict_do_nothing(index_elements=["owner", "name"])
    )
    await session.execute(statement)
    repo = (
        await session.execute(select(Repository).where(Repository.owner == owner, Repository.name == name))
    ).scalar_one()
    return repo


async def find_repository(session: AsyncSession, full_name: str) -> Repository | None:
    owner, _, name = full_name.partition("/")
    query = select(Repository).where(
        func.lower(Repository.owner) == owner.lower(), func.lower(Repository.name) == name.lower()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def train_ids(session: AsyncSession, repository_id: int) -> list[int]:
    rows = await session.execute(select(Train.id).where(Train.repository_id == repository_id).order_by(Train.id))
    return [int(train_id) for (train_id,) in rows]


async def cursor(session: AsyncSession, name: str) -> datetime | None:
    return (await session.execute(select(Cursor.at).where(Cursor.name == name))).scalar_one_or_none()


async def set_cursor(session: AsyncSession, name: str, at: datetime) -> None:
    statement = insert(Cursor).values(name=name, at=at)
    await session.execute(statement.on_conflict_do_update(index_elements=["name"], set_={"at": at}))


async def ensure_train(session: AsyncSession, repository_id: int, branch: str) -> Train:
    statement = (
        insert(Train)
        .values(repository_id=repository_id, branch=branch)
        .on_conflict_do_nothing(index_elements=["repository_id", "branch"])
    )
    await session.execute(statement)
    query = select(Train).where(Train.repository_id == repository_id, Train.branch == branch)
    return (await session.execute(query)).scalar_one()


def _pull_values(info: PullRequestInfo, now: datetime) -> dict[str, Any]:
    return {
        "forge_id": info.forge_id,
        "title": info.title,
        "body": info.body,
        "author": info.author,
        "state": "closed" if info.state == "closed" or info.merged else "open",
        "draft": info.draft,
        "merged": info.merged,
        "merge_commit_sha": info.merge_commit_sha,
        "head_ref": info.head_ref,
        "head_sha": info.head_sha,
        "head_repo": info.head_repo,
        "base_ref": info.base_ref,
        "allow_maintainer_edit": info.allow_maintainer_edit,
        "labels": list(info.labels),
        "forge_updated_at": _forge_time(info.updated_at),
        "synced_at": now,
    }


def _forge_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


async def upsert_pull(session: AsyncSession, repository_id: int, info: PullRequestInfo, now: datetime) -> PullRequest:
    values = _pull_values(info, now)
    statement = insert(PullRequest).values(repository_id=repository_id, number=info.number, **values)
    # The newest forge time seen stays: a webhook that arrives late carries an older one.
    newest = func.greatest(PullRequest.forge_updated_at, statement.excluded.forge_updated_at)
    kept = {**values, "forge_updated_at": newest}
    upsert = statement.on_conflict_do_update(index_elements=["repository_id", "number"], set_=kept)
    pull_id = (await session.execute(upsert.returning(PullRequest.id))).scalar_one()
    pull = await session.get(PullRequest, pull_id, populate_existing=True)
    assert pull is not None
    return pull


async def active_entries(session: AsyncSession, train_id: int) -> Sequence[tuple[Entry, PullRequest]]:
    query = (
        select(Entry, PullRequest)
        .join(PullRequest, PullRequest.id == Entry.pull_request_id)
        .where(Entry.train_id == train_id, Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES]))
        .order_by(Entry.id)
    )
    return [(entry, pull) for entry, pull in (await session.execute(query)).all()]


async def active_entry_for(session: AsyncSession, pull_request_id: int) -> Entry | None:
    query = select(Entry).where(
        Entry.pull_request_id == pull_request_id, Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES])
    )
    return (await session.execute(query)).scalar_one_or_none()


async def active_attempts(session: AsyncSession, train_id: int) -> list[tuple[Attempt, list[AttemptEntry]]]:
    """The train's active attempts in chain order (each after the attempt it is built on), with their
    entries in the order their changes are stacked."""
    query = (
        select(Attempt)
        .where(Attempt.train_id == train_id, Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]))
        .order_by(Attempt.id)
    )
    attempts = list((await session.execute(query)).scalars())
    if not attempts:
        return []
    members: dict[int, list[AttemptEntry]] = {attempt.id: [] for attempt in attempts}
    rows = await session.execute(
        select(AttemptEntry)
        .where(AttemptEntry.attempt_id.in_(list(members)))
        .order_by(AttemptEntry.attempt_id, AttemptEntry.position)
    )
    for member in rows.scalars():
        members[member.attempt_id].append(member)
    return [(attempt, members[attempt.id]) for attempt in chain_order(attempts)]


async def unsettled_bisections(session: AsyncSession, train_id: int) -> list[tuple[Attempt, list[tuple[int, str]]]]:
    """The train's red batches under bisection whose outcome is not recorded yet, each with the entries it
    carried and the state each is in now."""
    attempts = list(
        (
            await session.execute(
                select(Attempt)
                .where(
                    Attempt.train_id == train_id,
                    Attempt.reason == "bisected",
                    Attempt.reason_detail["outcome"].astext.is_(None),
                )
                .order_by(Attempt.id)
            )
        ).scalars()
    )
    if not attempts:
        return []
    states: dict[int, list[tuple[int, str]]] = {attempt.id: [] for attempt in attempts}
    rows = await session.execute(
        select(AttemptEntry.attempt_id, Entry.id, Entry.state)
        .join(Entry, Entry.id == AttemptEntry.entry_id)
        .where(AttemptEntry.attempt_id.in_(list(states)))
        .order_by(AttemptEntry.attempt_id, AttemptEntry.position)
    )
    for attempt_id, entry_id, state in rows:
        states[attempt_id].append((entry_id, state))
    return [(attempt, states[attempt.id]) for attempt in attempts]


async def pulls_of(session: AsyncSession, entry_ids: Sequence[int]) -> list[PullRequest]:
    """The PRs of these entries, in the entries' order."""
    rows = await session.execute(
        select(Entry.id, PullRequest).join(PullRequest, PullRequest.id == Entry.pull_request_id).where(
            Entry.id.in_(list(entry_ids))
        )
    )
    found = {entry_id: pull for entry_id, pull in rows}
    return [found[entry_id] for entry_id in entry_ids if entry_id in found]


def chain_order(attempts: Sequence[Attempt]) -> list[Attempt]:
    """Parents before children: an attempt whose parent is not among ``attempts`` starts the chain; the
    rest follow the ``parent_id`` links (ties, and anything unlinked, by id)."""
    by_parent: dict[int | None, list[Attempt]] = {}
    ids = {attempt.id for attempt in attempts}
    for attempt in sorted(attempts, key=lambda a: a.id):
        parent = attempt.parent_id if attempt.parent_id in ids else None
        by_parent.setdefault(parent, []).append(attempt)
    ordered: list[Attempt] = []
    pending = list(by_parent.get(None, []))
    while pending:
        attempt = pending.pop(0)
        ordered.append(attempt)
        pending[:0] = by_parent.get(attempt.id, [])
    seen = {attempt.id for attempt in ordered}
    return ordered + [attempt for attempt in sorted(attempts, key=lambda a: a.id) if attempt.id not in seen]


async def trains_with_work(session: AsyncSession) -> list[int]:
    """Trains with an active entry or attempt, or a final entry whose PR is still to be told (and due)."""
    entries = select(Entry.train_id).where(Entry.state.in_([s.value for s in ACTIVE_ENTRY_STATES]))
    attempts = select(Attempt.train_id).where(Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]))
    rows = await session.execute(entries.union(attempts, select(Entry.train_id).where(untold_due())))
    return sorted(int(row[0]) for row in rows)


def untold_due() -> ColumnElement[bool]:
    """Final entries whose PR was not told the outcome yet, and whose next try is due."""
    return and_(
        Entry.finished_at.is_not(None),
        Entry.told_at.is_(None),
        or_(Entry.tell_after.is_(None), Entry.tell_after <= func.now()),
    )


async def trains_testing(session: AsyncSession, repository_id: int, sha: str) -> list[int]:
    query = (
        select(Attempt.train_id)
        .join(Train, Train.id == Attempt.train_id)
        .where(
            Train.repository_id == repository_id,
            Attempt.candidate_sha == sha,
            Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]),
        )
    )
    return [int(row[0]) for row in await session.execute(query)]


async def move_entry(session: AsyncSession, entry: Entry, state: str, **values: Any) -> None:
    """Entry → state, only if nobody moved it since it was read (version check)."""
    result = await session.execute(
        update(Entry)
        .where(Entry.id == entry.id, Entry.version == entry.version)
        .values(state=state, version=Entry.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleRow(f"entry {entry.id} moved under us")
    entry.version += 1
    entry.state = state
    for key, value in values.items():
        setattr(entry, key, value)


async def move_attempt(session: AsyncSession, attempt: Attempt, **values: Any) -> None:
    """Attempt fields ← values, only if nobody moved it since it was read (version check)."""
    result = await session.execute(
        update(Attempt)
        .where(Attempt.id == attempt.id, Attempt.version == attempt.version)
        .values(version=Attempt.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleRow(f"attempt {attempt.id} moved under us")
    attempt.version += 1
    for key, value in values.items():
        setattr(attempt, key, value)


async def adopt_children(session: AsyncSession, old_id: int, new_id: int) -> None:
    """Active attempts built on attempt ``old_id``'s candidate are built on ``new_id``'s (the same commit)."""
    await session.execute(
        update(Attempt)
        .where(Attempt.parent_id == old_id, Attempt.state.in_([s.value for s in ACTIVE_ATTEMPT_STATES]))
        .values(parent_id=new_id, version=Attempt.version + 1)
        .execution_options(synchronize_session=False)
    )


async def record_ends(session: AsyncSession, attempt_id: int, ends: dict[int, str]) -> None:
    """Each entry's end commit in the attempt's candidate (``attempt_entries.end_sha``)."""
    for entry_id, sha in ends.items():
        await session.execute(
            update(AttemptEntry)
            .where(AttemptEntry.attempt_id == attempt_id, AttemptEntry.entry_id == entry_id)
            .values(end_sha=sha)
            .execution_options(synchronize_session=False)
        )


def record(
    session: AsyncSession,
    entry_id: int,
    kind: str,
    *,
    reason: str | None = None,
    actor: str | None = None,
    attempt_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        EntryEvent(entry_id=entry_id, kind=kind, reason=reason, actor=actor, attempt_id=attempt_id, detail=detail or {})
    )


async def save_status(
    session: AsyncSession,
    repository_id: int,
    sha: str,
    context: str,
    state: str,
    *,
    target_url: str = "",
    description: str = "",
    forge_id: int | None = None,
    now: datetime,
) -> None:
    values = {
        "state": state,
        "target_url": target_url,
        "description": description,
        "forge_id": forge_id,
        "updated_at": now,
    }
    statement = insert(CommitStatus).values(repository_id=repository_id, sha=sha, context=context, **values)
    newer = (
        (CommitStatus.forge_id.is_(None))
        | (statement.excluded.forge_id.is_(None))
        | (CommitStatus.forge_id <= statement.excluded.forge_id)
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["repository_id", "sha", "context"], set_=values, where=newer)
    )


__all__ = ["ACTIVE_ATTEMPT_STATES_SQL", "StaleRow"]
