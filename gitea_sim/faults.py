"""Fault injection and the call/delivery log (the `/_sim/` surface; no Gitea counterpart)."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

HTTP_WHEN = ("before", "after")
WEBHOOK_ACTIONS = ("drop", "duplicate", "redeliver", "delay")
CI_ACTIONS = ("silent", "pending_forever", "fail", "error")


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    """One rule. `count` < 0 means "until removed"."""

    id: int
    kind: str  # http | webhook | ci | merge_check
    count: int = 1
    # http
    method: str = "*"
    path: str = "*"
    status: int = 500
    message: str = "injected fault"
    when: str = "before"
    latency_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # added to the fault's answer, e.g. Retry-After
    # webhook
    action: str = ""
    event: str = "*"
    delay_s: float = 0.0
    # ci
    repo: str = "*"
    context: str = "*"
    hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches_http(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and _path_match(self.path, path)

    def consume(self) -> None:
        self.hits += 1
        if self.count > 0:
            self.count -= 1


def _path_match(pattern: str, path: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], path) is not None
    return fnmatchcase(path, pattern)


@dataclass
class Faults:
    rules: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, spec: dict[str, Any]) -> Fault:
        kind = spec.get("kind", "http")
        allowed = {f for f in Fault.__dataclass_fields__ if f not in ("id", "hits")}
        unknown = set(spec) - allowed
        if unknown:
            raise FaultSpecError(f"unknown fault fields: {sorted(unknown)}")
        try:
            fault = Fault(id=next(self._ids), **{k: v for k, v in spec.items() if k != "kind"}, kind=kind)
        except TypeError as exc:
            raise FaultSpecError(str(exc)) from None
        if kind == "http" and fault.when not in HTTP_WHEN:
            raise FaultSpecError(f"when must be one of {HTTP_WHEN}")
        if kind == "webhook" and fault.action not in WEBHOOK_ACTIONS:
            raise FaultSpecError(f"webhook action must be one of {WEBHOOK_ACTIONS}")
        if kind == "ci" and fault.action not in CI_ACTIONS:
            raise FaultSpecError(f"ci action must be one of {CI_ACTIONS}")
        if kind not in ("http", "webhook", "ci", "merge_check"):
            raise FaultSpecError("kind must be http, webhook, ci or merge_check")
        self.rules.append(fault)
        return fault

    def remove(self, fid: int) -> bool:
        before = len(self.rules)
        self.rules = [r for r in self.rules if r.id != fid]
        return len(self.rules) != before

    def clear(self) -> None:
        self.rules.clear()

    def _take(self, kind: str, pred: Any) -> Fault | None:
        for rule in self.rules:
            if rule.kind == kind and rule.count != 0 and pred(rule):
                rule.consume()
                return rule
        return None

    def take_http(self, method: str, path: str) -> Fault | None:
        return self._take("http", lambda r: r.matches_http(method, path))

    def take_webhook(self, event_type: str) -> Fault | None:
        return self._take("webhook", lambda r: r.event in ("*", event_type))

    def take_ci(self, repo: str, context: str) -> Fault | None:
        return self._take("ci", lambda r: fnmatchcase(repo, r.repo) and fnmatchcase(context, r.context))

    def merge_check_delay(self) -> float:
        rule = self._take("merge_check", lambda r: True)
        return rule.delay_s if rule else 0.0


@dataclass
class EventLog:
    """Every API call and webhook delivery, in order, for assertions (`GET /_sim/log`)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, kind: str, **data: Any) -> dict[str, Any]:
        entry = {"seq": next(self._seq), "kind": kind, "time": time.time(), **data}
        self.entries.append(entry)
        return entry

    def query(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["seq"] > since and (kind is None or e["kind"] == kind)]

    def clear(self) -> None:
        self.entries.clear()
