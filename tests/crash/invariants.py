"""The promises, checked on what the forge saw: the simulator's log (pushes, API calls, CI runs) and the
database the bots share. Pure functions of that evidence; each returns a list of violations (empty: kept).

* The base holds only tested SHAs: every move of ``refs/heads/main`` after the scenario was set up went,
  by a fast-forward, to a SHA on which CI had reported ``success`` for the required context *before* the
  push — and to each SHA at most once (``untested_base_moves``, in :mod:`gitea_sim.logcheck` so that the
  benchmarks check it too; imported here with ``base_moves`` for the suites).
* No PR merged twice: at most one merge call per PR took effect.
* The active attempts of a train form one chain from the base tip: each attempt's base is the candidate of the
  one before it, the first one's base the tip when it was built (``broken_chains``, judged on samples of the
  database's attempt rows); no entry is in two active attempts at once; what the forge shows agrees
  (``overlapping_attempts``: the live ``merge-bot/*`` branches, at most ``most`` of them, each candidate on
  the one before). A re-test of a red attempt takes its place in the chain with the very same commit (on a
  fresh ref), and what was built on the red one stays built on it. Serially (a batch of one, no bisection)
  the chain has at most one attempt: at most one live staging branch per repository.
* Every entry final, nothing active, and the forge agrees with the database about what merged.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitea_sim.gitrepo import ZERO_SHA as ZERO_SHA
from gitea_sim.logcheck import base_moves as base_moves
from gitea_sim.logcheck import untested_base_moves as untested_base_moves

MERGE_CALL = re.compile(r"^/api/v1/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<number>\d+)/merge$")
STAGING_PREFIX = "refs/heads/merge-bot/"


def effective_merge_calls(
    log: Iterable[dict[str, Any]], committed_faults: frozenset[int] = frozenset()
) -> Counter[tuple[str, int]]:
    """(repo, PR) → merge calls that took effect: answered 200, or answered an injected error *after* the
    simulator had carried the merge out (``committed_faults``: ids of ``when: after`` faults)."""
    calls: Counter[tuple[str, int]] = Counter()
    for event in log:
        if event["kind"] != "api" or event["method"] != "POST":
            continue
        match = MERGE_CALL.match(event["path"])
        if match is None:
            continue
        if event["status"] == 200 or (event.get("fault") in committed_faults and event["status"] >= 500):
            calls[(match["repo"], int(match["number"]))] += 1
    return calls


def merged_twice(log: Iterable[dict[str, Any]], committed_faults: frozenset[int] = frozenset()) -> list[str]:
    return [
        f"{repo}#{number}: {count} merge calls took effect"
        for (repo, number), count in sorted(effective_merge_calls(log, committed_faults).items())
        if count > 1
    ]


def most_live_staging(log: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Per repository, the most ``merge-bot/*`` branches that existed at once (from the push log)."""
    live: defaultdict[str, set[str]] = defaultdict(set)
    most: defaultdict[str, int] = defaultdict(int)
    for event in log:
        if event["kind"] != "push" or not event["ref"].startswith(STAGING_PREFIX):
            continue
        refs = live[event["repo"]]
        if event["after"] == ZERO_SHA:
            refs.discard(event["ref"])
        else:
            refs.add(event["ref"])
        most[event["repo"]] = max(most[event["repo"]], len(refs))
    return dict(most)


def _attempt_number(ref: str) -> tuple[int, str]:
    """``refs/heads/merge-bot/<base>/<attempt>`` → (attempt id, ref): staging refs in the order attempts were made."""
    tail = ref.rsplit("/", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, ref)


