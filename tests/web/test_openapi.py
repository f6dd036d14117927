"""The OpenAPI file and the app agree: every route is documented and every documented path is a route, the
file is valid OpenAPI 3.1, and real answers of every API route (and of the others) fit their schemas."""

from __future__ import annotations

import base64
from pathlib import Path

from aiohttp import web
from openapi_spec_validator import validate

from bot.app import create_app
from tests.clocks import StillClock
from tests.web import spec
from tests.web.conftest import NOW, Client, Seeded, web_settings


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    """(path template, method) of every route, as OpenAPI writes them (regexes dropped, HEAD implied)."""
    found = set()
    for resource in app.router.resources():
        if isinstance(resource, web.StaticResource):
            found.add((resource.canonical.rstrip("/") + "/{filename}", "GET"))
            continue
        for route in resource:
            if route.method != "HEAD":
                found.add((resource.canonical, route.method))
    return found


def spec_routes() -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in spec.spec()["paths"].items() for method in item}


def test_the_file_is_valid_openapi() -> None:
    validate(spec.spec())  # type: ignore[arg-type]


def test_every_route_is_documented_and_every_documented_path_is_a_route(tmp_path: Path) -> None:
    app = create_app(web_settings(tmp_path), database_url="postgresql://unused@localhost/unused")
    served, documented = app_routes(app), spec_routes()
    assert served - documented == set(), "routes missing from openapi/merge-bot.yaml"
    assert documented - served == set(), "documented paths the app does not serve"


async def answer(client: Client, template: str, url: str, method: str = "GET", **kwargs: object) -> object:
    response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    body = await response.read()
    return spec.check(template, method, response.status, response.content_type, body)


async def test_api_answers_fit_their_schemas(client: Client, seeded: Seeded) -> None:
    trains = await answer(client, "/api/v1/trains", "/api/v1/trains")
    assert isinstance(trains, dict) and trains["trains"][0]["running"]["pulls"][0]["number"] == 3
    assert trains["trains"][0]["attempts"] == [trains["trains"][0]["running"]]  # one attempt: the chain is it
    assert trains["trains"][0]["flaky"] == {}
    repo = "/api/v1/repos/{owner}/{repo}"
    await answer(client, repo + "/trains", "/api/v1/repos/acme/app/trains")
    await answer(client, repo + "/trains", "/api/v1/repos/acme/lib/trains")  # managed, nothing queued: []
    await answer(client, repo + "/trains", "/api/v1/repos/nobody/nothing/trains")  # 404
    await answer(client, repo + "/entries", "/api/v1/repos/acme/app/entries")
    await answer(client, repo + "/entries", "/api/v1/repos/acme/app/entries?state=merged,failed&limit=2")
    await answer(client, repo + "/entries", "/api/v1/repos/acme/app/entries?state=bogus")  # 400
    await answer(client, repo + "/entries", "/api/v1/repos/acme/app/entries?limit=0")  # 400
    await answer(client, repo + "/attempts", "/api/v1/repos/acme/app/attempts")
    await answer(client, repo + "/attempts", "/api/v1/repos/acme/app/attempts?limit=x")  # 400
    await answer(client, repo + "/attempts", "/api/v1/repos/nobody/nothing/attempts")  # 404
    for number in (1, 2, 3, 6, 7):
        await answer(client, repo + "/pulls/{number}", f"/api/v1/repos/acme/app/pulls/{number}")
    await answer(client, repo + "/pulls/{number}", "/api/v1/repos/acme/app/pulls/99")  # 404


async def test_other_answers_fit_their_documentation(client: Client, seeded: Seeded, webhook_secret: str) -> None:
    await answer(client, "/", "/")
    await answer(client, "/", "/?partial=1")
    await answer(client, "/queue/{owner}/{repo}", "/queue/acme/app")
    await answer(client, "/queue/{owner}/{repo}", "/queue/nobody/nothing")  # 404
    await answer(client, "/queue/{owner}/{repo}/pull/{number}", "/queue/acme/app/pull/2")
    await answer(client, "/queue/{owner}/{repo}/pull/{number}", "/queue/acme/app/pull/99")  # 404
    await answer(client, "/static/{filename}", "/static/queue.css")
    await answer(client, "/static/{filename}", "/static/live.js")
    await answer(client, "/healthz", "/healthz")
    await answer(client, "/metrics", "/metrics")
    await answer(client, "/webhook", "/webhook", "POST", data=b"{}")  # unsigned: 401


async def test_401_answers_fit_their_documentation(aiohttp_client: object, engine: object, tmp_path: Path) -> None:
    settings = web_settings(tmp_path, MERGE_BOT_READ_TOKEN="let-me-read")
    client: Client = await aiohttp_client(create_app(settings, engine=engine, clock=StillClock(NOW)))  # type: ignore[operator]
    await answer(client, "/api/v1/trains", "/api/v1/trains")
    await answer(client, "/", "/")
    await answer(client, "/metrics", "/metrics")
    basic = base64.b64encode(b"anyone:let-me-read").decode()
    await answer(client, "/", "/", headers={"Authorization": f"Basic {basic}"})
