"""Shared fixtures: a real PostgreSQL (embedded, started here, or MERGE_BOT_TEST_DATABASE_URL), one
migrated template database, and a fresh database cloned from it for every test that asks."""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, load_settings
from bot.db.migrate import upgrade_async
from bot.db.session import make_engine
from bot.embedded_pg import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "tests" / "contract" / "gitea"
PAYLOADS = CONTRACT / "payloads"
SWAGGER = CONTRACT / "gitea-swagger-v1.25.4.json"
SWAGGER_NEWER = CONTRACT / "gitea-swagger-newer.json"  # routes of a newer Gitea, on top of 1.25.4's
TEMPLATE = "merge_bot_test_template"
_counter = itertools.count()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database, for creating test databases."""
    external = os.environ.get("MERGE_BOT_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's basetemp: a concurrent pytest run prunes old basetemps, server and all.
    directory = Path(tempfile.mkdtemp(prefix="merge-bot-test-pg-"))
    server = EmbeddedPostgres(directory / "data", database="postgres")
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_url(pg_server_url: str) -> str:
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    url = with_database(pg_server_url, TEMPLATE)
    await upgrade_async(url)
    return url


@pytest.fixture
async def database_url(pg_server_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"merge_bot_test_{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(asyncpg_dsn(pg_server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        yield with_database(pg_server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def webhook_secret() -> str:
    return "whsec-" + secrets.token_hex(16)


@pytest.fixture
def settings(webhook_secret: str, tmp_path: Path) -> Settings:
    return load_settings(
        {
            "MERGE_BOT_WEBHOOK_SECRET": webhook_secret,
            "MERGE_BOT_GITEA_TOKEN": "tok-" + secrets.token_hex(16),
            "MERGE_BOT_REPOS": "example/example,anbraten/test-repo,a_nice_user/hello_world_ci",
            "MERGE_BOT_DATA_DIR": str(tmp_path / "data"),
        }
    )
