"""PR dependencies (bot/queue/deps.py): Depends-On lines, the verdict for one entry, cycles. Pure."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.queue.commands import DepRef
from bot.queue.deps import (
    BlockCause,
    Blocked,
    DependsOn,
    DepPull,
    DepState,
    DepVerdict,
    Graph,
    Ready,
    Waiting,
    assess,
    cycle_through,
    depends_on,
    find_cycle,
)
from tests.conftest import PAYLOADS


def pr(number: int, repo: str = "acme/app") -> DepRef:
    owner, name = repo.split("/")
    return DepRef(owner, name, number)


def here(number: int) -> DepRef:
    return DepRef(None, None, number)


# -- Depends-On lines


BODIES: list[tuple[str, str, DependsOn]] = [
    ("no dependencies", "Fixes the login page.", DependsOn()),
    ("one, this repository", "Depends-On: #3", DependsOn((here(3),))),
    ("one, another repository", "Depends-On: acme/lib#7", DependsOn((pr(7, "acme/lib"),))),
    (
        "several on one line, spaces and commas",
        "Depends-On: #3, acme/lib#7 #4",
        DependsOn((here(3), pr(7, "acme/lib"), here(4))),
    ),
    ("several lines add up", "Depends-On: #3\ntext\nDepends-On: #4", DependsOn((here(3), here(4)))),
    ("the same dependency twice counts once", "Depends-On: #3\nDepends-On: #3", DependsOn((here(3),))),
    ("key in any case", "depends-on: #3\nDEPENDS-ON: #4\nDepends-on : #5", DependsOn((here(3), here(4), here(5)))),
    ("up to three spaces before the key", "   Depends-On: #3", DependsOn((here(3),))),
    ("CRLF", "Summary\r\n\r\nDepends-On: #3\r\n", DependsOn((here(3),))),
    ("inside a fence: an example, not a dependency", "```\nDepends-On: #3\n```", DependsOn()),
    ("inside a tilde fence with an info string", "~~~md\nDepends-On: #3\n~~~", DependsOn()),
    ("indented code", "Example:\n\n    Depends-On: #3", DependsOn()),
    ("quoted", "> Depends-On: #3", DependsOn()),
    ("in an HTML comment (PR templates)", "<!--\nDepends-On: #N\n-->", DependsOn()),
    ("mid-line is prose", "This depends-on: #3 in spirit", DependsOn()),
    ("in a list item is prose", "- Depends-On: #3", DependsOn()),
    ("a key without refs cannot be read", "Depends-On:", DependsOn(unreadable=("Depends-On:",))),
    (
        "a line with anything but refs cannot be read, as a whole",
        "Depends-On: #3 (the API change)",
        DependsOn(unreadable=("Depends-On: #3 (the API change)",)),
    ),
    (
        "a malformed ref cannot be read; good lines still count",
        "Depends-On: lib#7\nDepends-On: #4",
        DependsOn((here(4),), ("Depends-On: lib#7",)),
    ),
    (
        "a URL cannot be read",
        "Depends-On: https://x/acme/lib/pulls/7",
        DependsOn(unreadable=("Depends-On: https://x/acme/lib/pulls/7",)),
    ),
    ("other keys are not ours", "Depends: #3\nDepends-Upon: #4\nRequires: #5", DependsOn()),
]


@pytest.mark.parametrize(("name", "body", "expected"), BODIES, ids=[case[0] for case in BODIES])
def test_depends_on(name: str, body: str, expected: DependsOn) -> None:
    assert depends_on(body) == expected


def pull_bodies() -> list[Path]:
    return sorted(PAYLOADS.glob("*pull_request*.json"))


@pytest.mark.parametrize("path", pull_bodies(), ids=lambda path: path.name)
def test_real_pr_bodies_declare_nothing(path: Path) -> None:
    """Includes the Forgejo capture from codeberg.org (gitea-pull_request-reopened.json)."""
    body = json.loads(path.read_text())["pull_request"]["body"]
    assert depends_on(body) == DependsOn()
    assert depends_on(f"{body}\r\n\r\nDepends-On: #2") == DependsOn((here(2),))


# -- the verdict for one entry

ME = pr(1)
OPEN, CLOSED, MERGED, UNKNOWN = DepState.OPEN, DepState.CLOSED, DepState.MERGED, DepState.UNKNOWN


def facts(**states: DepState) -> tuple[DepPull, ...]:
    """facts(n2=MERGED) → PR acme/app#2 is merged."""
    return tuple(DepPull(pr(int(name[1:])), state) for name, state in states.items())


