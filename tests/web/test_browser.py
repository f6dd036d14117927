"""The queue page in a real browser (headless Chromium through chromedriver) while a real queue runs: the bot,
the simulator and CI end to end. The page, loaded once, follows the running attempt and the line as they
change without a reload; screenshots land in the test's directory (their paths are printed).

Chromium comes from Debian (``apt-get install chromium chromium-driver``). Without it this test is skipped,
saying how to install it, unless ``MERGE_BOT_REQUIRE_BROWSER=1`` (which ``.ci/run`` sets after installing it)
says that a missing browser is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import SimHandle, running_sim
from tests.e2e.conftest import World, make_world
from tests.web import spec

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# What the page shows right now, read through the DOM the way a reader sees it.
READ_PAGE = """
const running = document.querySelector('[data-testid="running"]');
const numbers = (selector) => Array.from(document.querySelectorAll(selector)).map((el) => Number(el.dataset.pull));
return {
  marker: window.__loadedOnce || null,
  running: running && running.dataset.pulls ? running.dataset.pulls.split(' ').map(Number) : [],
  queue: numbers('[data-testid="queue"] .entry'),
  recent: Array.from(document.querySelectorAll('[data-testid="recent"] .outcome')).map(
    (el) => [Number(el.dataset.pull), el.className.replace('outcome ', '')]),
};
"""


def browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "Chromium and chromedriver are not installed (Debian: apt-get install -y chromium chromium-driver)"
    if os.environ.get("MERGE_BOT_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + "; MERGE_BOT_REQUIRE_BROWSER=1 requires them")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    chromium, driver_path = browser_binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1100,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimHandle]:
    async with running_sim(tmp_path) as handle:
        yield handle


@pytest.fixture
async def slow_ci_world(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[World]:
    async for world in make_world(sim, engine, tmp_path):
        # CI that takes a few seconds, so that a person (and the test) can watch the line move.
        await sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=2.5)
        yield world


async def test_the_page_follows_the_queue_live(slow_ci_world: World, browser: Any, tmp_path: Path) -> None:
    world = slow_ci_world
    base = str(world.settings.external_url).rstrip("/")
    first = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    second = await world.open_pr("feature-b", {"feature-b.flag": "b\n"})  # green alone, red on top of the first
    third = await world.open_pr("feature-c", {"c.txt": "c\n"})
    for number in (first, second, third):
        await world.queue(number)
        await world.in_state(number, "testing" if number == first else "queued", within=30)

    await asyncio.to_thread(browser.get, f"{base}/queue/{world.repo}")
    await asyncio.to_thread(browser.execute_script, "window.__loadedOnce = 'yes';")
    seen: list[dict[str, Any]] = []
    shots: list[Path] = []
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        while True:
            now = await asyncio.to_thread(browser.execute_script, READ_PAGE)
            if not seen or now != seen[-1]:
                seen.append(now)
            if not shots and now["running"] and now["queue"]:
                shots.append(await screenshot(browser, tmp_path / "queue-page-running.png"))
                await check_api(http, base, world)
            if len(now["recent"]) == 3:
                break
            assert time.monotonic() < deadline, f"the page did not show three outcomes: {seen}"
            await asyncio.sleep(0.2)
        await check_api(http, base, world)

    assert all(view["marker"] == "yes" for view in seen), "the page reloaded itself"
    running = [view["running"] for view in seen if view["running"]]
    assert running[0] == [first]
    assert [third] in running, f"the page never showed #{third} under test: {seen}"
    lines = [view["queue"] for view in seen]
    assert lines[0] == [second, third] and lines[-1] == [], f"the line did not move on the page: {lines}"
    assert dict(seen[-1]["recent"]) == {first: "merged", second: "failed", third: "merged"}
    shots.append(await screenshot(browser, tmp_path / "queue-page-drained.png"))
    await asyncio.to_thread(browser.set_window_size, 390, 844)  # a phone
    await asyncio.to_thread(browser.get, f"{base}/queue/{world.repo}/pull/{second}")
    shots.append(await screenshot(browser, tmp_path / "pull-page-phone.png"))
    text = await asyncio.to_thread(lambda: browser.find_element("tag name", "body").text)
    assert "failed: ci/test reported failure" in text
    width = await asyncio.to_thread(browser.execute_script, "return document.documentElement.scrollWidth;")
    assert width <= 390, "the PR page scrolls sideways on a phone"
    for shot in shots:
        print(f"screenshot: {shot}")


async def screenshot(browser: Any, path: Path) -> Path:
    assert await asyncio.to_thread(browser.save_screenshot, str(path))
    return path


async def check_api(http: aiohttp.ClientSession, base: str, world: World) -> None:
    """The live bot's JSON answers fit the OpenAPI file."""
    owner, name = world.repo.split("/")
    for template, path in (
        ("/api/v1/trains", "/api/v1/trains"),
        ("/api/v1/repos/{owner}/{repo}/trains", f"/api/v1/repos/{owner}/{name}/trains"),
        ("/api/v1/repos/{owner}/{repo}/entries", f"/api/v1/repos/{owner}/{name}/entries"),
        ("/api/v1/repos/{owner}/{repo}/attempts", f"/api/v1/repos/{owner}/{name}/attempts"),
        ("/api/v1/repos/{owner}/{repo}/pulls/{number}", f"/api/v1/repos/{owner}/{name}/pulls/1"),
    ):
        async with http.get(base + path) as response:
            spec.check(template, "GET", response.status, response.content_type, await response.read())


