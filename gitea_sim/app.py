"""The aiohttp application: routes of every feature module, and the middlewares (log + faults, errors, auth)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from . import githttp, scopes
from .api import (
    actions,
    contents,
    forks,
    hooks,
    issues,
    pulls,
    repo_settings,
    seed,
    sim,
    statuses,
    teams,
    topics,
    users,
)
from .core import Sim
from .faults import Fault
from .web import DOER, SIM, ApiError, AuthError, authenticate, error_body, json_response, token_of

API = "/api/v1"
log = logging.getLogger("gitea_sim")


def _fault_response(the_sim: Sim, fault: Fault) -> web.Response:
    return json_response({"message": fault.message, "url": f"{the_sim.base_url}/api/swagger"}, fault.status,
                         headers=dict(fault.headers) or None)


def _is_api(path: str) -> bool:
    return path.startswith(API + "/") or path.startswith("/_sim/")


def _is_git(path: str) -> bool:
    return path.endswith(("/info/refs", "/git-upload-pack", "/git-receive-pack"))


@web.middleware
async def log_and_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every API and git call is logged; faults under /_sim/faults apply to API and git paths."""
    the_sim = request.app[SIM]
    path = request.path
    if path.startswith("/_sim/"):
        return await handler(request)
    started = time.monotonic()
    fault = the_sim.faults.take_http(request.method, path) if (_is_api(path) or _is_git(path)) else None
    response: web.StreamResponse
    if fault is not None and fault.latency_s:
        await asyncio.sleep(fault.latency_s)
    if fault is not None and fault.when == "before" and fault.status:
        response = _fault_response(the_sim, fault)
    else:
        response = await handler(request)
        if fault is not None and fault.when == "after" and fault.status:
            response = _fault_response(the_sim, fault)
    if _is_api(path) or _is_git(path):
        doer = request.get(DOER)
        the_sim.log.add("api" if _is_api(path) else "git", method=request.method, path=path,
                        query=request.query_string, status=response.status,
                        user=doer.login if doer is not None else None,
                        fault=fault.id if fault is not None else None,
                        duration_ms=round((time.monotonic() - started) * 1000, 1))
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    the_sim = request.app[SIM]
    try:
        return await handler(request)
    except ApiError as err:
        return json_response(error_body(the_sim, err), err.status)
    except web.HTTPException as exc:
        if not _is_api(request.path) or exc.status < 400:
            raise
        if exc.status == 404:
            return json_response(error_body(the_sim, ApiError(404, not_found=True)), 404)
        return json_response({"message": exc.reason, "url": f"{the_sim.base_url}/api/swagger"}, exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        the_sim.log.add("error", method=request.method, path=request.path)
        return json_response({"message": "internal server error", "url": f"{the_sim.base_url}/api/swagger"},
                             500)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_api(request.path) and not request.path.startswith("/_sim/internal/") \
            and "/tokens" not in request.path:
        the_sim = request.app[SIM]
        try:
            doer = authenticate(the_sim, request, allow_password=True)
        except AuthError as exc:
            raise ApiError(401, str(exc)) from None
        token = token_of(the_sim, request) if request.path.startswith(API + "/") else None
        if token is not None:
            refused = scopes.refusal(token.scopes, scopes.required(request.method, request.path.removeprefix(API)))
            if refused is not None:
                raise ApiError(403, refused)
        sudo = request.headers.get("Sudo") or request.query.get("sudo")
        if sudo and doer is not None and doer.is_admin:
            target = the_sim.state.user_by_name(sudo)
            if target is None:
                raise ApiError(404, "", not_found=True)
            doer = target
        request[DOER] = doer
    return await handler(request)


def create_app(data_dir: Path, admin_token: str, flavour: str = "gitea", base_url: str = "") -> web.Application:
    """The simulator as an aiohttp app. `base_url` is filled in from the first request when left empty."""
    data_dir = data_dir.resolve()
    (data_dir / "repos").mkdir(parents=True, exist_ok=True)
    the_sim = Sim(data_dir, admin_token, flavour)
    if base_url:
        the_sim.base_url = base_url.rstrip("/")
    app = web.Application(middlewares=[log_and_faults, errors, auth], client_max_size=512 * 1024 ** 2)
    app[SIM] = the_sim
    issues.add_search_route(app, API)
    users.add_routes(app, API)
    teams.add_routes(app, API)
    repo_settings.add_routes(app, API)
    hooks.add_routes(app, API)
    topics.add_routes(app, API)
    contents.add_routes(app, API)
    pulls.add_routes(app, API)
    forks.add_routes(app, API)
    issues.add_routes(app, API)
    statuses.add_routes(app, API)
    actions.add_routes(app, API)
    sim.add_routes(app)
    seed.add_routes(app)
    githttp.add_routes(app)
    app.router.add_get("/api/swagger", _swagger_note)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await the_sim.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _swagger_note(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps({"note": "see gitea-swagger-v1.25.4.json"}), content_type="application/json")
