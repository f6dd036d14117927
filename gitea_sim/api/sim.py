"""The simulator's own surface under /_sim/ (admin token): CI configuration, faults, the call log, redelivery."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..faults import FaultSpecError
from ..model import CIConfig
from ..web import ApiError, int_param, json_response, not_found, read_json, require_doer, sim_of


def _admin(request: web.Request) -> None:
    if not require_doer(request).is_admin:
        raise ApiError(403, "the /_sim/ API needs a site admin token")


async def put_ci(request: web.Request) -> web.Response:
    _admin(request)
    sim = sim_of(request)
    repo = sim.state.repo_by_name(request.match_info["owner"], request.match_info["repo"])
    if repo is None:
        raise not_found()
    body = await read_json(request)
    command = body.get("command")
    if not isinstance(command, str) or not command:
        raise ApiError(422, "command is required")
    branches = body.get("branches", ["*"])
    if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
        raise ApiError(422, "branches must be a list of globs")
    runners = body.get("runners", 0)
    if not isinstance(runners, int) or isinstance(runners, bool) or runners < 0:
        raise ApiError(422, "runners must be a whole number >= 0 (0: no limit)")
    actions = body.get("actions", True)
    if not isinstance(actions, bool):
        raise ApiError(422, "actions must be true (Gitea Actions) or false (another CI posting statuses)")
    config = CIConfig(command=command, context=str(body.get("context") or "ci/test"),
                      delay_s=float(body.get("delay_s") or 0), branches=branches, runners=runners, actions=actions)
    sim.ci.configure(repo, config)
    return json_response(asdict(config))


async def get_ci(request: web.Request) -> web.Response:
    _admin(request)
    repo = sim_of(request).state.repo_by_name(request.match_info["owner"], request.match_info["repo"])
    if repo is None:
        raise not_found()
    return json_response([asdict(c) for c in repo.ci])


async def delete_ci(request: web.Request) -> web.Response:
    _admin(request)
    repo = sim_of(request).state.repo_by_name(request.match_info["owner"], request.match_info["repo"])
    if repo is None:
        raise not_found()
    context = request.query.get("context")
    repo.ci = [c for c in repo.ci if context is not None and c.context != context]
    return web.Response(status=204)


async def release_ci(request: web.Request) -> web.Response:
    """The runs held back by a ``silent`` fault start now and report their real verdict; the runs released."""
    _admin(request)
    sim = sim_of(request)
    repo = sim.state.repo_by_name(request.match_info["owner"], request.match_info["repo"])
    if repo is None:
        raise not_found()
    return json_response([{"id": run.id, "sha": run.sha, "context": run.context} for run in sim.ci.release(repo)])


async def ci_run(request: web.Request) -> web.Response:
    run = sim_of(request).ci.runs.get(int_param(request, "id"))
    if run is None:
        raise not_found()
    return json_response(asdict(run))


async def add_fault(request: web.Request) -> web.Response:
    _admin(request)
    try:
        fault = sim_of(request).faults.add(await read_json(request))
    except FaultSpecError as exc:
        raise ApiError(422, str(exc)) from None
    return json_response(fault.to_json(), 201)


async def list_faults(request: web.Request) -> web.Response:
    _admin(request)
    return json_response([f.to_json() for f in sim_of(request).faults.rules])


async def clear_faults(request: web.Request) -> web.Response:
    _admin(request)
    sim_of(request).faults.clear()
    return web.Response(status=204)


async def delete_fault(request: web.Request) -> web.Response:
    _admin(request)
    if not sim_of(request).faults.remove(int_param(request, "id")):
        raise not_found()
    return web.Response(status=204)


async def get_log(request: web.Request) -> web.Response:
    _admin(request)
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        since = 0
    return json_response(sim_of(request).log.query(request.query.get("kind"), since))


async def clear_log(request: web.Request) -> web.Response:
    _admin(request)
    sim_of(request).log.clear()
    return web.Response(status=204)


async def redeliver(request: web.Request) -> web.Response:
    _admin(request)
    body = await read_json(request)
    delivery = sim_of(request).webhooks.redeliver(str(body.get("uuid", "")))
    if delivery is None:
        raise not_found("no such delivery")
    return json_response({"uuid": delivery.uuid, "redelivery_of": delivery.redelivery_of}, 201)


async def idle(request: web.Request) -> web.Response:
    """Block until no background work is left (checks, CI, auto-merges, deliveries)."""
    _admin(request)
    await sim_of(request).wait_idle(float(request.query.get("timeout", "30")))
    return web.Response(status=204)


async def put_features(request: web.Request) -> web.Response:
    """What the simulated server offers beyond Gitea 1.25: ``actions_rerun`` (the Actions re-run API of newer
    Gitea; the version then reads 1.26.0). Unknown names are refused."""
    _admin(request)
    sim = sim_of(request)
    body = await read_json(request)
    unknown = sorted(set(body) - set(sim.features))
    if unknown:
        raise ApiError(422, f"unknown features: {', '.join(unknown)} (known: {', '.join(sorted(sim.features))})")
    for name, value in body.items():
        if not isinstance(value, bool):
            raise ApiError(422, f"{name} must be true or false")
        sim.features[name] = value
    return json_response(dict(sim.features))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_put("/_sim/features", put_features)
    r.add_put("/_sim/ci/{owner}/{repo}", put_ci)
    r.add_get("/_sim/ci/{owner}/{repo}", get_ci)
    r.add_delete("/_sim/ci/{owner}/{repo}", delete_ci)
    r.add_post("/_sim/ci/{owner}/{repo}/release", release_ci)
    r.add_get("/_sim/ci/runs/{id:\\d+}", ci_run)
    r.add_post("/_sim/faults", add_fault)
    r.add_get("/_sim/faults", list_faults)
    r.add_delete("/_sim/faults", clear_faults)
    r.add_delete("/_sim/faults/{id:\\d+}", delete_fault)
    r.add_get("/_sim/log", get_log)
    r.add_delete("/_sim/log", clear_log)
    r.add_post("/_sim/webhooks/redeliver", redeliver)
    r.add_post("/_sim/idle", idle)
