"""Typed application keys: the resources every handler reaches through ``request.app``."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.config import Settings
from bot.db.inbox import DeliveryWriter
from bot.repos.managed import ManagedCache

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
WRITER = web.AppKey("writer", DeliveryWriter)
CLOCK = web.AppKey("clock", Clock)
MANAGED = web.AppKey("managed", ManagedCache)
