"""POST /webhook: closed by default, durable 202, duplicates absorbed, never a 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from bot.config import Settings
from bot.db.models import WebhookDelivery
from bot.forge.signature import sign
from tests.conftest import PAYLOADS

Client = TestClient[web.Request, web.Application]
PR_OPENED = (PAYLOADS / "gitea-pull_request-opened.json").read_bytes()


def headers_for(
    secret: str, body: bytes, event: str = "pull_request", event_type: str = "pull_request", delivery: str = ""
) -> dict[str, str]:
    digest = sign(secret.encode(), body)
    delivery = delivery or str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": event_type,
        "X-Gitea-Signature": digest,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Signature": digest,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-Hub-Signature-256": "sha256=" + digest,
    }


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(WebhookDelivery))).scalar_one())


@pytest.fixture
async def client(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], settings: Settings, engine: AsyncEngine
) -> Client:
    return await aiohttp_client(create_app(settings, engine=engine))


async def test_signed_delivery_is_stored_before_the_202(
    client: Client, engine: AsyncEngine, webhook_secret: str
) -> None:
    delivery = str(uuid.uuid4())
    response = await client.post(
        "/webhook", data=PR_OPENED, headers=headers_for(webhook_secret, PR_OPENED, delivery=delivery)
    )
    assert response.status == 202
    assert (await response.json()) == {"status": "accepted", "delivery": delivery}
    async with engine.connect() as connection:
        row = (await connection.execute(select(WebhookDelivery.__table__))).one()
    assert row.delivery_uuid == delivery
    assert row.event_type == "pull_request"
    assert row.action == "opened"
    assert row.repository == "example/example"
    assert row.state == "pending"
    assert row.payload == json.loads(PR_OPENED)


async def test_same_uuid_twice_is_one_row(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    headers = headers_for(webhook_secret, PR_OPENED)
    first = await client.post("/webhook", data=PR_OPENED, headers=headers)
    second = await client.post("/webhook", data=PR_OPENED, headers=headers)
    assert (first.status, second.status) == (202, 200)
    assert (await second.json())["status"] == "duplicate"
    assert await count_rows(engine) == 1


async def test_concurrent_duplicates_store_one_row(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    import asyncio

    headers = headers_for(webhook_secret, PR_OPENED)
    responses = await asyncio.gather(*(client.post("/webhook", data=PR_OPENED, headers=headers) for _ in range(20)))
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] * 19 + [202]
    assert await count_rows(engine) == 1


async def test_redelivery_under_a_new_uuid_is_a_new_row(
    client: Client, engine: AsyncEngine, webhook_secret: str
) -> None:
    # Gitea's "Redeliver" sends the same body under a new UUID; commands dedupe on the comment id later.
    for _ in range(2):
        response = await client.post("/webhook", data=PR_OPENED, headers=headers_for(webhook_secret, PR_OPENED))
        assert response.status == 202
    assert await count_rows(engine) == 2


@pytest.mark.parametrize(
    "signature_headers",
    [
        {},
        {"X-Gitea-Signature": "0" * 64},
        {"X-Gitea-Signature": ""},
        {"X-Hub-Signature-256": "sha256=" + "f" * 64},
        {"X-Forgejo-Signature": "not hex at all"},
    ],
)
async def test_bad_or_missing_signature_is_401_and_stores_nothing(
    client: Client, engine: AsyncEngine, signature_headers: dict[str, str]
) -> None:
    headers = {"X-Gitea-Delivery": str(uuid.uuid4()), "X-Gitea-Event-Type": "pull_request", **signature_headers}
    response = await client.post("/webhook", data=PR_OPENED, headers=headers)
    assert response.status == 401
    assert await count_rows(engine) == 0


async def test_signature_under_another_secret_is_401(client: Client, engine: AsyncEngine) -> None:
    response = await client.post("/webhook", data=PR_OPENED, headers=headers_for("another-secret", PR_OPENED))
    assert response.status == 401
    assert await count_rows(engine) == 0


async def test_oversized_body_is_413_before_the_signature_is_checked(
    client: Client, engine: AsyncEngine, settings: Settings, webhook_secret: str
) -> None:
    body = b'{"pad": "' + b"x" * settings.webhook_max_body_bytes + b'"}'
    # Unsigned on purpose: a 413 rather than a 401 shows the size is checked first, before any hashing.
    response = await client.post("/webhook", data=body, headers={"X-Gitea-Event-Type": "push"})
    assert response.status == 413
    signed = await client.post("/webhook", data=body, headers=headers_for(webhook_secret, body))
    assert signed.status == 413
    assert await count_rows(engine) == 0


async def test_oversized_chunked_body_without_length_is_413(
    client: Client, engine: AsyncEngine, settings: Settings
) -> None:
    async def chunks() -> Any:
        for _ in range(settings.webhook_max_body_bytes // 65536 + 2):
            yield b"x" * 65536

    response = await client.post("/webhook", data=chunks(), headers={"X-Gitea-Event-Type": "push"})
    assert response.status == 413
    assert await count_rows(engine) == 0


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1, 2, 3]", b'"string"', b"null"])
async def test_signed_invalid_json_is_400(
    client: Client, engine: AsyncEngine, webhook_secret: str, body: bytes
) -> None:
    response = await client.post("/webhook", data=body, headers=headers_for(webhook_secret, body))
    assert response.status == 400
    assert await count_rows(engine) == 0


async def test_unknown_event_is_2xx_and_dropped(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    body = (PAYLOADS / "gitea-pull_request-assigned.json").read_bytes()
    headers = headers_for(webhook_secret, body, event_type="pull_request_assign")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 200
    assert (await response.json())["status"] == "ignored"
    wiki = headers_for(webhook_secret, b"{}", event="wiki", event_type="wiki")
    assert (await client.post("/webhook", data=b"{}", headers=wiki)).status == 200
    assert await count_rows(engine) == 0


async def test_comment_on_plain_issue_is_dropped(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    body = (PAYLOADS / "gitea-issue_comment-on-issue-created.json").read_bytes()
    headers = headers_for(webhook_secret, body, event="issue_comment", event_type="issue_comment")
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status == 200
    assert await count_rows(engine) == 0


async def test_unmanaged_repository_is_dropped(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    body = (PAYLOADS / "gitea-push.json").read_bytes().replace(b"example/example", b"someone/else")
    response = await client.post("/webhook", data=body, headers=headers_for(webhook_secret, body, "push", "push"))
    assert response.status == 200
    assert (await response.json())["status"] == "ignored"
    assert await count_rows(engine) == 0


async def test_handled_event_with_a_broken_shape_is_400(
    client: Client, engine: AsyncEngine, webhook_secret: str
) -> None:
    payload = json.loads(PR_OPENED)
    del payload["pull_request"]["head"]
    body = json.dumps(payload).encode()
    response = await client.post("/webhook", data=body, headers=headers_for(webhook_secret, body))
    assert response.status == 400
    assert await count_rows(engine) == 0


async def test_missing_delivery_id_is_400(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    headers = {key: value for key, value in headers_for(webhook_secret, PR_OPENED).items() if "Delivery" not in key}
    response = await client.post("/webhook", data=PR_OPENED, headers=headers)
    assert response.status == 400
    assert await count_rows(engine) == 0


async def test_nul_character_is_refused_not_a_5xx(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    payload = json.loads(PR_OPENED)
    payload["pull_request"]["title"] = "evil\u0000title \ud800"
    body = json.dumps(payload).encode()
    response = await client.post("/webhook", data=body, headers=headers_for(webhook_secret, body))
    assert response.status == 400
    assert await count_rows(engine) == 0


@pytest.mark.parametrize("poison", ["NaN", "Infinity", "-Infinity", "1e999999", "1e-999999", "9" * 5000])
async def test_poisonous_numbers_are_refused_alone(
    client: Client, engine: AsyncEngine, webhook_secret: str, poison: str
) -> None:
    import asyncio

    # Valid for Python's json module, not for JSON or for PostgreSQL: a 400 for that delivery only, never a
    # 5xx for the whole group commit it shared with good deliveries.
    bad = PR_OPENED.replace(b'"number": 2,', f'"number": 2, "x": {poison},'.encode(), 1)
    assert bad != PR_OPENED
    requests = [client.post("/webhook", data=bad, headers=headers_for(webhook_secret, bad))]
    requests += [
        client.post("/webhook", data=PR_OPENED, headers=headers_for(webhook_secret, PR_OPENED)) for _ in range(5)
    ]
    responses = await asyncio.gather(*requests)
    assert responses[0].status == 400
    assert [r.status for r in responses[1:]] == [202] * 5
    assert await count_rows(engine) == 5


async def test_forgejo_headers_are_accepted(client: Client, engine: AsyncEngine, webhook_secret: str) -> None:
    delivery = str(uuid.uuid4())
    headers = {
        "X-Forgejo-Delivery": delivery,
        "X-Forgejo-Event": "pull_request",
        "X-Forgejo-Event-Type": "pull_request",
        "X-Forgejo-Signature": sign(webhook_secret.encode(), PR_OPENED),
    }
    response = await client.post("/webhook", data=PR_OPENED, headers=headers)
    assert response.status == 202
    assert await count_rows(engine) == 1


async def test_healthz_reports_the_database(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["database"] == "ok"


async def test_healthz_is_503_without_a_database(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], settings: Settings
) -> None:
    app = create_app(settings, database_url="postgresql://nobody@127.0.0.1:9/nowhere")
    client = await aiohttp_client(app)
    response = await client.get("/healthz")
    assert response.status == 503


# --- fuzzing: random bytes and mutated real payloads, signed or not, never give a 5xx ----------------

SAMPLES = sorted(PAYLOADS.glob("*.json"))
EVENT_TYPES = [
    "pull_request",
    "pull_request_sync",
    "pull_request_label",
    "pull_request_comment",
    "issue_comment",
    "pull_request_review_approved",
    "status",
    "push",
    "wiki",
    "",
]


def _mutate(value: Any, data: st.DataObject, depth: int = 0) -> Any:
    if isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        choice = data.draw(st.integers(0, 3))
        copy = dict(value)
        if choice == 0:
            del copy[key]
        elif choice == 1 or depth > 4:
            copy[key] = data.draw(
                st.one_of(st.none(), st.integers(), st.text(), st.booleans(), st.lists(st.integers()))
            )
        else:
            copy[key] = _mutate(value[key], data, depth + 1)
        return copy
    if isinstance(value, list) and value:
        return [_mutate(item, data, depth + 1) for item in value]
    return data.draw(st.one_of(st.none(), st.integers(), st.text(), st.floats(allow_nan=False), st.booleans()))


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_fuzz_mutated_payloads_never_5xx(client: Client, webhook_secret: str, data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(SAMPLES))
    payload = _mutate(json.loads(sample.read_bytes()), data)
    body = json.dumps(payload).encode()
    event_type = data.draw(st.sampled_from(EVENT_TYPES))
    headers = headers_for(webhook_secret, body, event="pull_request", event_type=event_type)
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status < 500, await response.text()


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), signed=st.booleans(), event_type=st.sampled_from(EVENT_TYPES))
async def test_fuzz_random_bytes_never_5xx(
    client: Client, webhook_secret: str, body: bytes, signed: bool, event_type: str
) -> None:
    headers = headers_for(webhook_secret, body, event_type=event_type) if signed else {"X-Gitea-Event-Type": event_type}
    response = await client.post("/webhook", data=body, headers=headers)
    assert response.status < 500
    assert response.status in ((400, 200) if signed else (401,))
