"""Freezes and pauses through the JSON API (POST/DELETE /api/v1/repos/{owner}/{repo}/freeze and /pause):
the admin token is required (none → 401, no admin token configured → 403, and nothing changes); what was
done is recorded with who did it and shows on the API's trains, the queue page and every answer fits the
OpenAPI file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from bot.db.models import HoldRow, Notification, TrainEvent
from tests.clocks import StillClock
from tests.web import spec
from tests.web.conftest import NOW, Client, Seeded, web_settings

ADMIN = {"Authorization": "Bearer the-admin-token"}
FREEZE = "/api/v1/repos/{owner}/{repo}/freeze"
PAUSE = "/api/v1/repos/{owner}/{repo}/pause"
MakeClient = Callable[[web.Application], Awaitable[Client]]


async def app_client(aiohttp_client: MakeClient, engine: AsyncEngine, tmp_path: Path, **extra: str) -> Client:
    more = {"MERGE_BOT_" + key: value for key, value in extra.items()}
    settings = web_settings(tmp_path, MERGE_BOT_NOTIFY_URLS="json://127.0.0.1:9/never-sent", **more)
    return await aiohttp_client(create_app(settings, engine=engine, clock=StillClock(NOW)))


async def call(client: Client, method: str, template: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    response = await client.request(method, url, **kwargs)
    body = await response.read()
    return response.status, spec.check(template, method, response.status, response.content_type, body)


async def count(engine: AsyncEngine, model: Any) -> int:
    async with engine.connect() as connection:
        return len((await connection.execute(select(model.id))).all())


async def test_without_the_admin_token_nothing_changes(
    aiohttp_client: MakeClient, engine: AsyncEngine, tmp_path: Path
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, ADMIN_TOKEN="the-admin-token")
    body = {"reason": "release", "branch": "main"}
    url = "/api/v1/repos/acme/app/freeze"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YTpiCg=="}):
        status, answer = await call(client, "POST", FREEZE, url, json=body, headers=headers)
        assert status == 401 and "admin token" in answer["error"]
        status, _ = await call(client, "DELETE", FREEZE, url, headers=headers)
        assert status == 401
    off = await app_client(aiohttp_client, engine, tmp_path / "off")  # no admin_token at all
    status, answer = await call(off, "POST", PAUSE, "/api/v1/repos/acme/app/pause", json=body, headers=ADMIN)
    assert status == 403 and "no admin_token" in answer["error"]
    for model in (HoldRow, TrainEvent, Notification):
        assert await count(engine, model) == 0


async def test_freeze_and_unfreeze_with_the_admin_token(
    aiohttp_client: MakeClient, engine: AsyncEngine, tmp_path: Path, seeded: Seeded
) -> None:
    client = await app_client(
        aiohttp_client, engine, tmp_path, ADMIN_TOKEN="the-admin-token", READ_TOKEN="the-read-token"
    )
    body = {"reason": "release 4.2", "branch": "main", "until": "2h", "by": "ann"}
    status, answer = await call(client, "POST", FREEZE, "/api/v1/repos/acme/app/freeze", json=body, headers=ADMIN)
    assert status == 200, answer
    hold = answer["hold"]
    assert (hold["kind"], hold["branch"], hold["reason"], hold["by"]) == ("freeze", "main", "release 4.2", "ann")
    assert hold["until"] == "2026-03-02T14:00:00+00:00" and hold["lifted_at"] is None

    # The admin token reads what the read token guards; the train shows the freeze.
    status, trains = await call(client, "GET", "/api/v1/trains", "/api/v1/trains", headers=ADMIN)
    assert status == 200
    (train,) = [t for t in trains["trains"] if t["id"] == seeded.train_id]
    assert train["frozen"] is True and train["paused"] is False
    (shown,) = train["holds"]
    assert (shown["scope"], shown["reason"], shown["by"]) == ("branch", "release 4.2", "ann")
    assert shown["text"] == "frozen until 2026-03-02 14:00 UTC: release 4.2 (by ann)"
    page = await client.get("/queue/acme/app", headers=ADMIN)
    html = await page.text()
    assert 'data-testid="hold" data-kind="freeze" data-scope="branch"' in html
    assert "frozen until 2026-03-02 14:00 UTC: release 4.2 (by ann)" in html
    assert "PRs are still queued and tested; nothing lands until it is lifted." in html

    url = "/api/v1/repos/acme/app/freeze?branch=main&by=bea"
    status, answer = await call(client, "DELETE", FREEZE, url, headers=ADMIN)
    assert status == 200 and answer["hold"]["lifted_by"] == "bea"
    status, answer = await call(client, "DELETE", FREEZE, url, headers=ADMIN)
    assert status == 404 and answer["error"] == "acme/app:main is not frozen"
    async with engine.connect() as connection:
        events = (await connection.execute(select(TrainEvent.kind, TrainEvent.actor, TrainEvent.source))).all()
        told = (await connection.execute(select(Notification.kind))).scalars().all()
    assert [tuple(e) for e in events] == [("frozen", "ann", "api"), ("unfrozen", "bea", "api")]
    assert told == ["frozen", "unfrozen"]


async def test_a_repository_pause_and_bad_requests(
    aiohttp_client: MakeClient, engine: AsyncEngine, tmp_path: Path, seeded: Seeded
) -> None:
    client = await app_client(aiohttp_client, engine, tmp_path, ADMIN_TOKEN="the-admin-token")
    url = "/api/v1/repos/acme/app/pause"
    bad = [
        ({"reason": ""}, 400, "a reason is required"),
        ({"reason": "x", "until": "tomorrow"}, 400, "is neither a duration"),
        ({"reason": "x", "cancel_running": "yes"}, 400, "cancel_running is true or false"),
        ({"reason": 5}, 400, "reason must be a string"),
        ({"reason": "x", "branch": "a b"}, 400, "is not a branch name"),
    ]
    for body, expected, complaint in bad:
        status, answer = await call(client, "POST", PAUSE, url, json=body, headers=ADMIN)
        assert (status, complaint in answer["error"]) == (expected, True), (body, answer)
    status, answer = await call(client, "POST", PAUSE, url, data=b"[1]", headers=ADMIN)
    assert status == 400 and answer["error"] == "the body must be a JSON object"
    status, answer = await call(
        client, "POST", PAUSE, "/api/v1/repos/nobody/nothing/pause", json={"reason": "x"}, headers=ADMIN
    )
    assert status == 404 and "not managed" in answer["error"]
    cancelling = {"reason": "x", "cancel_running": True}  # only a pause cancels
    status, _ = await call(client, "POST", FREEZE, "/api/v1/repos/acme/app/freeze", json=cancelling, headers=ADMIN)
    assert status == 400
    assert await count(engine, HoldRow) == 0

    status, answer = await call(
        client, "POST", PAUSE, url, json={"reason": "CI is down", "cancel_running": True}, headers=ADMIN
    )
    assert status == 200 and answer["hold"]["branch"] is None and answer["hold"]["by"] == "api"
    status, trains = await call(client, "GET", "/api/v1/trains", "/api/v1/trains")
    (train,) = [t for t in trains["trains"] if t["id"] == seeded.train_id]
    assert train["paused"] is True and train["frozen"] is False
    assert train["holds"][0]["scope"] == "repository" and train["holds"][0]["cancel_running"] is True
    assert await count(engine, Notification) == 0  # a pause is not told outside
    status, _ = await call(client, "DELETE", PAUSE, url, headers=ADMIN)
    assert status == 200


async def test_outside_the_merge_windows_every_train_shows_frozen(
    aiohttp_client: MakeClient, engine: AsyncEngine, tmp_path: Path, seeded: Seeded
) -> None:
    # NOW is Monday 2026-03-02 12:00 UTC: 13:00 in Berlin, outside a morning window.
    client = await app_client(aiohttp_client, engine, tmp_path, WINDOWS="Mon-Fri 08:00-12:00 Europe/Berlin")
    status, trains = await call(client, "GET", "/api/v1/trains", "/api/v1/trains")
    (train,) = [t for t in trains["trains"] if t["id"] == seeded.train_id]
    assert status == 200 and train["frozen"] is True
    (shown,) = train["holds"]
    assert shown["scope"] == "window" and shown["until"] == "2026-03-03T07:00:00+00:00"
    assert shown["text"] == "frozen outside the merge windows until 2026-03-03 07:00 UTC"