VERDICTS: list[tuple[str, tuple[DepRef, ...], tuple[DepPull, ...], Graph, DepVerdict]] = [
    ("no dependencies: ready", (), (), {}, Ready()),
    ("every dependency merged: ready", (here(2), pr(3)), facts(n2=MERGED, n3=MERGED), {}, Ready()),
    ("one still open: waiting for it", (here(2), here(3)), facts(n2=MERGED, n3=OPEN), {}, Waiting((pr(3),))),
    ("not looked up yet: waiting, not blocked", (here(2),), (), {}, Waiting((pr(2),))),
    (
        "another repository, open",
        (pr(9, "acme/lib"),),
        (DepPull(pr(9, "acme/lib"), OPEN),),
        {},
        Waiting((pr(9, "acme/lib"),)),
    ),
    ("# means the entry's own repository", (here(2),), (DepPull(pr(2, "acme/lib"), MERGED),), {}, Waiting((pr(2),))),
    ("names compare without case", (DepRef("ACME", "App", 2),), facts(n2=MERGED), {}, Ready()),
    ("a repeated dependency is waited on once", (here(2), pr(2)), facts(n2=OPEN), {}, Waiting((pr(2),))),
    (
        "closed without merge: blocked, naming it",
        (here(2), here(3)),
        facts(n2=CLOSED, n3=OPEN),
        {},
        Blocked(BlockCause.CLOSED_UNMERGED, (pr(2),)),
    ),
    ("a closed issue is done", (here(2),), (DepPull(pr(2), CLOSED, is_pull=False),), {}, Ready()),
    ("an open issue is waited on", (here(2),), (DepPull(pr(2), OPEN, is_pull=False),), {}, Waiting((pr(2),))),
    (
        "unknown to the forge (404): blocked, missing",
        (here(2),),
        facts(n2=UNKNOWN),
        {},
        Blocked(BlockCause.MISSING, (pr(2),)),
    ),
    (
        "closed is named before missing",
        (here(2), here(3)),
        facts(n2=UNKNOWN, n3=CLOSED),
        {},
        Blocked(BlockCause.CLOSED_UNMERGED, (pr(3),)),
    ),
    ("itself: a cycle", (here(1),), (), {}, Blocked(BlockCause.CYCLE, (ME, ME))),
    ("itself, spelled in full: a cycle", (DepRef("Acme", "App", 1),), (), {}, Blocked(BlockCause.CYCLE, (ME, ME))),
    (
        "two entries waiting on each other",
        (here(2),),
        facts(n2=OPEN),
        {pr(2): (here(1),)},
        Blocked(BlockCause.CYCLE, (ME, pr(2), ME)),
    ),
    (
        "a cycle across repositories, named in order",
        (pr(5, "acme/lib"),),
        (),
        {pr(5, "acme/lib"): (here(6),), pr(6, "acme/lib"): (pr(1, "acme/app"),)},
        Blocked(BlockCause.CYCLE, (ME, pr(5, "acme/lib"), pr(6, "acme/lib"), ME)),
    ),
    (
        "the shortest cycle is named",
        (here(2), here(3)),
        (),
        {pr(2): (here(4),), pr(4): (here(1),), pr(3): (here(1),)},
        Blocked(BlockCause.CYCLE, (ME, pr(3), ME)),
    ),
    (
        "a cycle elsewhere, not through this entry: it waits",
        (here(2),),
        facts(n2=OPEN),
        {pr(2): (here(3),), pr(3): (here(2),)},
        Waiting((pr(2),)),
    ),
    ("a chain is not a cycle", (here(2),), facts(n2=OPEN), {pr(2): (here(3),), pr(3): ()}, Waiting((pr(2),))),
    (
        "the graph's own entry for this PR is ignored: its current dependencies count",
        (here(2),),
        facts(n2=OPEN),
        {ME: (here(1),)},
        Waiting((pr(2),)),
    ),
    (
        "a cycle is named before a closed dependency",
        (here(2), here(3)),
        facts(n2=OPEN, n3=CLOSED),
        {pr(2): (here(1),)},
        Blocked(BlockCause.CYCLE, (ME, pr(2), ME)),
    ),
]


@pytest.mark.parametrize(
    ("name", "needs", "known", "waiting", "expected"), VERDICTS, ids=[case[0] for case in VERDICTS]
)
def test_assess(
    name: str, needs: tuple[DepRef, ...], known: tuple[DepPull, ...], waiting: Graph, expected: DepVerdict
) -> None:
    assert assess(ME, needs, known, waiting) == expected


def test_unreadable_depends_on_blocks_before_anything_else() -> None:
    verdict = assess(ME, (here(1),), (), {}, unreadable=("Depends-On: lib#7",))
    assert verdict == Blocked(BlockCause.UNREADABLE, lines=("Depends-On: lib#7",))


