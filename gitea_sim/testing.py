"""Run the simulator in-process for tests, and set scenarios up through its REST API and real git.

    async with running_sim(tmp_path) as gitea:
        alice = await gitea.create_user("alice")
        repo = await gitea.create_repo(alice, "demo")
        sha = await gitea.push_commit(repo, alice, "feature", {"a.txt": "hi\\n"}, base="main")
        pr = await gitea.create_pr(repo, alice, head="feature", base="main", title="Add a")

Everything the helpers do goes through HTTP (API and git smart HTTP), as a script against a real Gitea would;
the `/_sim/` calls (CI, faults, log) are the only simulator-specific ones.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from .app import create_app
from .core import Sim
from .gitrepo import run_git
from .web import SIM


@dataclass(frozen=True)
class SimUser:
    login: str
    password: str
    token: str
    email: str


class SimApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path} -> {status}: {body}")
        self.status = status
        self.body = body


class SimHandle:
    """A running simulator: `.url`, `.admin_token`, `.sim` (in-process state) and setup helpers."""

    def __init__(self, url: str, admin_token: str, sim: Sim, workdir: Path, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.admin_token = admin_token
        self.sim = sim
        self.workdir = workdir
        self.session = session
        self.admin = SimUser("admin", "admin-password", admin_token, "admin@sim.invalid")

    # --- raw API ---
    async def request(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                      params: dict[str, str] | None = None, basic: tuple[str, str] | None = None,
                      headers: dict[str, str] | None = None,
                      form: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON or None, headers). `path` is relative to the server, e.g. /api/v1/version.
        `form` sends the body application/x-www-form-urlencoded instead of JSON."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"token {token}"
        if basic is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        async with self.session.request(method, self.url + path, json=json, params=params, data=form,
                                        headers=hdrs) as resp:
            raw = await resp.read()
            data: Any = None
            if raw and resp.content_type == "application/json":
                data = await resp.json()
            return resp.status, data, dict(resp.headers)

    async def api(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                  params: dict[str, str] | None = None, expect: int | tuple[int, ...] = (200, 201, 204)) -> Any:
        """Call /api/v1{path}; raise SimApiError unless the status is expected."""
        status, data, _ = await self.request(method, "/api/v1" + path, token=token or self.admin_token,
                                             json=json, params=params)
        if status not in ((expect,) if isinstance(expect, int) else expect):
            raise SimApiError(method, path, status, data)
        return data

    async def sim_api(self, method: str, path: str, json: Any = None) -> Any:
        status, data, _ = await self.request(method, path, token=self.admin_token, json=json)
        if status >= 300:
            raise SimApiError(method, path, status, data)
        return data

    # --- scenario setup through the Gitea API ---
    async def create_user(self, login: str, password: str = "", admin: bool = False) -> SimUser:
        password = password or f"pw-{secrets.token_hex(6)}"
        email = f"{login.lower()}@example.invalid"
        await self.api("POST", "/admin/users", json={"username": login, "email": email, "password": password,
                                                     "must_change_password": False})
        if admin:
            self.sim.state.user_by_name(login).is_admin = True  # type: ignore[union-attr]
        status, data, _ = await self.request("POST", f"/api/v1/users/{login}/tokens",
                                             basic=(login, password),
                                             json={"name": "test", "scopes": ["all"]})
        if status != 201:
            raise SimApiError("POST", f"/users/{login}/tokens", status, data)
        return SimUser(login, password, data["sha1"], email)

    async def create_org(self, owner: SimUser, name: str) -> str:
        await self.api("POST", "/orgs", token=owner.token, json={"username": name})
        return name

    async def create_repo(self, owner: SimUser, name: str, *, org: str | None = None, private: bool = False,
                          auto_init: bool = True, default_branch: str = "main") -> str:
        body = {"name": name, "private": private, "auto_init": auto_init, "default_branch": default_branch}
        path = f"/orgs/{org}/repos" if org else "/user/repos"
        data = await self.api("POST", path, token=owner.token, json=body)
        return str(data["full_name"])

    async def fork(self, repo: str, user: SimUser, *, org: str | None = None, name: str | None = None) -> str:
        """`POST /repos/{repo}/forks` as `user` (into `org` when given); the fork's "owner/name"."""
        body = {key: value for key, value in (("organization", org), ("name", name)) if value is not None}
        data = await self.api("POST", f"/repos/{repo}/forks", token=user.token, json=body, expect=202)
        return str(data["full_name"])

    async def add_collaborator(self, repo: str, login: str, permission: str = "write",
                               as_user: SimUser | None = None) -> None:
        await self.api("PUT", f"/repos/{repo}/collaborators/{login}", json={"permission": permission},
                       token=(as_user or self.admin).token)

    async def protect(self, repo: str, branch: str, **opts: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/branch_protections",
                                              json={"rule_name": branch, **opts})
        return data

    async def create_label(self, repo: str, name: str, color: str = "#00aabb") -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/labels", json={"name": name, "color": color})
        return data

    async def add_hook(self, repo: str, url: str, secret: str, events: list[str] | None = None,
                       branch_filter: str = "*") -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/hooks", json={
            "type": "gitea", "active": True, "branch_filter": branch_filter,
            "config": {"url": url, "content_type": "json", "secret": secret},
            "events": events or ["push", "pull_request", "issue_comment", "pull_request_comment", "status"]})
        return data

    async def create_pr(self, repo: str, user: SimUser, head: str, base: str = "main", title: str = "",
                        body: str = "") -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/pulls", token=user.token,
                                              json={"head": head, "base": base, "title": title or head,
                                                    "body": body})
        return data

    async def get_pr(self, repo: str, index: int, user: SimUser | None = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.api("GET", f"/repos/{repo}/pulls/{index}",
                                              token=(user or self.admin).token)
        return data

    async def comment(self, repo: str, index: int, user: SimUser, body: str) -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/issues/{index}/comments", token=user.token,
                                              json={"body": body})
        return data

    async def set_status(self, repo: str, sha: str, state: str, context: str = "ci/test",
                         user: SimUser | None = None) -> dict[str, Any]:
        data: dict[str, Any] = await self.api("POST", f"/repos/{repo}/statuses/{sha}",
                                              token=(user or self.admin).token,
                                              json={"state": state, "context": context})
        return data

    async def merge(self, repo: str, index: int, user: SimUser, do: str = "merge", **extra: Any) -> int:
        status, _, _ = await self.request("POST", f"/api/v1/repos/{repo}/pulls/{index}/merge", token=user.token,
                                          json={"Do": do, **extra})
        return status

    # --- the simulator's own surface ---
    async def set_ci(self, repo: str, command: str, context: str = "ci/test", delay_s: float = 0,
                     branches: list[str] | None = None, runners: int = 0, actions: bool = True) -> None:
        await self.sim_api("PUT", f"/_sim/ci/{repo}", {"command": command, "context": context, "delay_s": delay_s,
                                                      "branches": branches or ["*"], "runners": runners,
                                                      "actions": actions})

    async def release_ci(self, repo: str) -> list[dict[str, Any]]:
        """Let the CI runs held back by a ``silent`` fault run now (each reports its real verdict)."""
        data: list[dict[str, Any]] = await self.sim_api("POST", f"/_sim/ci/{repo}/release")
        return data

    async def features(self, **features: bool) -> dict[str, bool]:
        """Turn on (or off) what the simulated server offers beyond Gitea 1.25, e.g. ``actions_rerun=True``."""
        data: dict[str, bool] = await self.sim_api("PUT", "/_sim/features", features)
        return data

    async def fault(self, **spec: Any) -> dict[str, Any]:
        data: dict[str, Any] = await self.sim_api("POST", "/_sim/faults", spec)
        return data

    async def log(self, kind: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        params = f"?since={since}" + (f"&kind={kind}" if kind else "")
        data: list[dict[str, Any]] = await self.sim_api("GET", "/_sim/log" + params)
        return data

    async def wait_idle(self, within_s: float = 30.0) -> None:
        await self.sim.wait_idle(within_s)

    # --- real git through smart HTTP ---
    def git_url(self, repo: str, user: SimUser) -> str:
        host = self.url.split("://", 1)[1]
        return f"http://{quote(user.login)}:{user.token}@{host}/{repo}.git"

    async def clone(self, repo: str, user: SimUser) -> Path:
        """A working clone for this user (reused and fetched on later calls)."""
        dest = self.workdir / user.login / repo.replace("/", "__")
        if (dest / ".git").exists():
            await self._git(dest, "fetch", "--quiet", "--prune", "origin")
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        await run_git(["clone", "--quiet", self.git_url(repo, user), str(dest)])
        # Send the credentials up front, as a configured credential helper would: no 401 round trip per call.
        basic = base64.b64encode(f"{user.login}:{user.token}".encode()).decode()
        await self._git(dest, "config", "http.extraHeader", f"Authorization: Basic {basic}")
        await self._git(dest, "config", "user.name", user.login)
        await self._git(dest, "config", "user.email", user.email)
        return dest

    async def push_commit(self, repo: str, user: SimUser, branch: str, files: dict[str, str | None],
                          message: str = "", base: str | None = None, force: bool = False) -> str:
        """Commit `files` (None deletes) on `branch` (started from `base` when given, else its current tip)
        and push it. Returns the new SHA; raises SimApiError(status=0, body=stderr) when the push is refused."""
        work = await self.clone(repo, user)
        start = f"origin/{base}" if base else f"origin/{branch}"
        code, _, _ = await run_git(["-C", str(work), "rev-parse", "--verify", "--quiet", start], check=False)
        if code != 0:
            start = "HEAD"
        await self._git(work, "checkout", "--quiet", "-B", branch, start)
        for name, content in files.items():
            path = work / name
            if content is None:
                path.unlink(missing_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        await self._git(work, "add", "-A")
        await self._git(work, "commit", "--quiet", "--allow-empty", "-m", message or f"Update {branch}")
        sha = (await self._git(work, "rev-parse", "HEAD")).strip()
        await self.push(repo, user, f"{sha}:refs/heads/{branch}", force=force)
        return sha

    async def push(self, repo: str, user: SimUser, refspec: str, force: bool = False) -> str:
        work = await self.clone(repo, user)
        args = ["-C", str(work), "push", "--porcelain", "origin", refspec] + (["--force"] if force else [])
        code, out, err = await run_git(args, check=False)
        if code != 0:
            raise SimApiError("git push", refspec, 0, err + out)
        return out

    async def _git(self, work: Path, *args: str) -> str:
        _, out, _ = await run_git(["-C", str(work), *args])
        return out


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_sim(tmp_path: Path, flavour: str = "gitea", admin_token: str = "") -> AsyncIterator[SimHandle]:
    """Start the simulator on 127.0.0.1 on a free port for the duration of the block."""
    admin_token = admin_token or secrets.token_hex(20)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(tmp_path / "gitea-data", admin_token, flavour, url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    session = aiohttp.ClientSession()
    try:
        yield SimHandle(url, admin_token, app[SIM], tmp_path / "gitea-work", session)
    finally:
        await session.close()
        await runner.cleanup()
