"""Reading files from the real git repository: GET .../contents/{filepath} and .../raw/{filepath}, as
routers/api/v1/repo/file.go (GetContents, GetContentsList, GetRawFile) with services/repository/files/
content.go (GetContentsOrList) and services/context/api.go (RepoRefForAPI, for raw) do it in Gitea 1.25."""

from __future__ import annotations

import base64
import posixpath
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..core import Sim
from ..gitrepo import GitRepo, TreeEntry
from ..model import Repo
from ..web import ApiError, json_response, not_found, repo_ctx, sim_of

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_BLOB_SIZE = 10 * 1024 * 1024  # setting.API.DefaultMaxBlobSize: larger files come without content
KINDS = {"100644": "file", "100755": "file", "120000": "symlink", "040000": "dir", "160000": "submodule"}


def _escape(path: str) -> str:
    return "/".join(quote(part, safe="") for part in path.split("/"))


def _clean(path: str) -> str:
    """CleanGitTreePath: the path relative to the root, without `.` and `..` ("" for the root)."""
    cleaned = posixpath.normpath("/" + path).lstrip("/")
    return "" if cleaned == "." else cleaned


def _not_exist(sim: Sim, message: str, ident: str, rel_path: str) -> ApiError:
    return ApiError(404, body={"errors": [f"object does not exist [id: {ident}, rel_path: {rel_path}]"],
                               "message": message, "url": f"{sim.base_url}/api/swagger"})


async def resolve_ref(git: GitRepo, ref: str) -> tuple[str, str] | None:
    """ResolveRefCommit: a branch, else a tag, else a full commit id: (web link path, commit sha)."""
    sha = await git.branch_sha(ref)
    if sha is not None:
        return f"branch/{_escape(ref)}", sha
    sha = await git.resolve(f"refs/tags/{ref}")
    if sha is not None:
        return f"tag/{_escape(ref)}", sha
    if FULL_SHA.match(ref):
        sha = await git.resolve(ref)
        if sha is not None:
            return f"commit/{sha}", sha
    return None


async def _entry_at(sim: Sim, git: GitRepo, commit: str, path: str) -> TreeEntry:
    """GetTreeEntryByPath: a missing directory on the way names that directory, a missing last part the
    whole path."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        found = await git.tree_entry(commit, "/".join(parts[:depth]))
        if found is None or found.kind != "tree":
            raise _not_exist(sim, "GetContentsOrList", "", parts[depth - 1])
    entry = await git.tree_entry(commit, path)
    if entry is None:
        raise _not_exist(sim, "GetContentsOrList", "", path)
    return entry


async def _contents(sim: Sim, repo: Repo, entry: TreeEntry, commit: str, ref: str, link: str,
                    with_content: bool) -> dict[str, Any]:
    """One ContentsResponse (field order of modules/structs/repo_file.go)."""
    git = sim.git(repo)
    api, html = sim.ser.repo_api(repo), sim.ser.repo_html(repo)
    kind = KINDS.get(entry.mode, "")
    self_url = f"{api}/contents/{_escape(entry.path)}?ref={quote(ref, safe='')}"
    data: dict[str, Any] = {"name": entry.name, "path": entry.path, "sha": entry.sha}
    last = await git.last_commit(commit, entry.path)
    if last is not None:
        data.update({"last_commit_sha": last[0], "last_committer_date": last[1], "last_author_date": last[2]})
    encoding = content = target = None
    if kind == "file" and with_content and entry.size <= MAX_BLOB_SIZE:
        encoding, content = "base64", base64.b64encode(await git.blob(entry.sha)).decode()
    if kind == "symlink":
        target = (await git.blob(entry.sha))[:1024].decode(errors="replace")
    html_url = git_url = None
    if kind != "submodule":
        html_url = f"{html}/src/{link}/{_escape(entry.path)}"
        git_url = f"{api}/git/blobs/{entry.sha}"
    download = f"{html}/raw/{link}/{_escape(entry.path)}" if kind in ("file", "symlink") else None
    data.update({"type": kind, "size": entry.size, "encoding": encoding, "content": content, "target": target,
                 "url": self_url, "html_url": html_url, "git_url": git_url, "download_url": download,
                 "submodule_git_url": None, "_links": {"self": self_url, "git": git_url, "html": html_url}})
    return data


async def _get(request: web.Request, path: str) -> web.Response:
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    git = sim.git(repo)
    ref = request.query.get("ref", "").strip() or repo.default_branch
    resolved = await resolve_ref(git, ref)
    if resolved is None:
        raise ApiError(404, body={"errors": [f"object does not exist [id: {ref}, rel_path: ]"],
                                  "message": "not found", "url": f"{sim.base_url}/api/swagger"})
    link, commit = resolved
    tree_path = _clean(path)
    if tree_path:
        entry = await _entry_at(sim, git, commit, tree_path)
        if entry.kind != "tree":
            return json_response(await _contents(sim, repo, entry, commit, ref, link, with_content=True))
    listing = await git.list_tree(commit, tree_path)
    return json_response([await _contents(sim, repo, e, commit, ref, link, with_content=False) for e in listing])


async def get_contents(request: web.Request) -> web.Response:
    """A file: its metadata and base64 content; a directory: its entries without content."""
    return await _get(request, request.match_info["filepath"])


async def list_contents(request: web.Request) -> web.Response:
    return await _get(request, "")


async def _legacy_ref(git: GitRepo, repo: Repo, path: str, ref: str) -> tuple[str | None, str]:
    """getRefNameLegacy: in `ref/path`, the shortest leading part that is a branch, else a tag, else a full
    commit id in front; else the default branch with `path` as given (an unknown `ref` is ignored)."""
    joined = posixpath.join(ref, path) if ref else path
    parts = joined.split("/")
    for prefix in ("refs/heads/", "refs/tags/"):
        for depth in range(1, len(parts) + 1):
            sha = await git.resolve(prefix + "/".join(parts[:depth]))
            if sha is not None:
                return sha, "/".join(parts[depth:])
    if FULL_SHA.match(parts[0]):
        return await git.resolve(parts[0]), "/".join(parts[1:])
    return await git.branch_sha(repo.default_branch), path


async def get_raw(request: web.Request) -> web.Response:
    """The bytes of a file (or a symlink's target path); 404 for directories, submodules and missing paths."""
    sim = sim_of(request)
    repo, _ = repo_ctx(request)
    if repo.settings.get("_empty"):
        raise not_found()
    git = sim.git(repo)
    ref = request.query.get("ref", "").strip()
    commit, tree_path = await _legacy_ref(git, repo, request.match_info["filepath"], ref)
    if commit is None:
        raise not_found("GetCommit")
    tree_path = _clean(tree_path)
    entry = await git.tree_entry(commit, tree_path) if tree_path else None
    if entry is None or entry.kind != "blob":
        raise not_found()
    data = await git.blob(entry.sha)
    return web.Response(body=data, headers={
        "Content-Type": "text/plain; charset=utf-8" if _is_text(data) else "application/octet-stream",
        "Content-Disposition": f'inline; filename="{entry.name}"',
        "X-Gitea-Object-Type": KINDS.get(entry.mode, ""),
    })


def _is_text(data: bytes) -> bool:
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def add_routes(app: web.Application, p: str) -> None:
    r = app.router
    repo = f"{p}/repos/{{owner}}/{{repo}}"
    r.add_get(f"{repo}/contents", list_contents)
    r.add_get(f"{repo}/contents/{{filepath:.+}}", get_contents)
    r.add_get(f"{repo}/raw/{{filepath:.+}}", get_raw)
