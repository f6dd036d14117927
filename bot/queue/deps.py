"""PR dependencies, pure: ``Depends-On:`` lines in a PR body, and whether an entry may enter the queue.

An entry's dependencies come from three places — Gitea's native PR dependencies, ``Depends-On:`` lines in
the PR body and ``/merge after`` — and the gate passes their union to :func:`assess` together with what it
knows of each dependency and the dependencies of the other waiting entries. The verdict:

- :class:`Ready` when every dependency is merged (or, for an issue, closed): the entry enters the queue;
- :class:`Waiting` on the dependencies still open (or not looked up yet);
- :class:`Blocked` when waiting can never end by itself: a ``Depends-On:`` line that cannot be read, a
  cycle through the entry (a PR depending on itself is the shortest one), a dependency closed without
  being merged, or one the forge does not know (404). The verdict is recomputed from current facts each
  time, so fixing the cause (editing the body, reopening the dependency, breaking the cycle) unblocks the
  entry without a new command.

References are compared fully qualified: ``#5`` is resolved against the repository of the PR that wrote it.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bot.queue.commands import DepRef, command_lines, parse_refs, unique

Graph = Mapping[DepRef, Sequence[DepRef]]

_DEPENDS_ON = re.compile(r"depends-on[ \t]*:(.*)", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True, slots=True)
class DependsOn:
    """The ``Depends-On:`` lines of a PR body: the references, and the lines that could not be read."""

    refs: tuple[DepRef, ...] = ()
    unreadable: tuple[str, ...] = ()


def depends_on(body: str) -> DependsOn:
    """``Depends-On: #3, other/repo#5`` lines (key in any case, refs split by spaces or commas).

    Lines are found the way commands are (:func:`~bot.queue.commands.command_lines`): at the start of a line,
    outside code, quotes and HTML comments. A line with anything but references after the key is unreadable
    as a whole, so a typo never silently drops a dependency.
    """
    refs: list[DepRef] = []
    unreadable: list[str] = []
    for line in command_lines(body):
        found = _DEPENDS_ON.fullmatch(line)
        if found is None:
            continue
        good, bad = parse_refs(found.group(1))
        if bad or not good:
            unreadable.append(line)
        else:
            refs.extend(good)
    return DependsOn(unique(refs), tuple(unreadable))


class DepState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"  # closed without being merged
    MERGED = "merged"
    UNKNOWN = "unknown"  # the forge answered 404: no such PR, or a repository the bot cannot see


@dataclass(frozen=True, slots=True)
class DepPull:
    """What the forge says about one dependency. Gitea dependencies may be issues: closing one fulfils it."""

    ref: DepRef
    state: DepState
    is_pull: bool = True

    @property
    def done(self) -> bool:
        return self.state is DepState.MERGED or (self.state is DepState.CLOSED and not self.is_pull)


class BlockCause(enum.StrEnum):
    UNREADABLE = "unreadable"  # lines: the Depends-On lines
    CYCLE = "cycle"  # refs: the cycle, starting and ending at the entry
    CLOSED_UNMERGED = "closed_unmerged"  # refs: the dependencies closed without merge
    MISSING = "missing"  # refs: the dependencies the forge does not know


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Waiting:
    on: tuple[DepRef, ...]


@dataclass(frozen=True, slots=True)
class Blocked:
    cause: BlockCause
    refs: tuple[DepRef, ...] = ()
    lines: tuple[str, ...] = ()


DepVerdict = Ready | Waiting | Blocked


def assess(
    entry: DepRef,
    needs: Iterable[DepRef],
    known: Iterable[DepPull],
    waiting: Graph,
    unreadable: Sequence[str] = (),
) -> DepVerdict:
    """May ``entry`` (qualified) enter the queue?

    ``needs``: its dependencies from every source (``#N`` is resolved against the entry's repository).
    ``known``: what the forge says about them; a dependency missing here was not looked up yet and is
    waited on. ``waiting``: the other waiting entries (qualified) → their dependencies, for cycles.
    ``unreadable``: ``Depends-On:`` lines that could not be read (:attr:`DependsOn.unreadable`).
    Causes are checked in this order: unreadable, cycle, closed without merge, missing.
    """
    owner, repo = _repository(entry)
    if unreadable:
        return Blocked(BlockCause.UNREADABLE, lines=tuple(unreadable))
    deps = unique(ref.resolve(owner, repo) for ref in needs)
    facts = {pull.ref.resolve(owner, repo): pull for pull in known}
    graph = {key: _qualified(key, values) for key, values in waiting.items() if key != entry}
    graph[entry] = deps
    cycle = cycle_through(graph, entry)
    if cycle is not None:
        return Blocked(BlockCause.CYCLE, cycle)
    for cause, state in ((BlockCause.CLOSED_UNMERGED, DepState.CLOSED), (BlockCause.MISSING, DepState.UNKNOWN)):
        hit = tuple(ref for ref in deps if ref in facts and facts[ref].state is state and not facts[ref].done)
        if hit:
            return Blocked(cause, hit)
    pending = tuple(ref for ref in deps if ref not in facts or not facts[ref].done)
    return Waiting(pending) if pending else Ready()


def _repository(ref: DepRef) -> tuple[str, str]:
    if ref.owner is None or ref.repo is None:
        raise ValueError(f"{ref} must name its repository")
    return ref.owner, ref.repo


def _qualified(key: DepRef, values: Sequence[DepRef]) -> tuple[DepRef, ...]:
    owner, repo = _repository(key)
    return unique(ref.resolve(owner, repo) for ref in values)


def cycle_through(graph: Graph, node: DepRef) -> tuple[DepRef, ...] | None:
    """The shortest cycle through ``node`` as a path ``(node, ..., node)``, or None. Refs must be qualified."""
    parent: dict[DepRef, DepRef] = {}
    frontier = deque([node])
    while frontier:
        current = frontier.popleft()
        for nxt in graph.get(current, ()):
            if nxt == node:
                path = [current]
                while path[-1] != node:
                    path.append(parent[path[-1]])
                return (*reversed(path), node)
            if nxt not in parent:
                parent[nxt] = current
                frontier.append(nxt)
    return None


def find_cycle(graph: Graph) -> tuple[DepRef, ...] | None:
    """Some cycle of ``graph`` as a path ``(a, b, ..., a)``, or None when it has none. Refs must be qualified.

    Depth-first from each node in the mapping's order, so the answer is the same for the same graph.
    """
    finished: set[DepRef] = set()
    for root in graph:
        if root in finished:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(graph.get(root, ()))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                finished.add(path[-1])
                on_path.discard(path.pop())
                stack.pop()
            elif nxt in on_path:
                return (*path[path.index(nxt) :], nxt)
            elif nxt not in finished:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(graph.get(nxt, ())))
    return None
