"""``/metrics``: the queue's figures read from the database at scrape time, and the webhook answers counted
live by the process (rejections included, which leave no row behind)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from tests.clocks import StillClock
from tests.test_webhook import PR_OPENED, headers_for
from tests.web.conftest import NOW, Client, Seeded, web_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


TRAIN = {"repository": "acme/app", "branch": "main"}


async def test_queue_figures_come_from_the_database(client: Client, seeded: Seeded) -> None:
    samples = await scrape(client)
    assert value(samples, "merge_bot_queue_depth", **TRAIN, state="queued") == 2
    assert value(samples, "merge_bot_queue_depth", **TRAIN, state="testing") == 1
    assert value(samples, "merge_bot_queue_depth", **TRAIN, state="waiting") == 1
    assert value(samples, "merge_bot_queue_oldest_seconds", **TRAIN) == 20 * 60
    assert value(samples, "merge_bot_merges_total", **TRAIN) == 1
    assert value(samples, "merge_bot_entries_finished_total", **TRAIN, outcome="failed", reason="checks_failed") == 1
    assert value(samples, "merge_bot_entries_finished_total", **TRAIN, outcome="cancelled", reason="cancelled_by_user")
    assert value(samples, "merge_bot_attempts_total", **TRAIN, state="done", reason="merged") == 1
    assert value(samples, "merge_bot_attempts_total", **TRAIN, state="failed", reason="checks_failed") == 1
    assert value(samples, "merge_bot_attempts_active", **TRAIN, state="testing") == 1
    # Time in queue: #1 waited 10 minutes from /merge to merged.
    merged = {**TRAIN, "outcome": "merged"}
    assert value(samples, "merge_bot_time_in_queue_seconds_count", **merged) == 1
    assert value(samples, "merge_bot_time_in_queue_seconds_sum", **merged) == 600
    assert value(samples, "merge_bot_time_in_queue_seconds_bucket", **merged, le="300.0") == 0
    assert value(samples, "merge_bot_time_in_queue_seconds_bucket", **merged, le="600.0") == 1
    # CI time: from the candidate's push to the verdict, 4 minutes each way.
    assert value(samples, "merge_bot_ci_seconds_sum", **TRAIN, result="success") == 240
    assert value(samples, "merge_bot_ci_seconds_count", **TRAIN, result="failure") == 1
    # Stored deliveries, and how long the oldest pending one has waited.
    assert value(samples, "merge_bot_webhook_deliveries", event="issue_comment", state="pending") == 1
    assert value(samples, "merge_bot_webhook_deliveries", event="status", state="done") == 1
    assert value(samples, "merge_bot_webhook_backlog_seconds") == 120
    assert value(samples, "merge_bot_gate_locks_held") == 0
    assert value(samples, "merge_bot_queue_running") == 0  # no forge token in these settings
    assert ("process_cpu_seconds_total", frozenset()) in samples


async def test_webhook_answers_are_counted_by_outcome(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = web_settings(tmp_path, MERGE_BOT_REPOS="example/example")
    client = await aiohttp_client(create_app(settings, engine=engine, clock=StillClock(NOW)))
    secret = settings.webhook_secret.get_secret_value()
    headers = headers_for(secret, PR_OPENED)
    assert (await client.post("/webhook", data=PR_OPENED, headers=headers)).status == 202
    assert (await client.post("/webhook", data=PR_OPENED, headers=headers)).status == 200  # same delivery again
    assert (await client.post("/webhook", data=PR_OPENED)).status == 401
    assert (await client.post("/webhook", data=b"[", headers=headers_for(secret, b"["))).status == 400
    samples = await scrape(client)
    assert value(samples, "merge_bot_webhook_requests_total", code="202", outcome="accepted") == 1
    assert value(samples, "merge_bot_webhook_requests_total", code="200", outcome="duplicate") == 1
    assert value(samples, "merge_bot_webhook_requests_total", code="401", outcome="rejected") == 1
    assert value(samples, "merge_bot_webhook_requests_total", code="400", outcome="rejected") == 1
    assert value(samples, "merge_bot_webhook_seconds_count") == 4
    assert value(samples, "merge_bot_webhook_deliveries", event="pull_request", state="pending") == 1