def overlapping_attempts(
    log: Iterable[dict[str, Any]],
    *,
    most: int = 1,
    reach: Mapping[tuple[str, str], frozenset[str]] | None = None,
    retried: Mapping[int, int] | None = None,
    branch: str = "main",
) -> list[str]:
    """The active attempts of a train form one chain from the base tip, as the forge shows it: per repository at most
    ``most`` candidates on live ``merge-bot/*`` branches at once that are not the base tip itself (1 for a serial
    queue: never two attempts under test at once; a landed one may still be there until its bookkeeping, as the next
    one goes under CI first). With ``reach`` ((repo, SHA) → the commits reachable from it, itself included),
    whenever a candidate is pushed the live candidates, in chain order (by what they reach: a chain's candidates
    reach ever more), each sit strictly on top of the one before, and the first one is on top of the base tip or
    already in it (landed, its bookkeeping pending). The chain order is not the order attempts were made: a re-test
    (``retried``: attempt id → the attempt it re-tests, the number in a staging ref's name) takes the place of the
    red attempt, its fresh ref holding the very same commit; while the old ref is live too (left by a crash until
    the reaper deletes it) both count as that one candidate."""
    violations: list[str] = []
    live: defaultdict[str, dict[str, str]] = defaultdict(dict)
    tip: dict[str, str] = {}
    base = f"refs/heads/{branch}"
    for event in log:
        if event["kind"] != "push":
            continue
        repo, ref, after = event["repo"], event["ref"], event["after"]
        if ref == base:
            tip[repo] = after
            continue
        if not ref.startswith(STAGING_PREFIX):
            continue
        refs = live[repo]
        if after == ZERO_SHA:
            refs.pop(ref, None)
            continue
        refs[ref] = after
        where = f"{repo} push #{event['seq']} of {ref.removeprefix(STAGING_PREFIX)}"
        current = _without_retested(refs, retried or {}, where, violations)
        # A candidate already in the base (landed, its bookkeeping pending: the next one goes under CI first)
        # is no longer under test.
        under_test = [name for name, sha in current.items() if sha != tip.get(repo)]
        if len(under_test) > most:
            violations.append(f"{where}: {len(under_test)} staging branches live at once")
        if reach is None:
            continue
        size = {name: len(reach.get((repo, sha), frozenset())) for name, sha in current.items()}
        chain = [(name.removeprefix(STAGING_PREFIX), current[name]) for name in sorted(current, key=size.__getitem__)]
        first_ref, first = chain[0]
        under = tip.get(repo)
        on_tip = under is None or under in reach.get((repo, first), frozenset())
        if not on_tip and first not in reach.get((repo, under or ""), frozenset()):
            violations.append(f"{where}: {first_ref} ({first[:10]}) is neither on the base tip nor in it")
        for (_, lower), (upper_ref, upper) in itertools.pairwise(chain):
            if upper == lower or lower not in reach.get((repo, upper), frozenset()):
                violations.append(f"{where}: {upper_ref} ({upper[:10]}) does not sit on {lower[:10]}")
    return list(dict.fromkeys(violations))


def _without_retested(
    refs: Mapping[str, str], retried: Mapping[int, int], where: str, violations: list[str]
) -> dict[str, str]:
    """The live staging refs less those of attempts a live re-test replaced (each must hold the re-test's
    very commit: a violation otherwise)."""
    number = {ref: _attempt_number(ref)[0] for ref in refs}
    ref_of = {attempt: ref for ref, attempt in number.items()}
    replaced: set[str] = set()
    for ref, attempt in number.items():
        older = retried.get(attempt)
        while older is not None:
            if older in ref_of:
                replaced.add(ref_of[older])
                if refs[ref_of[older]] != refs[ref]:
                    violations.append(f"{where}: re-test {attempt} is not the commit of attempt {older}")
            older = retried.get(older)
    return {ref: sha for ref, sha in refs.items() if ref not in replaced}


@dataclass(frozen=True)
class AttemptRow:
    """What the chain invariant reads of an ``attempts`` row (and its ``attempt_entries``)."""

    id: int
    train_id: int
    parent_id: int | None
    base_sha: str
    candidate_sha: str | None
    state: str
    entry_ids: tuple[int, ...] = ()
    retry_of: int | None = None  # the red attempt this one re-tests (the very same commit, on a fresh ref)


def _candidate(row: AttemptRow, attempts: Mapping[int, AttemptRow]) -> str | None:
    """The attempt's candidate; a re-test not rebuilt yet (recorded, then crashed or still building) is the
    commit of the attempt it re-tests: the same base and committer date make the very same commit."""
    if row.candidate_sha is None and row.retry_of is not None and row.retry_of in attempts:
        return _candidate(attempts[row.retry_of], attempts)
    return row.candidate_sha


