"""``GET /metrics``: Prometheus metrics, read from the database at scrape time wherever the database knows.

The queue's state lives in PostgreSQL, shared by every replica, so queue depth, time in queue, CI time,
attempts and entries by outcome and reason, merges, the speculative chain (candidates under test, window,
attempts per push, candidate runs, bisections, optimistic landings), flaky failures per check context and
kind, and stored webhook deliveries are counted there when Prometheus asks (one read-only snapshot, a few
aggregate queries): every replica reports the same cluster figures, and they survive restarts. What only a
process sees is counted live in that process: webhook requests by answer (rejections included, which store
nothing), the reconciler's heals and the gate-lock refusals, plus prometheus-client's process metrics.
Labels: ``repository`` (owner/name) and ``branch``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import String, case, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot import __version__
from bot.db.models import Attempt, DeliveryState, Entry, EntryEvent, Repository, Train, WebhookDelivery
from bot.gate.locks import NAMESPACE
from bot.queue.model import ACTIVE_ATTEMPT_STATES, ACTIVE_ENTRY_STATES, FINAL_ENTRY_STATES, AttemptState, Reason
from bot.queue.policy import QueuePolicy
from bot.queue_service import QueueService
from bot.web import views
from bot.web.keys import CLOCK, ENGINE, SETTINGS

QUEUE_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
CI_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PUSH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
FINAL_ATTEMPT_STATES = (AttemptState.DONE.value, AttemptState.FAILED.value, AttemptState.ABANDONED.value)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Scraped:
    """A collector holding the families read from the database for the scrape in progress."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class Live:
    """This process's own counters, registered on the app's registry (no global registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.webhook_requests = Counter(
            "merge_bot_webhook_requests",
            "Webhook requests answered by this process, by HTTP status and outcome "
            "(accepted, duplicate, ignored, rejected)",
            ["code", "outcome"],
            registry=registry,
        )
        self.webhook_seconds = Histogram(
            "merge_bot_webhook_seconds",
            "Time to answer a webhook request (stored deliveries: after their row committed)",
            buckets=WEBHOOK_BUCKETS,
            registry=registry,
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.live = Live(self.registry)
        self.scraped = Scraped()
        self.registry.register(self.scraped)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.lock = asyncio.Lock()


METRICS = web.AppKey("metrics", Metrics)
QUEUE = web.AppKey("queue_service", QueueService)
routes = web.RouteTableDef()


def setup(app: web.Application) -> None:
    app[METRICS] = Metrics()
    app.add_routes(routes)
    app.middlewares.append(observe_webhooks)


@web.middleware
async def observe_webhooks(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != "/webhook":
        return await handler(request)
    live = request.app[METRICS].live
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        live.webhook_requests.labels(code=str(exc.status), outcome="rejected").inc()
        raise
    live.webhook_seconds.observe(time.perf_counter() - started)
    live.webhook_requests.labels(code=str(response.status), outcome=_outcome(response)).inc()
    return response


def _outcome(response: web.StreamResponse) -> str:
    """The ``status`` word of the webhook handler's JSON answer (accepted, duplicate, ignored, rejected)."""
    body = getattr(response, "body", None)
    if isinstance(body, bytes) and len(body) < 4096:
        try:
            word = json.loads(body).get("status")
        except (ValueError, AttributeError):
            word = None
        if word in ("accepted", "duplicate", "ignored", "rejected"):
            return str(word)
    return "rejected" if response.status >= 400 else "other"


