"""Git over smart HTTP through `git http-backend`, with Gitea's auth rules and its server-side hooks.

As in Gitea, the repositories carry real pre-receive and post-receive hooks that call back into the server
(Gitea: `gitea hook` -> /api/internal/hook/*; here: a small Python script -> /_sim/internal/*). The hook
runs inside git's quarantine environment, so it computes "is this a force push" itself and sends the answer.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .gitrepo import ZERO_SHA
from .model import Access, Repo, User
from .web import DOER, SIM, AuthError, authenticate, sim_of

if TYPE_CHECKING:
    from .core import Sim

BACKEND_TIMEOUT_S = 120.0

HOOK_SCRIPT = '''#!{python} -SE
# Installed by gitea_sim: forwards ref updates to the simulator, as Gitea's `gitea hook` does.
# Plain sockets and no heavy imports: this runs on every push, twice.
import os, socket, sys
kind = {kind!r}
url = os.environ.get("SIM_HOOK_URL")
if not url:
    sys.exit(0)  # a push that did not come through the simulator's HTTP endpoint
zero = "0" * 40
lines = []
for line in sys.stdin.read().splitlines():
    old, new, ref = line.split(" ", 2)
    force = 0
    if kind == "pre-receive" and old != zero and new != zero:
        pid = os.posix_spawnp("git", ["git", "merge-base", "--is-ancestor", old, new], os.environ)
        force = 1 if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 else 0
    lines.append("%s %s %s %d" % (old, new, ref, force))
body = ("\\n".join(lines) + "\\n").encode()
hostport, _, path = url.split("://", 1)[1].partition("/")
host, _, port = hostport.partition(":")
head = ("POST /%s/%s HTTP/1.0\\r\\nHost: %s\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\n"
        "X-Sim-Internal: %s\\r\\nX-Sim-Repo: %s\\r\\nX-Sim-Pusher: %s\\r\\n\\r\\n") % (
    path, kind, hostport, len(body), os.environ["SIM_HOOK_SECRET"], os.environ["SIM_REPO_ID"],
    os.environ["SIM_PUSHER_ID"])
try:
    conn = socket.create_connection((host, int(port or 80)), timeout=60)
    conn.sendall(head.encode() + body)
    chunks = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    conn.close()
    answer = b"".join(chunks).split(b"\\r\\n\\r\\n", 1)[1].decode().splitlines()
except Exception as exc:
    print("{product}: internal error: %s" % exc, file=sys.stderr)
    sys.exit(1)
for msg in answer[1:]:
    print("{product}: " + msg, file=sys.stderr)
sys.exit(0 if answer and answer[0] == "ok" else 1)
'''


def install_hooks(sim: Sim, repo: Repo) -> None:
    product = "Forgejo" if sim.flavour == "forgejo" else "Gitea"
    hooks = repo.path / "hooks"
    hooks.mkdir(exist_ok=True)
    for kind in ("pre-receive", "post-receive"):
        path = hooks / kind
        path.write_text(HOOK_SCRIPT.format(python=sys.executable, kind=kind, product=product))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def token_scheme(request: web.Request) -> bool:
    """Whether the request authenticates with `Authorization: token|Bearer <t>` (not HTTP Basic)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() in ("token", "bearer") and bool(value.strip())


def _unauthorized(message: str = "Unauthorized") -> web.Response:
    return web.Response(status=401, text=message + "\n", headers={"WWW-Authenticate": 'Basic realm="Gitea"'})


