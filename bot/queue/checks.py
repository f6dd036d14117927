"""Required checks, evaluated on one SHA's statuses. Pure.

Promise 1 of the design: the base moves only to a SHA whose required statuses were all ``success``. So
only ``success`` is green; ``failure`` and ``error`` are red, and so are ``warning`` and ``skipped`` for a
*required* context (they are not success, and waiting would not change them); ``pending`` or a context that
has not reported is pending — never success. The bot's own context and its mirrors never count.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from bot.queue.model import RequiredChecks, StatusView

RED_STATES = frozenset({"failure", "error", "warning", "skipped"})


class Verdict(enum.StrEnum):
    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    failed: StatusView | None = None
    missing: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


def latest_per_context(statuses: Iterable[StatusView]) -> dict[str, StatusView]:
    """Statuses newest first (as Gitea lists them) → the latest one per context."""
    latest: dict[str, StatusView] = {}
    for status in statuses:
        latest.setdefault(status.context, status)
    return latest


def is_own(context: str, own_context: str) -> bool:
    return context == own_context or context.startswith(own_context + "/")


def evaluate(required: RequiredChecks, statuses: Iterable[StatusView], own_context: str = "merge-bot") -> CheckResult:
    latest = {
        context: status for context, status in latest_per_context(statuses).items() if not is_own(context, own_context)
    }
    if required.patterns is None:
        relevant = list(latest.values())
        missing: tuple[str, ...] = () if relevant else ("(any status)",)
    else:
        relevant = [
            status for status in latest.values() if any(fnmatchcase(status.context, p) for p in required.patterns)
        ]
        missing = tuple(
            pattern
            for pattern in required.patterns
            if not any(fnmatchcase(status.context, pattern) for status in relevant)
        )
    failed = next((status for status in sorted(relevant, key=lambda s: s.context) if status.state in RED_STATES), None)
    if failed is not None:
        return CheckResult(Verdict.FAILURE, failed=failed, missing=missing)
    pending = tuple(sorted(status.context for status in relevant if status.state != "success"))
    if missing or pending:
        return CheckResult(Verdict.PENDING, missing=missing, pending=pending)
    return CheckResult(Verdict.SUCCESS)
