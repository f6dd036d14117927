"""``GET /healthz``: 200 when the database answers, 503 when it does not."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from bot.logs import get_logger
from bot.web.keys import ENGINE

log = get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        async with asyncio.timeout(3):
            async with request.app[ENGINE].connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("health.database_unreachable", error=type(exc).__name__)
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})