async def handle_git(request: web.Request) -> web.StreamResponse:
    sim = sim_of(request)
    owner = request.match_info["owner"]
    name = request.match_info["repo"].removesuffix(".git")
    tail = request.match_info["tail"]
    service = request.query.get("service", "") if tail == "info/refs" else tail
    if service not in ("git-upload-pack", "git-receive-pack") and tail not in ("HEAD",):
        return web.Response(status=404, text="Not found\n")
    is_push = service == "git-receive-pack"
    if sim.flavour == "forgejo" and token_scheme(request):
        # Deliberately strict (see README, "Known divergences"): only HTTP Basic carries a token on git paths
        # here, so a client relying on `Authorization: token` is caught in tests.
        return _unauthorized()
    try:
        doer = authenticate(sim, request)
    except AuthError:
        return _unauthorized()
    request[DOER] = doer  # for the /_sim/log entry of this git call
    repo = sim.state.repo_by_name(owner, name)
    if repo is None:
        return web.Response(status=404, text="Repository not found\n") if doer else _unauthorized()
    access = sim.perms.access(repo, doer)
    if doer is None and (is_push or access < Access.READ):
        return _unauthorized()
    if access < Access.READ:
        return web.Response(status=404, text="Repository not found\n")
    if is_push and access < Access.WRITE:
        return web.Response(status=403, text="User permission denied\n")
    body = await request.read()
    rel = repo.path.relative_to(sim.state.data_dir / "repos")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({
        "GIT_PROJECT_ROOT": str(sim.state.data_dir / "repos"), "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1", "PATH_INFO": f"/{rel}/{tail}", "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string, "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": request.remote or "127.0.0.1",
        "REMOTE_USER": doer.login if doer else "",
        "SIM_HOOK_URL": f"{sim.base_url}/_sim/internal", "SIM_HOOK_SECRET": sim.internal_secret,
        "SIM_REPO_ID": str(repo.id), "SIM_PUSHER_ID": str(doer.id if doer else 0),
    })
    if request.headers.get("Git-Protocol"):
        env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
    if request.headers.get("Content-Encoding") == "gzip" and body[:2] == b"\x1f\x8b":
        env["HTTP_CONTENT_ENCODING"] = "gzip"
    proc = await asyncio.create_subprocess_exec(
        "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(body), BACKEND_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return web.Response(status=504, text="git http-backend timed out\n")
    head, sep, payload = out.partition(b"\r\n\r\n")
    if not sep:
        head, sep, payload = out.partition(b"\n\n")
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        elif key:
            headers[key.strip()] = value.strip()
    if proc.returncode and not out:
        return web.Response(status=500, text=err.decode(errors="replace"))
    return web.Response(status=status, body=payload, headers=headers)


# --- the hook callbacks (internal API) ---
async def _hook_input(request: web.Request) -> tuple[Sim, Repo, User, list[dict[str, Any]]]:
    """The hook's request: one `old new ref force` line per ref update, repo and pusher in headers."""
    sim = request.app[SIM]
    if request.headers.get("X-Sim-Internal") != sim.internal_secret:
        raise web.HTTPForbidden(text="internal API")
    repo = sim.state.repos[int(request.headers["X-Sim-Repo"])]
    pusher = sim.state.users[int(request.headers["X-Sim-Pusher"])]
    updates = []
    for line in (await request.text()).splitlines():
        old, new, ref, force = line.split(" ")
        updates.append({"old": old, "new": new, "ref": ref, "force": force == "1"})
    return sim, repo, pusher, updates


def _hook_answer(messages: list[str]) -> web.Response:
    return web.Response(text="\n".join(["refused" if messages else "ok", *messages]) + "\n")


async def pre_receive(request: web.Request) -> web.Response:
    sim, repo, pusher, updates = await _hook_input(request)
    messages: list[str] = []
    for up in updates:
        ref, new = str(up["ref"]), str(up["new"])
        if ref.startswith("refs/pull/"):
            messages.append(f"refusing to update {ref}: pull request refs are maintained by the server")
            continue
        if not ref.startswith("refs/heads/"):
            continue
        branch = ref.removeprefix("refs/heads/")
        if new == ZERO_SHA and branch == repo.default_branch:
            messages.append(f"branch {branch} is the default branch and cannot be deleted")
            continue
        prot = sim.perms.protection_for(repo, branch)
        if prot is None:
            continue
        if new == ZERO_SHA:
            messages.append(f"branch {branch} is protected from deletion")
        elif up.get("force") and not sim.perms.can_force_push(repo, prot, pusher):
            messages.append(f"branch {branch} is protected from force push")
        elif not sim.perms.can_push(repo, prot, pusher):
            messages.append(f"Not allowed to push to protected branch {branch}")
    sim.log.add("pre_receive", repo=sim.state.repo_full_name(repo), pusher=pusher.login,
                updates=updates, ok=not messages, messages=messages)
    return _hook_answer(messages)


async def post_receive(request: web.Request) -> web.Response:
    from .core import RefUpdate

    sim, repo, pusher, updates = await _hook_input(request)
    await sim.on_push(repo, pusher, [RefUpdate(str(u["old"]), str(u["new"]), str(u["ref"])) for u in updates])
    return _hook_answer([])


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_sim/internal/pre-receive", pre_receive)
    app.router.add_post("/_sim/internal/post-receive", post_receive)
    for method in ("GET", "POST"):
        app.router.add_route(method, r"/{owner}/{repo:[^/]+}/{tail:info/refs|git-upload-pack|git-receive-pack|HEAD}",
                             handle_git)
