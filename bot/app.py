"""The application factory. Every resource is born and closed in ``cleanup_ctx``; no module globals."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.db.inbox import DeliveryWriter
from bot.db.session import make_engine
from bot.web import health, webhook
from bot.web.keys import CLOCK, ENGINE, SETTINGS, WRITER


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """Build the app. Pass ``engine`` to share one (tests), else one is made from ``database_url``."""
    url = database_url or (settings.database_url.get_secret_value() if settings.database_url else None)
    if engine is None and url is None:
        raise ValueError("create_app needs a database: database_url, settings.database_url or engine")
    # aiohttp's own cap sits above ours so that our handler answers 413 itself.
    app = web.Application(client_max_size=settings.webhook_max_body_bytes + 1)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app.add_routes(webhook.routes)
    app.add_routes(health.routes)

    async def database(app: web.Application) -> AsyncIterator[None]:
        if engine is not None:
            app[ENGINE] = engine
            yield
            return
        assert url is not None
        app[ENGINE] = owned = make_engine(url)
        yield
        await owned.dispose()

    async def inbox(app: web.Application) -> AsyncIterator[None]:
        app[WRITER] = writer = DeliveryWriter(app[ENGINE])
        await writer.start()
        yield
        await writer.close()

    app.cleanup_ctx.extend([database, inbox])
    return app
