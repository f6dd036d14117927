"""Checks on the simulator's event log (``GET /_sim/log``) that the test suites and the benchmarks share.

Pure functions of the log's entries (``push`` and ``ci`` events, as :mod:`gitea_sim.core` and
:mod:`gitea_sim.ci` record them); each check returns a list of violations, empty when the promise was kept.

* The base holds only tested SHAs (:func:`untested_base_moves`): every move of the base branch after ``since``
  went, by a fast-forward, to a SHA on which CI had reported ``success`` for the required context *before*
  the push, and to each SHA at most once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from .gitrepo import ZERO_SHA


def base_moves(log: Iterable[dict[str, Any]], since: int, branch: str = "main") -> list[dict[str, Any]]:
    """The pushes to ``branch`` logged after sequence number ``since``, in order."""
    ref = f"refs/heads/{branch}"
    return [e for e in log if e["kind"] == "push" and e["ref"] == ref and e["seq"] > since]


def untested_base_moves(
    log: Iterable[dict[str, Any]],
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
