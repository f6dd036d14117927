"""The application factory. Every resource is born and closed in ``cleanup_ctx``; no module globals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.db.inbox import DeliveryWriter
from bot.db.session import make_engine, make_sessionmaker
from bot.logs import get_logger
from bot.queue_service import QueueService
from bot.repos.managed import ManagedCache
from bot.web import api, health, metrics, pages, webhook
from bot.web.keys import CLOCK, ENGINE, MANAGED, SETTINGS, WRITER

log = get_logger(__name__)


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
    pages.setup(app)  # the queue page, its static files and the read-token guard
    api.setup(app)
    metrics.setup(app)

    async def database(app: web.Application) -> AsyncIterator[None]:
        if engine is not None:
            app[ENGINE] = engine
            app[MANAGED] = ManagedCache(settings, engine)
            yield
            return
        assert url is not None
        app[ENGINE] = owned = make_engine(url)
        app[MANAGED] = ManagedCache(settings, owned)
        yield
        await owned.dispose()

    async def inbox(app: web.Application) -> AsyncIterator[None]:
        app[WRITER] = writer = DeliveryWriter(app[ENGINE])
        await writer.start()
        yield
        await writer.close()

    async def queue(app: web.Application) -> AsyncIterator[None]:
        if settings.gitea_token is None:
            log.warning("queue.disabled", reason="no forge token (MERGE_BOT_GITEA_TOKEN): only storing webhooks")
            yield
            return
        db_url = url or app[ENGINE].url.render_as_string(hide_password=False)
        async with aiohttp.ClientSession() as http:
            service = QueueService(settings, make_sessionmaker(app[ENGINE]), db_url, app[CLOCK], http, app[ENGINE])
            app[metrics.QUEUE] = service
            app[WRITER].on_stored = service.wake_inbox
            task = asyncio.create_task(service.run(), name="queue")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if service.runner is not None:
                await service.runner.close()

    app.cleanup_ctx.extend([database, inbox, queue])
    return app
