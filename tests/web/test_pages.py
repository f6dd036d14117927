"""The queue page and a PR's page, as served (no JavaScript): what a reader sees, escaping, the live
fragment with its ETag, and the read token."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import create_app
from tests.clocks import StillClock
from tests.web.conftest import NOW, Client, Seeded, web_settings


def text_of(html: str) -> str:
    """The page's visible text, tags dropped and whitespace folded."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def order_of(html: str, block: str) -> list[int]:
    match = re.search(rf'data-testid="{block}".*?</[ou]l>', html, re.S)
    assert match, f"no {block} list"
    return [int(number) for number in re.findall(r'class="entry" data-pull="(\d+)"', match.group(0))]


async def page(client: Client, path: str, status: int = 200, **headers: str) -> str:
    response = await client.get(path, headers=headers)
    assert response.status == status, await response.text()
    return await response.text()


async def test_the_queue_page_shows_the_running_attempt_the_line_and_the_last_outcomes(
    client: Client, seeded: Seeded
) -> None:
    html = await page(client, "/")
    shown = text_of(html)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    # The running attempt: its PR, candidate, checks with their links, time left to the deadline.
    assert re.search(r'data-testid="running" data-attempt="\d+" data-pulls="3"', html)
    assert "cccccccccc on merge-bot/main/3 from aaaaaaaaaa" in shown
    assert '<a href="https://ci.example.org/runs/3">ci/test</a> <strong>pending</strong>' in html
    assert "lint success" in shown
    assert "57 min left" in shown
    assert (
        ">merge-bot<" not in html.split('class="checks"')[1].split("</ul>")[0]
    )  # the bot's own context is not a check
    # The line: priority first, then time queued; positions, approver, dependencies.
    assert order_of(html, "queue") == [5, 4]
    assert "1 #5 Fix the login crash priority 5 · approved by maint at 5555555555" in shown
    assert "2 #4 Document the API priority 0" in shown
    assert order_of(html, "waiting") == [6]
    assert "after #4, acme/lib#9" in shown
    # The last outcomes, newest first, with reasons in the bot's words.
    assert re.findall(r'class="outcome (\w+)" data-pull="(\d+)"', html) == [
        ("cancelled", "7"),
        ("failed", "2"),
        ("merged", "1"),
    ]
    assert "failed: ci/test reported failure" in shown
    assert "cancelled by maint" in shown
    assert "merged as aaaaaaaaaa" in shown
    assert "4 active" in shown


async def test_what_others_wrote_is_escaped_and_only_web_links_are_followed(client: Client, seeded: Seeded) -> None:
    html = await page(client, "/queue/acme/app")
    assert "<script>alert(1)</script>" not in html
    assert "Add multiply &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html  # lint's target URL is shown as text, not as a link


async def test_a_repository_page_and_its_fragment(client: Client, seeded: Seeded) -> None:
    html = await page(client, "/queue/ACME/App")  # owner and name are case-insensitive, as on Gitea
    assert "<h1>Queue of acme/app</h1>" in html
    assert 'data-src="/queue/ACME/App?partial=1"' in html
    response = await client.get("/queue/acme/app?partial=1")
    fragment = await response.text()
    assert response.status == 200 and "<html" not in fragment and 'data-testid="running"' in fragment
    etag = response.headers["ETag"]
    again = await client.get("/queue/acme/app?partial=1", headers={"If-None-Match": etag})
    assert again.status == 304  # nothing changed: the polling page gets no body
    empty = await page(client, "/queue/acme/lib")
    assert "Nothing has been queued in acme/lib yet" in text_of(empty)
    await page(client, "/queue/nobody/nothing", status=404)


async def test_a_pr_page_tells_its_history_from_the_audit_log(client: Client, seeded: Seeded) -> None:
    shown = text_of(await page(client, "/queue/acme/app/pull/2"))
    assert "#2 Break the build" in shown
    assert shown.index("queued at 2222222222 by maint") < shown.index("test started on aaaaaaaaaa")
    assert shown.index("candidate pushed for CI: bbbbbbbbbb on merge-bot/main/2") < shown.index(
        "failed: ci/test reported failure details"
    )
    testing = text_of(await page(client, "/queue/acme/app/pull/6"))
    assert "queued, waiting for dependencies or approvals at 6666666666 by maint after #4, acme/lib#9" in testing
    assert "acme/app#99 has never been queued" in text_of(await page(client, "/queue/acme/app/pull/99", status=404))


@pytest.fixture
async def private(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], engine: AsyncEngine, tmp_path: Path
) -> Client:
    settings = web_settings(tmp_path, MERGE_BOT_READ_TOKEN="s3cret-read")
    return await aiohttp_client(create_app(settings, engine=engine, clock=StillClock(NOW)))


@pytest.mark.parametrize("path", ["/", "/queue/acme/app", "/queue/acme/app/pull/2", "/api/v1/trains", "/metrics"])
async def test_a_read_token_closes_every_reading_route(private: Client, seeded: Seeded, path: str) -> None:
    refused = await private.get(path)
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith('Basic realm="merge-bot"')
    assert "Add subtract" not in await refused.text()
    wrong = await private.get(path, headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401
    bearer = await private.get(path, headers={"Authorization": "Bearer s3cret-read"})
    assert bearer.status == 200
    basic = base64.b64encode(b"anyone:s3cret-read").decode()
    assert (await private.get(path, headers={"Authorization": f"Basic {basic}"})).status == 200


async def test_health_webhook_and_static_files_stay_open(private: Client, seeded: Seeded) -> None:
    assert (await private.get("/healthz")).status == 200
    assert (await private.get("/static/queue.css")).status == 200
    unsigned = await private.post("/webhook", data=b"{}")
    assert unsigned.status == 401
    assert (await unsigned.json())["reason"] == "missing or invalid signature"  # the webhook's own check
