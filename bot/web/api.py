"""The JSON API under ``/api/v1/``: the queue page's data for scripts, and the freeze and pause of a train
or a repository (``POST``/``DELETE`` ``.../freeze`` and ``.../pause``), which need the ``admin_token`` as a
Bearer token. Documented, response by response, in ``openapi/merge-bot.yaml`` (a test holds the two
together)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from bot import holds
from bot.db.models import HoldRow, HoldSource
from bot.db.session import make_sessionmaker
from bot.notify import TRAIN, notify
from bot.queue.model import EntryState, HoldKind
from bot.web import views
from bot.web.keys import CLOCK, ENGINE, MANAGED, SETTINGS
from bot.web.pages import presented_token

routes = web.RouteTableDef()
ENTRY_STATES = frozenset(state.value for state in EntryState)
MAX_LIMIT = 500


class BadQuery(Exception):
    """A query parameter the API does not understand: 400, naming it."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _reply(request: web.Request, body: dict[str, Any]) -> web.Response:
    body = {"generated_at": request.app[CLOCK].now(), **body}
    return web.json_response(views.jsonable(body), headers={"Cache-Control": "no-cache"})


def _repository(request: web.Request) -> str:
    return f"{request.match_info['owner']}/{request.match_info['repo']}"


async def _managed(request: web.Request, full_name: str) -> bool:
    return await request.app[MANAGED].contains(full_name)


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _states(request: web.Request) -> list[str]:
    wanted = [part.strip() for part in request.query.get("state", "").split(",") if part.strip()]
    unknown = sorted(set(wanted) - ENTRY_STATES)
    if unknown:
        raise BadQuery(f"unknown state {', '.join(unknown)}; expected some of {', '.join(sorted(ENTRY_STATES))}")
    return wanted


