"""Waiting entries: are their dependencies merged (and approvals given), or are they blocked?

The facts come from the forge (each dependency's state, read fresh) and the database (every waiting
entry's dependencies, across repositories, for cycles); the verdict comes from the pure
``bot.queue.deps.assess``. The gate promotes a ready entry through the machine, and tells people once
what an entry waits for or why it is blocked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Dependency, Entry, PullRequest, Repository
from bot.forge.client import GiteaClient
from bot.queue import deps
from bot.queue.commands import DepRef
from bot.queue.deps import DepPull, DepState, DepVerdict
from bot.queue.model import EntryState


@dataclass(frozen=True)
class Waits:
    """What a waiting entry waits for (``blocked``: it cannot get there by itself: a cycle, a closed PR)."""

    text: str
    blocked: bool


async def waiting_graph(session: AsyncSession) -> dict[DepRef, list[DepRef]]:
    """Every waiting entry (as its PR's qualified ref) → its dependencies."""
    rows = await session.execute(
        select(
            Repository.owner, Repository.name, PullRequest.number, Dependency.owner, Dependency.repo, Dependency.number
        )
        .select_from(Entry)
        .join(PullRequest, PullRequest.id == Entry.pull_request_id)
        .join(Repository, Repository.id == PullRequest.repository_id)
        .join(Dependency, Dependency.entry_id == Entry.id)
        .where(Entry.state == EntryState.WAITING.value)
    )
    graph: dict[DepRef, list[DepRef]] = defaultdict(list)
    for owner, name, number, dep_owner, dep_repo, dep_number in rows:
        graph[DepRef(owner.lower(), name.lower(), number)].append(DepRef(dep_owner, dep_repo, dep_number))
    return dict(graph)


async def entry_needs(session: AsyncSession, entry_id: int) -> list[DepRef]:
    rows = await session.execute(
        select(Dependency.owner, Dependency.repo, Dependency.number).where(Dependency.entry_id == entry_id)
    )
    return [DepRef(owner, repo, number) for owner, repo, number in rows]


async def refresh_needs(
    session: AsyncSession, entry_id: int, owner: str, name: str, body: str, native: list[tuple[str, str, int, bool]]
) -> None:
    """Replace the entry's ``native`` and ``body`` dependencies with what the forge says now
    (``/merge after`` dependencies, from the command, stay as given)."""
    current = {
        DepRef(dep_owner.lower(), dep_repo.lower(), number): "native" for dep_owner, dep_repo, number, _ in native
    }
    for ref in deps.depends_on(body).refs:
        current.setdefault(ref.resolve(owner, name), "body")
    rows = (await session.execute(select(Dependency).where(Dependency.entry_id == entry_id))).scalars().all()
    kept = set()
    for row in rows:
        ref = DepRef(row.owner, row.repo, row.number)
        if row.source == "command":
            kept.add(ref)
        elif current.get(ref) != row.source:
            await session.delete(row)
        else:
            kept.add(ref)
    for ref, source in current.items():
        if ref not in kept:
            assert ref.owner is not None and ref.repo is not None
            session.add(Dependency(entry_id=entry_id, owner=ref.owner, repo=ref.repo, number=ref.number, source=source))


async def dependency_facts(forge: GiteaClient, needs: list[DepRef], cache: dict[DepRef, DepPull]) -> list[DepPull]:
    known = []
    for ref in needs:
        if ref not in cache:
            assert ref.owner is not None and ref.repo is not None
            found = await forge.issue_state(ref.owner, ref.repo, ref.number)
            if found is None:
                cache[ref] = DepPull(ref, DepState.UNKNOWN)
            else:
                state, is_pull = found
                cache[ref] = DepPull(ref, DepState(state), is_pull)
        known.append(cache[ref])
    return known


def verdict(
    owner: str,
    name: str,
    number: int,
    needs: list[DepRef],
    known: list[DepPull],
    graph: dict[DepRef, list[DepRef]],
    body: str,
) -> DepVerdict:
    me = DepRef(owner.lower(), name.lower(), number)
    return deps.assess(me, needs, known, graph, deps.depends_on(body).unreadable)


def describe(verdict_: DepVerdict, owner: str, name: str) -> str:
    """Words for a waiting or blocked entry (the status description and the one comment)."""
    if isinstance(verdict_, deps.Waiting):
        return "waiting for " + ", ".join(str(ref.relative_to(owner, name)) for ref in verdict_.on)
    if isinstance(verdict_, deps.Blocked):
        refs = [str(ref.relative_to(owner, name)) for ref in verdict_.refs]
        if verdict_.cause is deps.BlockCause.CYCLE:
            return "blocked: the dependencies form a cycle " + " → ".join(refs)
        if verdict_.cause is deps.BlockCause.CLOSED_UNMERGED:
            return "blocked: closed without being merged: " + ", ".join(refs)
        if verdict_.cause is deps.BlockCause.MISSING:
            return "blocked: no such PR or issue (or the bot cannot see it): " + ", ".join(refs)
        return "blocked: unreadable Depends-On line(s): " + "; ".join(f"`{line}`" for line in verdict_.lines)
    return "ready"