@routes.get("/metrics")
async def scrape(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    links = views.links(request.app[SETTINGS])
    families = await database_families(request.app[ENGINE], request.app[CLOCK].now(), links)
    families.extend(process_families(request.app.get(QUEUE)))
    async with metrics.lock:  # one scrape at a time fills the collector
        metrics.scraped.families = families
        body = generate_latest(metrics.registry)
        metrics.scraped.families = []
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-cache"})


# -- what a process knows -------------------------------------------------------------------------------


def process_families(service: QueueService | None) -> list[Metric]:
    info = GaugeMetricFamily("merge_bot_build_info", "The running merge-bot", labels=["version"])
    info.add_metric([__version__], 1)
    families: list[Metric] = [info]
    queue_up = GaugeMetricFamily(
        "merge_bot_queue_running", "1 when this process runs the queue (a forge token is configured)"
    )
    queue_up.add_metric([], 1 if service is not None else 0)
    families.append(queue_up)
    if service is None:
        return families
    heals = CounterMetricFamily(
        "merge_bot_reconciler_heals",
        "What this process's reconciler found out of line with the forge and fixed, by kind",
        labels=["kind"],
    )
    if service.reconciler is not None:
        total = service.reconciler.total
        heals.add_metric(["pull_changed"], total.pulls_changed)
        heals.add_metric(["pull_closed"], total.pulls_closed)
        heals.add_metric(["command_found"], total.commands_found)
    families.append(heals)
    if service.runner is not None:
        counter = CounterMetricFamily(
            "merge_bot_gate_lock_busy", "Times this process found a train's gate lock held by another session"
        )
        counter.add_metric([], service.runner.lock_busy)
        families.append(counter)
    return families


# -- what the database knows ----------------------------------------------------------------------------


async def database_families(engine: AsyncEngine, now: datetime, links: views.Links) -> list[Metric]:
    async with views.reading(engine) as session:
        names = await _train_names(session)
        families = [
            *await _depth(session, names, now),
            await _time_in_queue(session, names),
            await _ci_time(session, names),
            *await _attempts(session, names),
            *await _chain(session, names, links.policy),
            *await _landings(session, names),
            *await _entries(session, names),
            *await _flaky(session, names),
            *await _deliveries(session, now),
            await _gate_locks(session),
        ]
    return families


async def _train_names(session: AsyncSession) -> dict[int, list[str]]:
    query = select(Train.id, Repository.owner, Repository.name, Train.branch).join(
        Repository, Repository.id == Train.repository_id
    )
    return {train_id: [f"{owner}/{name}", branch] for train_id, owner, name, branch in await session.execute(query)}


def _labels(names: dict[int, list[str]], train_id: int, *more: str) -> list[str]:
    return [*names.get(train_id, ["", ""]), *more]


async def _depth(session: AsyncSession, names: dict[int, list[str]], now: datetime) -> list[Metric]:
    depth = GaugeMetricFamily(
        "merge_bot_queue_depth",
        "Active entries per train: waiting (dependencies), queued, testing",
        labels=["repository", "branch", "state"],
    )
    oldest = GaugeMetricFamily(
        "merge_bot_queue_oldest_seconds",
        "Age of the train's oldest active entry (since it was queued)",
        labels=["repository", "branch"],
    )
    active = [state.value for state in ACTIVE_ENTRY_STATES]
    counts: dict[tuple[int, str], int] = {(train_id, state): 0 for train_id in names for state in sorted(active)}
    rows = await session.execute(
        select(Entry.train_id, Entry.state, func.count(), func.min(Entry.queued_at))
        .where(Entry.state.in_(active))
        .group_by(Entry.train_id, Entry.state)
    )
    first: dict[int, datetime] = {}
    for train_id, state, count, queued_at in rows:
        counts[(train_id, state)] = count
        first[train_id] = min(queued_at, first.get(train_id, queued_at))
    for (train_id, state), count in sorted(counts.items()):
        depth.add_metric(_labels(names, train_id, state), count)
    for train_id, queued_at in sorted(first.items()):
        oldest.add_metric(_labels(names, train_id), max(0.0, (now - queued_at).total_seconds()))
    return [depth, oldest]


def _bucket_columns(seconds: Any, buckets: Sequence[float]) -> list[Any]:
    return [func.count().filter(seconds <= bound) for bound in buckets] + [
        func.count(),
        func.coalesce(func.sum(seconds), 0.0),
    ]


def _histogram(family: HistogramMetricFamily, labels: list[str], row: Sequence[Any], buckets: Sequence[float]) -> None:
    counts = list(row[: len(buckets)])
    total, seconds = row[len(buckets)], row[len(buckets) + 1]
    pairs = [(str(float(bound)), float(count)) for bound, count in zip(buckets, counts, strict=True)]
    family.add_metric(labels, buckets=[*pairs, ("+Inf", float(total))], sum_value=float(seconds))


async def _time_in_queue(session: AsyncSession, names: dict[int, list[str]]) -> Metric:
    family = HistogramMetricFamily(
        "merge_bot_time_in_queue_seconds",
        "From queued to a final state, per outcome (merged, failed, cancelled)",
        labels=["repository", "branch", "outcome"],
    )
    seconds = func.extract("epoch", Entry.finished_at - Entry.queued_at)
    rows = await session.execute(
        select(Entry.train_id, Entry.state, *_bucket_columns(seconds, QUEUE_BUCKETS))
        .where(Entry.state.in_(sorted(FINAL_ENTRY_STATES)), Entry.finished_at.is_not(None))
        .group_by(Entry.train_id, Entry.state)
        .order_by(Entry.train_id, Entry.state)
    )
    for train_id, state, *row in rows:
        _histogram(family, _labels(names, train_id, state), row, QUEUE_BUCKETS)
    return family


async def _ci_time(session: AsyncSession, names: dict[int, list[str]]) -> Metric:
    family = HistogramMetricFamily(
        "merge_bot_ci_seconds",
        "From a candidate's push to the verdict on it (success: until it landed), per result "
        "(success, failure, timeout)",
        labels=["repository", "branch", "result"],
    )
    built = (
        select(EntryEvent.attempt_id.label("attempt_id"), func.min(EntryEvent.at).label("at"))
        .where(EntryEvent.kind == "candidate_built", EntryEvent.attempt_id.is_not(None))
        .group_by(EntryEvent.attempt_id)
        .subquery()
    )
    result = case(
        (Attempt.state == AttemptState.DONE.value, "success"),
        (Attempt.reason == Reason.CI_TIMEOUT.value, "timeout"),
        else_="failure",
    ).label("result")
    seconds = func.extract("epoch", Attempt.finished_at - built.c.at)
    rows = await session.execute(
        select(Attempt.train_id, result, *_bucket_columns(seconds, CI_BUCKETS))
        .join(built, built.c.attempt_id == Attempt.id)
        .where(
            Attempt.finished_at.is_not(None),
            (Attempt.state == AttemptState.DONE.value)
            | Attempt.reason.in_([Reason.CHECKS_FAILED.value, Reason.CI_TIMEOUT.value]),
        )
        .group_by(Attempt.train_id, result)
        .order_by(Attempt.train_id, result)
    )
    for train_id, outcome, *row in rows:
        _histogram(family, _labels(names, train_id, outcome), row, CI_BUCKETS)
    return family


async def _attempts(session: AsyncSession, names: dict[int, list[str]]) -> list[Metric]:
    finished = CounterMetricFamily(
        "merge_bot_attempts",
        "Finished attempts (candidates under test) by final state (done, failed, abandoned) and reason",
        labels=["repository", "branch", "state", "reason"],
    )
    active = GaugeMetricFamily(
        "merge_bot_attempts_active",
        "Attempts in progress by state (building, testing, passed, merging)",
        labels=["repository", "branch", "state"],
    )
    rows = await session.execute(
        select(Attempt.train_id, Attempt.state, func.coalesce(Attempt.reason, ""), func.count())
        .group_by(Attempt.train_id, Attempt.state, Attempt.reason)
        .order_by(Attempt.train_id, Attempt.state, Attempt.reason)
    )
    running = {state.value for state in ACTIVE_ATTEMPT_STATES}
    for train_id, state, reason, count in rows:
        if state in running:
            active.add_metric(_labels(names, train_id, state), count)
        elif state in FINAL_ATTEMPT_STATES:
            finished.add_metric(_labels(names, train_id, state, reason or "merged"), count)
    return [finished, active]


async def _chain(session: AsyncSession, names: dict[int, list[str]], policy: QueuePolicy) -> list[Metric]:
    """The speculative chain of each train: candidates under CI now, and how deep it may go."""
    under_test = GaugeMetricFamily(
        "merge_bot_candidates_under_test",
        "Active attempts whose candidate was pushed for CI (the chain's length now)",
        labels=["repository", "branch"],
    )
    window = GaugeMetricFamily(
        "merge_bot_window",
        "How deep the train's chain may speculate now (grows per landing, halves per failure; with adaptive, "
        "the depth chosen)",
        labels=["repository", "branch"],
    )
    ceiling = GaugeMetricFamily(
        "merge_bot_max_parallel", "The most the train's window may grow to", labels=["repository", "branch"]
    )
    runs = CounterMetricFamily(
        "merge_bot_candidate_runs",
        "Attempts that got a candidate pushed for CI, re-tests included (divided by merge_bot_merges_total: "
        "CI runs per merged PR)",
        labels=["repository", "branch"],
    )
    bisections = CounterMetricFamily(
        "merge_bot_bisections", "Red batches split into parts to find the PR at fault", labels=["repository", "branch"]
    )
    active = [state.value for state in ACTIVE_ATTEMPT_STATES]
    pushed = Attempt.candidate_sha.is_not(None) & Attempt.reason_detail["inherits"].astext.is_(None)
    trains = {train.id: train for train in (await session.execute(select(Train))).scalars()}
    rows = await session.execute(
        select(
            Train.id,
            func.count(Attempt.id).filter(pushed, Attempt.state.in_(active)),
            func.count(Attempt.id).filter(pushed),
            func.count(Attempt.id).filter(Attempt.reason == Reason.BISECTED.value),
        )
        .outerjoin(Attempt, Attempt.train_id == Train.id)
        .group_by(Train.id)
        .order_by(Train.id)
    )
    for train_id, testing, candidates, bisected in rows:
        labels = _labels(names, train_id)
        under_test.add_metric(labels, testing)
        window.add_metric(labels, views.window(policy, trains[train_id]))
        ceiling.add_metric(labels, policy.max_parallel)
        runs.add_metric(labels, candidates)
        bisections.add_metric(labels, bisected)
    return [under_test, window, ceiling, runs, bisections]


async def _landings(session: AsyncSession, names: dict[int, list[str]]) -> list[Metric]:
    """Pushes that moved a base, by how many attempts each landed; attempts landed optimistically."""
    per_push = HistogramMetricFamily(
        "merge_bot_attempts_per_push",
        "Attempts landed by one push of the base (a chain lands at once): _count is pushes, _sum attempts landed",
        labels=["repository", "branch"],
    )
    optimistic = CounterMetricFamily(
        "merge_bot_optimistic_landings",
        "Attempts landed although pending or red, because a green candidate built on them landed",
        labels=["repository", "branch"],
    )
    detail = Attempt.reason_detail
    push = func.coalesce(detail["push"].astext, Attempt.candidate_sha, func.cast(Attempt.id, String))
    pushes = (
        select(Attempt.train_id.label("train_id"), func.count().label("landed"))
        .where(Attempt.state == AttemptState.DONE.value)
        .group_by(Attempt.train_id, push)
        .subquery()
    )
    found = {
        train_id: row
        for train_id, *row in await session.execute(
            select(pushes.c.train_id, *_bucket_columns(pushes.c.landed, PUSH_BUCKETS)).group_by(pushes.c.train_id)
        )
    }
    empty = [0] * (len(PUSH_BUCKETS) + 2)
    for train_id in sorted(names):
        _histogram(per_push, _labels(names, train_id), found.get(train_id, empty), PUSH_BUCKETS)
    landed = await session.execute(
        select(Attempt.train_id, func.count())
        .where(Attempt.state == AttemptState.DONE.value, detail["optimistic"].astext == "true")
        .group_by(Attempt.train_id)
    )
    counts: dict[int, int] = {train_id: count for train_id, count in landed}
    for train_id in sorted(names):
        optimistic.add_metric(_labels(names, train_id), counts.get(train_id, 0))
    return [per_push, optimistic]


async def _entries(session: AsyncSession, names: dict[int, list[str]]) -> list[Metric]:
    outcomes = CounterMetricFamily(
        "merge_bot_entries_finished",
        "Entries that reached a final state, by outcome (merged, failed, cancelled) and reason",
        labels=["repository", "branch", "outcome", "reason"],
    )
    merges = CounterMetricFamily(
        "merge_bot_merges", "PRs the queue merged (their tested candidate landed)", labels=["repository", "branch"]
    )
    rows = await session.execute(
        select(Entry.train_id, Entry.state, func.coalesce(Entry.reason, ""), func.count())
        .where(Entry.state.in_(sorted(FINAL_ENTRY_STATES)))
        .group_by(Entry.train_id, Entry.state, Entry.reason)
        .order_by(Entry.train_id, Entry.state, Entry.reason)
    )
    merged: dict[int, int] = {train_id: 0 for train_id in names}
    for train_id, state, reason, count in rows:
        outcomes.add_metric(_labels(names, train_id, state, reason), count)
        if state == "merged":
            merged[train_id] = merged.get(train_id, 0) + count
    for train_id, count in sorted(merged.items()):
        merges.add_metric(_labels(names, train_id), count)
    return [outcomes, merges]


async def _flaky(session: AsyncSession, names: dict[int, list[str]]) -> list[Metric]:
    total = CounterMetricFamily(
        "merge_bot_flaky_failures",
        "Flaky failures by check context, every kind together (see merge_bot_flakes_total; context empty: a "
        "batch that timed out)",
        labels=["repository", "branch", "context"],
    )
    by_kind = CounterMetricFamily(
        "merge_bot_flakes",
        "Flaky failures by check context and kind: bisection (a red batch whose every part passed), retry (a PR "
        "red alone that passed when its candidate was tested again), optimistic (a red attempt landed by the "
        "green candidate behind it)",
        labels=["repository", "branch", "context", "kind"],
    )
    for train_id, contexts in sorted((await views.flake_counts(session)).items()):
        for context, kinds in sorted(contexts.items()):
            total.add_metric(_labels(names, train_id, context), sum(kinds.values()))
            for kind, count in sorted(kinds.items()):
                by_kind.add_metric(_labels(names, train_id, context, kind), count)
    return [total, by_kind]


async def _deliveries(session: AsyncSession, now: datetime) -> list[Metric]:
    stored = GaugeMetricFamily(
        "merge_bot_webhook_deliveries",
        "Webhook deliveries stored, by event and state (pending, done, parked); done ones are pruned "
        "after delivery_retention_days",
        labels=["event", "state"],
    )
    lag = GaugeMetricFamily(
        "merge_bot_webhook_backlog_seconds", "Age of the oldest delivery stored but not yet processed (0: none)"
    )
    rows = await session.execute(
        select(WebhookDelivery.event_type, WebhookDelivery.state, func.count())
        .group_by(WebhookDelivery.event_type, WebhookDelivery.state)
        .order_by(WebhookDelivery.event_type, WebhookDelivery.state)
    )
    for event, state, count in rows:
        stored.add_metric([event or "", state], count)
    oldest = await session.scalar(
        select(func.min(WebhookDelivery.received_at)).where(WebhookDelivery.state == DeliveryState.PENDING.value)
    )
    lag.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
    return [stored, lag]


async def _gate_locks(session: AsyncSession) -> Metric:
    family = GaugeMetricFamily(
        "merge_bot_gate_locks_held", "Trains whose gate lock is held right now, across every replica"
    )
    held = await session.scalar(
        text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :ns AND l.objsubid = 2 "
            "AND a.application_name LIKE 'merge-bot gate %'"
        ),
        {"ns": NAMESPACE},
    )
    family.add_metric([], float(held or 0))
    return family
