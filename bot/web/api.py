"""The JSON API under ``/api/v1/``: the queue page's data for scripts. Read-only; documented, response by
response, in ``openapi/merge-bot.yaml`` (a test holds the two together)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.queue.model import EntryState
from bot.web import views
from bot.web.keys import CLOCK, ENGINE, SETTINGS

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


def _managed(settings: Settings, full_name: str) -> bool:
    return full_name.lower() in {repo.lower() for repo in settings.repos}


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
    if not found and not _managed(settings, full_name):
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
        if not _managed(settings, full_name):
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
        if not _managed(settings, full_name):
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


def setup(app: web.Application) -> None:
    app.add_routes(routes)
    app.middlewares.append(bad_queries)