@web.middleware
async def bad_queries(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except BadQuery as exc:
        return _error(400, str(exc))
    return response


@routes.get("/api/v1/trains")
async def all_trains(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    async with views.reading(request.app[ENGINE]) as session:
        found = await views.trains(session, views.links(settings), request.app[CLOCK].now())
    return _reply(request, {"trains": found})


@routes.get("/api/v1/repos/{owner}/{repo}/trains")
async def repository_trains(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    full_name = _repository(request)
    async with views.reading(request.app[ENGINE]) as session:
        found = await views.trains(session, views.links(settings), request.app[CLOCK].now(), full_name)
    if not found and not await _managed(request, full_name):
        return _error(404, f"{full_name} is not managed and has no queue")
    return _reply(request, {"trains": found})


@routes.get("/api/v1/repos/{owner}/{repo}/entries")
async def repository_entries(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    full_name = _repository(request)
    states, limit = _states(request), _limit(request, 50)
    async with views.reading(request.app[ENGINE]) as session:
        found = await views.entries(session, views.links(settings), full_name, states=states, limit=limit)
    if found is None:
        if not await _managed(request, full_name):
            return _error(404, f"{full_name} is not managed and has no queue")
        found = []
    return _reply(request, {"entries": found})


@routes.get("/api/v1/repos/{owner}/{repo}/attempts")
async def repository_attempts(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    full_name = _repository(request)
    limit = _limit(request, 20)
    async with views.reading(request.app[ENGINE]) as session:
        found = await views.attempts(session, views.links(settings), request.app[CLOCK].now(), full_name, limit=limit)
    if found is None:
        if not await _managed(request, full_name):
            return _error(404, f"{full_name} is not managed and has no queue")
        found = []
    return _reply(request, {"attempts": found})


@routes.get(r"/api/v1/repos/{owner}/{repo}/pulls/{number:\d{1,10}}")
async def pull_history(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    full_name = _repository(request)
    number = int(request.match_info["number"])
    async with views.reading(request.app[ENGINE]) as session:
        history = await views.pull_history(session, views.links(settings), full_name, number)
    if history is None:
        return _error(404, f"{full_name}#{number} has never been queued")
    return _reply(request, {"history": history})


# -- freezes and pauses (admin) ------------------------------------------------------------------------

BODY_LIMIT = 16_384


def _admin(request: web.Request) -> web.Response | None:
    """None when the request carries the admin token; else the answer: 403 when the instance has none (the
    write endpoints are off), 401 when the token is missing or wrong."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return _error(403, "this instance has no admin_token: its write endpoints are off")
    presented = presented_token(request.headers.get("Authorization", ""))
    if presented is None or not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
        challenge = {"WWW-Authenticate": 'Bearer realm="merge-bot admin"'}
        answer = {"error": "this needs the admin token as a Bearer token"}
        return web.json_response(answer, status=401, headers=challenge)
    return None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    raw = await request.content.read(BODY_LIMIT + 1)
    if len(raw) > BODY_LIMIT:
        raise BadQuery(f"the body is larger than {BODY_LIMIT} bytes")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadQuery("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadQuery("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is not None and not isinstance(value, str):
        raise BadQuery(f"{key} must be a string")
    return value


def _hold_json(hold: HoldRow, target: holds.Target) -> dict[str, Any]:
    return {
        "kind": hold.kind,
        "repository": target.repository,
        "branch": hold.branch,
        "reason": hold.reason,
        "by": hold.actor,
        "since": hold.created_at,
        "until": hold.until,
        "cancel_running": hold.cancel_running,
        "lifted_at": hold.lifted_at,
        "lifted_by": hold.lifted_by,
    }


async def _change_hold(request: web.Request, kind: HoldKind, *, placing: bool) -> web.Response:
    refused = _admin(request)
    if refused is not None:
        return refused
    settings, now = request.app[SETTINGS], request.app[CLOCK].now()
    body = await _body(request)
    branch = _text(body, "branch", request.query.get("branch"))
    by = _text(body, "by", request.query.get("by")) or "api"
    try:
        target = holds.Target.parse(_repository(request) + (f":{branch}" if branch else ""))
        holds.managed(settings, target)
    except holds.HoldError as exc:
        return _error(404 if "not managed" in str(exc) else 400, str(exc))
    engine = request.app[ENGINE]
    try:
        async with make_sessionmaker(engine).begin() as session:
            if placing:
                until_text = _text(body, "until")
                until = holds.parse_until(until_text, now) if until_text else None
                cancel = body.get("cancel_running", False)
                if not isinstance(cancel, bool) or (cancel and kind is not HoldKind.PAUSE):
                    raise BadQuery("cancel_running is true or false, and only for a pause")
                change = await holds.place(
                    session,
                    settings,
                    target,
                    kind,
                    reason=_text(body, "reason") or "",
                    by=by,
                    source=HoldSource.API,
                    now=now,
                    until=until,
                    cancel_running=cancel,
                )
            else:
                change = await holds.lift(session, settings, target, kind, by=by, source="api", now=now)
    except holds.HoldError as exc:
        return _error(400 if placing else 404, str(exc))
    for train_id in change.trains:
        await notify(engine, TRAIN, str(train_id))
    return _reply(request, {"hold": _hold_json(change.hold, target)})


@routes.post("/api/v1/repos/{owner}/{repo}/freeze")
async def freeze(request: web.Request) -> web.Response:
    return await _change_hold(request, HoldKind.FREEZE, placing=True)


@routes.delete("/api/v1/repos/{owner}/{repo}/freeze")
async def unfreeze(request: web.Request) -> web.Response:
    return await _change_hold(request, HoldKind.FREEZE, placing=False)


@routes.post("/api/v1/repos/{owner}/{repo}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _change_hold(request, HoldKind.PAUSE, placing=True)


@routes.delete("/api/v1/repos/{owner}/{repo}/pause")
async def unpause(request: web.Request) -> web.Response:
    return await _change_hold(request, HoldKind.PAUSE, placing=False)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.middlewares.append(bad_queries)
