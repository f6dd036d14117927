"""The promises, checked on what the forge saw: the simulator's log (pushes, API calls, CI runs) and the
database the bots share. Pure functions of that evidence; each returns a list of violations (empty: kept).

* The base holds only tested SHAs: every move of ``refs/heads/main`` after the scenario was set up went,
  by a fast-forward, to a SHA on which CI had reported ``success`` for the required context *before* the
  push — and to each SHA at most once.
* No PR merged twice: at most one merge call per PR took effect.
* Never two attempts on one train at once: at most one live ``merge-bot/*`` branch per repository.
* Every entry final, nothing active, and the forge agrees with the database about what merged.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

ZERO_SHA = "0" * 40
MERGE_CALL = re.compile(r"^/api/v1/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<number>\d+)/merge$")
STAGING_PREFIX = "refs/heads/merge-bot/"


def base_moves(log: Iterable[dict[str, Any]], since: int, branch: str = "main") -> list[dict[str, Any]]:
    ref = f"refs/heads/{branch}"
    return [e for e in log if e["kind"] == "push" and e["ref"] == ref and e["seq"] > since]


def untested_base_moves(
    log: list[dict[str, Any]],
    since: int,
    *,
    context: str = "ci/test",
    branch: str = "main",
    pusher: str | None = None,
) -> list[str]:
    """Moves of the base to a SHA without a prior green run of ``context`` on it, non-fast-forward moves
    (the push's old value is not where the base was), deletions, and second moves to the same SHA.
    With ``pusher``, only that user's moves are judged: the others (people pushing to the base) set the tip."""
    violations: list[str] = []
    green: dict[tuple[str, str], int] = {}  # (repo, sha) → seq of the first success
    tip: dict[str, str] = {}
    seen: Counter[tuple[str, str]] = Counter()
    ref = f"refs/heads/{branch}"
    for event in log:
        if event["kind"] == "ci" and event.get("phase") == "done" and event.get("context") == context:
            if event.get("state") == "success":
                green.setdefault((event["repo"], event["sha"]), event["seq"])
            continue
        if event["kind"] != "push" or event["ref"] != ref:
            continue
        repo, before, after = event["repo"], event["before"], event["after"]
        if event["seq"] <= since or (pusher is not None and event.get("pusher") != pusher):
            tip[repo] = after
            continue
        where = f"{repo} push #{event['seq']} {before[:10]}→{after[:10]}"
        if after == ZERO_SHA:
            violations.append(f"{where}: the base was deleted")
            continue
        if repo in tip and before != tip[repo]:
            violations.append(f"{where}: not from the tip {tip[repo][:10]}")
        tip[repo] = after
        if (repo, after) not in green:
            violations.append(f"{where}: no {context} success on {after[:10]} before the push")
        seen[(repo, after)] += 1
        if seen[(repo, after)] == 2:
            violations.append(f"{where}: the base moved to {after[:10]} a second time")
    return violations


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


def overlapping_attempts(log: Iterable[dict[str, Any]]) -> list[str]:
    return [
        f"{repo}: {count} staging branches live at once" for repo, count in most_live_staging(log).items() if count > 1
    ]


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
