"""The one seam to apprise: one message to one target URL, in a worker thread, never longer than a timeout.

apprise is synchronous (``requests`` underneath): each call runs in a thread so the event loop goes on, and
is bounded twice — apprise's own call timeout (its result says TIMEOUT, the plugin's sockets time out after
it) and an outer wait a little longer, so a hanging receiver costs the sender at most ``timeout`` seconds.
The error text returned is apprise's own words; the caller redacts it before it is stored or logged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import apprise

GRACE_SECONDS = 2.0  # the outer wait's margin over apprise's own timeout
SEVERITIES = {
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
    "warning": apprise.NotifyType.WARNING,
    "failure": apprise.NotifyType.FAILURE,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: bool
    error: str = ""


def _asset() -> apprise.AppriseAsset:
    return apprise.AppriseAsset(app_id="merge-bot", app_desc="merge-bot, a merge queue")


def understood(url: str) -> bool:
    """Whether apprise knows the URL's service and finds the URL well formed (nothing is sent)."""
    return apprise.Apprise.instantiate(url, asset=_asset()) is not None


def _send(url: str, title: str, body: str, severity: str, timeout: float) -> Outcome:
    sender = apprise.Apprise(asset=_asset())
    if not sender.add(url):
        return Outcome(False, "apprise does not understand this URL")
    result = sender.notify(
        body=body,
        title=title,
        notify_type=SEVERITIES.get(severity, apprise.NotifyType.INFO),
        body_format=apprise.NotifyFormat.TEXT,
        timeout=timeout,
    )
    if result:
        return Outcome(True)
    said = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    return Outcome(False, f"{result.status.name.lower()}: {'; '.join(said) or 'no reason given'}")


async def send(url: str, title: str, body: str, *, severity: str = "info", seconds: float = 10.0) -> Outcome:
    """Send one message; ``seconds``: the longest the send may take (apprise's timeout, then the outer one)."""
    try:
        async with asyncio.timeout(seconds + GRACE_SECONDS):
            return await asyncio.to_thread(_send, url, title, body, severity, seconds)
    except TimeoutError:
        return Outcome(False, f"no answer within {seconds:g} s")
    except Exception as exc:  # a plugin that raises is a failed try, not a dead sender
        return Outcome(False, f"{type(exc).__name__}: {exc}")