def broken_chains(
    samples: Iterable[Sequence[AttemptRow]], attempts: Mapping[int, AttemptRow], base_history: set[str]
) -> list[str]:
    """The active attempts of a train form one chain from the base tip, judged on ``samples`` (each the active
    attempts as one consistent read of the database saw them): one first attempt per train, each other one
    the child (``parent_id``) of the one before and built on its candidate (``base_sha``); the first built on
    a SHA the base held (``base_history``), or, when its parent ended (landed and being finished, or red and
    this one about to be rebuilt), on that parent's candidate (``attempts``: every attempt row, by id, as it
    ended). A re-test not rebuilt yet counts with the candidate it re-tests (``_candidate``): what was built on
    the red attempt is built on it. And no entry in two active attempts at once."""
    violations: list[str] = []
    for sample in samples:
        trains: defaultdict[int, list[AttemptRow]] = defaultdict(list)
        for row in sample:
            trains[row.train_id].append(row)
        carried = Counter(entry_id for row in sample for entry_id in row.entry_ids)
        violations += [
            f"entry {entry_id} in {count} active attempts at once" for entry_id, count in carried.items() if count > 1
        ]
        for train, rows in trains.items():
            ids = {row.id for row in rows}
            roots = [row for row in rows if row.parent_id not in ids]
            children: defaultdict[int, list[AttemptRow]] = defaultdict(list)
            for row in rows:
                if row.parent_id in ids:
                    children[row.parent_id].append(row)
            where = f"train {train}, active attempts {sorted(ids)}"
            if len(roots) != 1:
                violations.append(f"{where}: {len(roots)} chains")
                continue
            root = roots[0]
            if root.parent_id is None:
                if root.base_sha not in base_history:
                    violations.append(f"{where}: attempt {root.id} built on {root.base_sha[:10]}, never the base")
            else:
                parent = attempts.get(root.parent_id)
                if parent is None or root.base_sha != _candidate(parent, attempts):
                    violations.append(f"{where}: attempt {root.id} not built on its parent {root.parent_id}")
            chain, here = [root], root
            while children[here.id]:
                if len(children[here.id]) > 1:
                    violations.append(f"{where}: attempt {here.id} has {len(children[here.id])} children")
                child = children[here.id][0]
                candidate = _candidate(here, attempts)
                if candidate is None or child.base_sha != candidate:
                    violations.append(f"{where}: attempt {child.id} not built on the candidate of {here.id}")
                chain.append(child)
                here = child
            if len(chain) != len(rows):
                violations.append(f"{where}: not one chain")
    return list(dict.fromkeys(violations))


def database_disagrees(
    entries: Iterable[Any], pulls: dict[tuple[str, int], dict[str, Any]], main_history: dict[str, set[str]]
) -> list[str]:
    """The database against the forge: at most one merged entry per PR; a merged entry's SHA is in the base's
    history and the forge shows the PR merged; a PR the forge shows merged has a merged entry."""
    violations: list[str] = []
    merged: Counter[tuple[str, int]] = Counter()
    for row in entries:
        key = (f"{row.owner}/{row.repo_name}", int(row.number))
        if row.state != "merged":
            continue
        merged[key] += 1
        if row.merged_sha not in main_history.get(key[0], set()):
            violations.append(f"{key[0]}#{key[1]}: merged as {row.merged_sha}, which main never pointed to")
        if not pulls.get(key, {}).get("merged"):
            violations.append(f"{key[0]}#{key[1]}: merged in the database, not on the forge")
    violations += [f"{repo}#{number}: {count} merged entries" for (repo, number), count in merged.items() if count > 1]
    for key, pull in pulls.items():
        if pull.get("merged") and not merged[key]:
            violations.append(f"{key[0]}#{key[1]}: merged on the forge, no merged entry")
    return violations


def forge_writes(log: Iterable[dict[str, Any]], user: str, start: float, end: float) -> list[str]:
    """The writes ``user`` made to the forge (API calls other than GET, git pushes) between two instants."""
    found = []
    for event in log:
        if not start < event["time"] < end or event.get("user") != user:
            continue
        if event["kind"] == "api" and event["method"] not in ("GET", "HEAD"):
            found.append(f"{event['method']} {event['path']} at +{event['time'] - start:.2f} s")
        elif event["kind"] == "git" and event["path"].endswith("/git-receive-pack"):
            found.append(f"git push {event['path']} at +{event['time'] - start:.2f} s")
    return found
