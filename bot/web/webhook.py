"""``POST /webhook``: verify, parse, store, answer. Nothing else happens here.

Order matters and is closed by default: size cap (413, before any hashing), signature (401), JSON (400),
event allowlist (2xx and dropped), shape of a handled event (400), then the delivery row is committed and
only then does the forge get its 202. A duplicate delivery UUID answers 200 and changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.db.inbox import DeliveryWriter, NewDelivery, UnstorableDelivery
from bot.forge import events, signature
from bot.logs import get_logger
from bot.web.keys import MANAGED, SETTINGS, WRITER

log = get_logger(__name__)
routes = web.RouteTableDef()


class BodyTooLarge(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# From a str, json.loads yields a NUL only from a \u0000 escape and a lone surrogate only from a \uD800-\uDFFF
# escape: a body without either needs no walk through every value.
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


async def read_capped(request: web.Request, limit: int) -> bytes:
    """The body, refusing anything over ``limit`` bytes without buffering more than that."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)


def _answer(status: int, outcome: str, **extra: Any) -> web.Response:
    return web.json_response({"status": outcome, **extra}, status=status)


def storable(value: Any) -> bool:
    """PostgreSQL's jsonb refuses NUL characters and lone surrogates; such a body is refused up front."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(storable(key) and storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(storable(item) for item in value)
    return True


@routes.post("/webhook")
async def receive(request: web.Request) -> web.Response:
    settings: Settings = request.app[SETTINGS]
    writer: DeliveryWriter = request.app[WRITER]
    try:
        body = await read_capped(request, settings.webhook_max_body_bytes)
    except BodyTooLarge:
        log.warning("webhook.rejected", reason="too_large", length=request.content_length)
        return _answer(413, "rejected", reason="body too large")
    if not signature.verify(settings.webhook_secret.get_secret_value().encode(), body, request.headers):
        log.warning("webhook.rejected", reason="bad_signature", remote=request.remote)
        return _answer(401, "rejected", reason="missing or invalid signature")
    try:
        text = body.decode("utf-8")  # strict: no surrogates, and json.loads(str) adds none of its own
        payload = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, NaN, > 4300-digit integers
        return _answer(400, "rejected", reason="body is not valid JSON")
    if not isinstance(payload, dict):
        return _answer(400, "rejected", reason="body is not a JSON object")
    headers = events.delivery_headers(request.headers)
    if not headers.delivery_id:
        return _answer(400, "rejected", reason="no delivery id header")
    try:
        event = events.parse_event(headers.event_type, payload)
    except events.MalformedEvent as exc:
        return _answer(400, "rejected", reason=f"malformed {headers.event_type} event: {exc}")
    if not events.wanted(event):
        return _answer(200, "ignored", reason=f"event {headers.event_type or '(none)'} is not handled")
    assert event is not None
    if not await request.app[MANAGED].contains(event.repo.full_name):
        return _answer(200, "ignored", reason=f"repository {event.repo.full_name} is not managed")
    if _RISKY_ESCAPE.search(text) and not storable(payload):
        return _answer(400, "rejected", reason="body holds characters the database cannot store")
    action = payload.get("action")
    delivery = NewDelivery(
        delivery_uuid=headers.delivery_id,
        event=headers.event,
        event_type=headers.event_type,
        action=action if isinstance(action, str) else None,
        repository=event.repo.full_name,
        payload_json=text,
    )
    try:
        stored = await writer.store(delivery)
    except UnstorableDelivery:
        return _answer(400, "rejected", reason="body holds values the database cannot store")
    if stored:
        return _answer(202, "accepted", delivery=headers.delivery_id)
    return _answer(200, "duplicate", delivery=headers.delivery_id)

