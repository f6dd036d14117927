"""`python -m gitea_sim serve ...` starts a server whose admin owns the given token."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from gitea_sim.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_serve_command(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gitea_sim",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data",
        str(tmp_path / "data"),
        "--admin-token",
        "t0ken",
        cwd=ROOT,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(
                        f"http://127.0.0.1:{port}/api/v1/user", headers={"Authorization": "token t0ken"}
                    ) as resp:
                        user = await resp.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("server did not start")
        assert user["login"] == "admin" and user["is_admin"] is True
    finally:
        proc.terminate()
        await proc.wait()
