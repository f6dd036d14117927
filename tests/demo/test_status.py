"""``merge-bot status``: the queue page in the terminal, read from the database the settings name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.web import spec
from tests.web.conftest import seed


def status(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MERGE_BOT_")}
    env.update(MERGE_BOT_DATABASE_URL=database_url, COLUMNS="140")  # no webhook secret: status needs none
    return subprocess.run(
        [sys.executable, "-m", "bot", "status", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_status_shows_the_queue_and_its_json_is_the_apis(engine: AsyncEngine, database_url: str) -> None:
    await seed(engine)
    shown = status(database_url)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "acme/app → main" in out and "4 active" in out
    assert "Chain: 1 under test · window 4 of at most 4 · base main at aaaaaaaaaa" in out
    assert re.search(r"attempt \d+ testing  #3 Add multiply.*· on the base tip aaaaaaaaaa", out)
    assert "candidate cccccccccc on merge-bot/main/3" in out
    assert "ci/test pending" in out and "lint success" in out
    assert out.index("#5") < out.index("#4") < out.index("#6")  # the line in order, the waiting one last
    assert "failed: ci/test reported failure" in out and "cancelled by maint" in out
    as_json = status(database_url, "--json", "acme/app")
    assert as_json.returncode == 0, as_json.stderr
    body = as_json.stdout.encode()
    decoded = spec.check("/api/v1/trains", "GET", 200, "application/json", body)
    assert [entry["pull"]["number"] for entry in decoded["trains"][0]["queue"]] == [5, 4]
    assert json.loads(status(database_url, "--json", "nobody/nothing").stdout)["trains"] == []
    assert "Nothing has been queued in nobody/nothing yet." in status(database_url, "nobody/nothing").stdout
