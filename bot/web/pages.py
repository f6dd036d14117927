"""The queue page (``/``, ``/queue/{owner}/{repo}``) and a PR's page (``/queue/{owner}/{repo}/pull/{n}``).

Server-rendered with Jinja2 from :mod:`bot.web.views`, complete without JavaScript: the chain and the
timeline of the last hours are inline SVG drawn from :mod:`bot.web.timeline`. With JavaScript,
``live.js`` polls the same URL with ``?partial=1`` (the page's changing part alone, with an ETag) and swaps it in.

:func:`read_guard` is the one choke point for reading: with ``read_token`` set, every path but the open
ones (health, webhook, static assets) needs the token, as the password of HTTP Basic auth (so a browser
asks for it) or as a Bearer token (scripts, Prometheus). Without it the pages are public, which is why
they show only what the bot already posts on the PRs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from bot.web import timeline, views
from bot.web.keys import CLOCK, ENGINE, MANAGED, SETTINGS

HERE = Path(__file__).parent
STATIC = HERE / "static"
POLL_MS = 2000
OPEN_PATHS = frozenset({"/healthz", "/webhook"})
TEMPLATES = web.AppKey("templates", jinja2.Environment)
routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FLAKE_WORDS = {"bisection": "in bisected batches", "retry": "on re-tests", "optimistic": "landed optimistically"}


def setup(app: web.Application) -> None:
    """Templates, the page routes, the static files and the read guard."""
    app.add_routes(routes)
    static = app.router.add_static("/static/", STATIC, name="static", append_version=True)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        short=short,
        ago=ago,
        duration=duration,
        iso=iso,
        clock=clock,
        safe_url=safe_url,
        check_name=views.check_name,
        rate_text=views.rate_text,
    )
    env.globals.update(
        outcome=timeline.outcome,
        outcome_words=timeline.OUTCOME_WORDS,
        flake_kinds=views.FLAKE_KINDS,
        flake_words=FLAKE_WORDS,
    )
    env.globals["static"] = {
        path.name: str(static.url_for(filename=path.name)) for path in STATIC.iterdir() if path.is_file()
    }
    app[TEMPLATES] = env
    app.middlewares.append(read_guard)


# -- reading ------------------------------------------------------------------------------------------


@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    return await _queue(request, None)


@routes.get("/queue/{owner}/{repo}")
async def repository(request: web.Request) -> web.StreamResponse:
    return await _queue(request, f"{request.match_info['owner']}/{request.match_info['repo']}")


@routes.get(r"/queue/{owner}/{repo}/pull/{number:\d{1,10}}")
async def pull(request: web.Request) -> web.StreamResponse:
    full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
    number = int(request.match_info["number"])
    settings = request.app[SETTINGS]
    async with views.reading(request.app[ENGINE]) as session:
        history = await views.pull_history(session, views.links(settings), full_name, number)
    if history is None:
        return render(
            request,
            "error.html",
            {"title": "Not found", "message": f"{full_name}#{number} has never been queued."},
            status=404,
        )
    context = {
        "history": history,
        "current": history.pull.repository,
        "api_url": f"/api/v1/repos/{history.pull.repository}/pulls/{number}",
    }
    return render(request, "pull.html", context, fragment="_pull.html")


async def _queue(request: web.Request, full_name: str | None) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    now = request.app[CLOCK].now()
    links = views.links(settings)
    await request.app[MANAGED].names()  # the list of repositories the page shows, read afresh
    async with views.reading(request.app[ENGINE]) as session:
        trains = await views.trains(session, links, now, full_name)
        history = await views.history(session, links, now, [train.id for train in trains])
    if full_name is not None and not trains and not await request.app[MANAGED].contains(full_name):
        message = f"merge-bot does not manage {full_name}, and nothing was ever queued there."
        return render(request, "error.html", {"title": "Not found", "message": message}, status=404)
    current = trains[0].repository if trains and full_name else full_name
    api_url = f"/api/v1/repos/{current}/trains" if current else "/api/v1/trains"
    context = {
        "trains": trains,
        "current": current,
        "api_url": api_url,
        "history": history,
        "timelines": {train_id: timeline.timeline(rows, now) for train_id, rows in history.items()},
        "chains": {train.id: timeline.chain_spans(train.attempts, now) for train in trains},
    }
    return render(request, "queue.html", context, fragment="_trains.html")


def render(
    request: web.Request, name: str, context: Mapping[str, Any], *, fragment: str | None = None, status: int = 200
) -> web.Response:
    """The page (or its live fragment for ``?partial=1``), with an ETag: an unchanged fragment is a 304."""
    full = {
        "now": request.app[CLOCK].now(),
        "repositories": sorted(request.app[MANAGED].known(), key=str.lower),
        "current": None,
        "fragment_url": request.path + "?partial=1",
        "poll_ms": POLL_MS,
        **context,
    }
    template = fragment if fragment is not None and request.query.get("partial") == "1" else name
    html = request.app[TEMPLATES].get_template(template).render(full)
    etag = '"' + hashlib.sha256(html.encode()).hexdigest()[:24] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if status == 200 and request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=headers)


# -- the read guard -----------------------------------------------------------------------------------


@web.middleware
async def read_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SETTINGS].read_token
    if token is None or request.path in OPEN_PATHS or request.path.startswith("/static/"):
        return await handler(request)
    presented = presented_token(request.headers.get("Authorization", ""))
    admin = request.app[SETTINGS].admin_token  # the admin token reads too
    for accepted in (token, admin) if admin is not None else (token,):
        if presented is not None and hmac.compare_digest(presented.encode(), accepted.get_secret_value().encode()):
            return await handler(request)
    challenge = {"WWW-Authenticate": 'Basic realm="merge-bot", charset="UTF-8"'}
    if request.path.startswith("/api/") or request.path == "/metrics":
        return web.json_response({"error": "this instance needs its read token"}, status=401, headers=challenge)
    return web.Response(
        text="This merge-bot instance is private: sign in with its read token as the password.\n",
        status=401,
        headers=challenge,
    )


def presented_token(authorization: str) -> str | None:
    """The token in ``Bearer <token>``, or the password in ``Basic base64(user:password)``."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


# -- template filters ---------------------------------------------------------------------------------


def short(sha: str | None) -> str:
    return (sha or "")[:10]


def iso(when: datetime | None) -> str:
    return when.isoformat() if when is not None else ""


def clock(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def duration(seconds: float | None) -> str:
    """Seconds as "45 s", "3 min 20 s", "2 h 5 min" or "3 d 4 h"."""
    if seconds is None:
        return "—"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def ago(when: datetime | None, now: datetime) -> str:
    """How long ago, to the minute past the first one: "just now", "40 s ago", "12 min ago", "3 h 5 min ago"."""
    if when is None:
        return ""
    seconds = (now - when).total_seconds()
    if seconds < 5:
        return "just now"
    return duration(seconds if seconds < 60 else seconds - seconds % 60) + " ago"


def safe_url(url: object) -> str:
    """Only http(s) links reach a page (a CI's ``javascript:`` target URL must not)."""
    value = str(url or "")
    return value if urlsplit(value).scheme in ("http", "https") else "#"