READ_CHAIN = """
return Array.from(document.querySelectorAll('[data-testid="attempt"]')).map((el) => ({
  attempt: Number(el.dataset.attempt),
  parent: el.dataset.parent ? Number(el.dataset.parent) : null,
  pulls: el.dataset.pulls ? el.dataset.pulls.split(' ').map(Number) : [],
}));
"""


async def test_the_page_shows_a_chain_of_candidates_under_test_live(
    sim: SimHandle, engine: AsyncEngine, browser: Any, tmp_path: Path
) -> None:
    """With a speculative chain, the page (loaded once) shows several attempts under test at once, each after
    the candidate it is built on, and then every PR merged."""
    chains = {"MERGE_BOT_MAX_PARALLEL": "3", "MERGE_BOT_BATCH_MAX": "1", "MERGE_BOT_FLAKY_RETRIES": "0"}
    async for world in make_world(sim, engine, tmp_path, extra=chains):
        await sim.set_ci(world.repo, "sh ci.sh", context="ci/test", delay_s=3.0, branches=["merge-bot/**"])
        numbers = [await world.open_pr(f"chain-{n}", {f"chain-{n}.txt": f"{n}\n"}) for n in range(4)]
        base = str(world.settings.external_url).rstrip("/")
        await asyncio.to_thread(browser.get, f"{base}/queue/{world.repo}")
        for number in numbers:
            await world.queue(number)
        deepest: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while True:
            chain = await asyncio.to_thread(browser.execute_script, READ_CHAIN)
            if len(chain) > len(deepest):
                deepest = chain
                if len(chain) >= 2:
                    await screenshot(browser, tmp_path / "queue-page-chain.png")
            done = await asyncio.to_thread(browser.execute_script, READ_PAGE)
            if len(done["recent"]) == len(numbers):
                break
            assert time.monotonic() < deadline, f"the queue did not drain on the page; deepest chain {deepest}"
            await asyncio.sleep(0.2)
        assert len(deepest) >= 2, f"the page never showed two attempts under test at once: {deepest}"
        ids = [link["attempt"] for link in deepest]
        assert [link["parent"] for link in deepest[1:]] == ids[:-1]  # each on the candidate before it
        assert dict(done["recent"]) == dict.fromkeys(numbers, "merged")
