"""Notifications end to end: the bot as it runs (its scheduler sends the outbox), the simulator with real
git and CI, PostgreSQL, and a JSON webhook receiver on 127.0.0.1 as the chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from gitea_sim.testing import SimHandle
from tests.e2e.conftest import World, eventually, make_world
from tests.receiver import Receiver, running_receiver

pytestmark = pytest.mark.slow


@pytest.fixture
async def told(sim: SimHandle, engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[tuple[World, Receiver]]:
    async with running_receiver() as receiver:
        extra = {"MERGE_BOT_NOTIFY_URLS": receiver.url("/merges")}
        async for world in make_world(sim, engine, tmp_path, extra=extra):
            yield world, receiver


async def test_the_running_bot_tells_the_chat_a_pr_was_merged_and_one_was_rejected(
    told: tuple[World, Receiver],
) -> None:
    world, receiver = told
    good = await world.open_pr("feature-a", {"feature-a.flag": "a\n"})
    bad = await world.open_pr("broken", {"broken.flag": "x\n"})
    await world.queue(good)
    assert (await world.final_entry(good)).state == "merged"
    await world.queue(bad)
    assert (await world.final_entry(bad)).state == "failed"

    async def both() -> dict[str, Any] | None:
        said = {body["title"]: body for body in receiver.bodies}
        wanted = (f"{world.repo}: PR #{good} merged", f"{world.repo}: PR #{bad} rejected")
        return said if all(title in said for title in wanted) else None

    said = await eventually(both, within=60, what="the chat to hear of both PRs")
    assert len(receiver.got) == 2  # once each
    merged = said[f"{world.repo}: PR #{good} merged"]["message"]
    assert f"PR #{good}" in merged and f"/queue/{world.repo}/pull/{good}" in merged
    rejected = said[f"{world.repo}: PR #{bad} rejected"]["message"]
    assert "ci/test reported failure (checks_failed)" in rejected and f"/queue/{world.repo}/pull/{bad}" in rejected