def test_fixing_the_cause_unblocks_without_a_new_command() -> None:
    """The verdict is recomputed from facts: reopen and merge the dependency, and the entry is ready."""
    assert assess(ME, (here(2),), facts(n2=CLOSED), {}) == Blocked(BlockCause.CLOSED_UNMERGED, (pr(2),))
    assert assess(ME, (here(2),), facts(n2=OPEN), {}) == Waiting((pr(2),))
    assert assess(ME, (here(2),), facts(n2=MERGED), {}) == Ready()
    assert assess(ME, (here(2),), facts(n2=OPEN), {pr(2): (here(1),)}) == Blocked(BlockCause.CYCLE, (ME, pr(2), ME))
    assert assess(ME, (here(2),), facts(n2=OPEN), {pr(2): ()}) == Waiting((pr(2),))


@pytest.mark.parametrize(
    ("entry", "waiting"),
    [(here(1), {}), (pr(1), {here(2): (here(3),)})],
    ids=["entry without repository", "graph key without repository"],
)
def test_references_that_cannot_be_placed_are_a_programming_error(entry: DepRef, waiting: Graph) -> None:
    with pytest.raises(ValueError):
        assess(entry, (), (), waiting)


# -- cycles


A, B, C, D = pr(1), pr(2), pr(3), pr(4)

CYCLES: list[tuple[str, Graph, tuple[DepRef, ...] | None]] = [
    ("empty", {}, None),
    ("a chain", {A: (B,), B: (C,)}, None),
    ("a diamond", {A: (B, C), B: (D,), C: (D,)}, None),
    ("a self-loop", {A: (A,)}, (A, A)),
    ("two nodes", {A: (B,), B: (A,)}, (A, B, A)),
    ("a cycle behind a chain starts where it closes", {A: (B,), B: (C,), C: (B,)}, (B, C, B)),
    ("a cycle through a node that is only a target is impossible", {A: (B,), C: (B,)}, None),
]


@pytest.mark.parametrize(("name", "graph", "expected"), CYCLES, ids=[case[0] for case in CYCLES])
def test_find_cycle(name: str, graph: Graph, expected: tuple[DepRef, ...] | None) -> None:
    assert find_cycle(graph) == expected


def test_cycle_through_a_node_is_the_shortest_one() -> None:
    graph = {A: (B, D), B: (C,), C: (A,), D: (A,)}
    assert cycle_through(graph, A) == (A, D, A)
    assert cycle_through(graph, B) == (B, C, A, B)
    assert cycle_through({A: (B,), B: (B,)}, A) is None


def is_cycle(graph: Graph, path: tuple[DepRef, ...]) -> bool:
    return len(path) >= 2 and path[0] == path[-1] and all(b in graph.get(a, ()) for a, b in pairwise(path))


@st.composite
def dags(draw: st.DrawFn) -> dict[DepRef, tuple[DepRef, ...]]:
    """A random DAG: edges only go from a lower number to a higher one; nodes in shuffled order."""
    size = draw(st.integers(min_value=1, max_value=12))
    nodes = [pr(n) for n in range(1, size + 1)]
    graph = {
        node: tuple(draw(st.lists(st.sampled_from(nodes[i + 1 :]), unique=True)) if i + 1 < size else ())
        for i, node in enumerate(nodes)
    }
    order = draw(st.permutations(nodes))
    return {node: graph[node] for node in order}


@given(dags())
def test_a_dag_has_no_cycle(graph: dict[DepRef, tuple[DepRef, ...]]) -> None:
    assert find_cycle(graph) is None
    assert all(cycle_through(graph, node) is None for node in graph)


@given(dags(), st.data())
def test_a_back_edge_always_makes_a_cycle(graph: dict[DepRef, tuple[DepRef, ...]], data: st.DataObject) -> None:
    reachable = [(a, b) for a in graph for b in graph[a]]  # grow to every (ancestor, descendant) pair
    for _ in graph:
        reachable = list(dict.fromkeys([*reachable, *((a, c) for a, b in reachable for c in graph[b])]))
    pairs = [*reachable, *((node, node) for node in graph)]
    ancestor, descendant = data.draw(st.sampled_from(pairs))
    looped = {**graph, descendant: (*graph[descendant], ancestor)}
    cycle = find_cycle(looped)
    assert cycle is not None and is_cycle(looped, cycle)
    through = cycle_through(looped, ancestor)
    assert through is not None and is_cycle(looped, through) and through[0] == ancestor


@given(st.dictionaries(st.integers(1, 8).map(pr), st.lists(st.integers(1, 8).map(pr), max_size=4).map(tuple)))
def test_any_cycle_found_is_a_real_cycle(graph: dict[DepRef, tuple[DepRef, ...]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None or is_cycle(graph, cycle)
    for node in graph:
        through = cycle_through(graph, node)
        assert through is None or (is_cycle(graph, through) and through[0] == node)
        assert (through is None) or cycle is not None
