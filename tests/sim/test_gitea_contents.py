"""Reading files from the real git repository, held to Gitea 1.25: routers/api/v1/repo/file.go (GetContents,
GetContentsList, GetRawFile), services/repository/files/content.go (GetContentsOrList) and
tests/integration/api_repo_get_contents_test.go (testAPIGetContents, testAPIGetContentsRefFormats)."""

from __future__ import annotations

import base64
import hashlib

from gitea_sim.testing import SimHandle

from .conftest import Team

API = "/api/v1"
README = "# demo\n\nhello\n"


async def setup_files(gitea: SimHandle, team: Team) -> str:
    return await gitea.push_commit(team.repo, team.owner, "main", {"README.md": README, "docs/guide.md": "guide\n",
                                                                  "run.sh": "#!/bin/sh\n"})


async def test_get_file_contents(gitea: SimHandle, team: Team) -> None:
    """Follows testAPIGetContents: a file's name, path, blob sha, last commit, type, size, base64 content and
    its links, for the default branch when no ref is given."""
    head = await setup_files(gitea, team)
    data = await gitea.api("GET", f"/repos/{team.repo}/contents/README.md")
    blob = hashlib.sha1(f"blob {len(README)}\0{README}".encode()).hexdigest()  # git's id of that content
    assert (data["name"], data["path"], data["sha"], data["type"], data["size"]) == (
        "README.md", "README.md", blob, "file", len(README))
    assert (data["encoding"], base64.b64decode(data["content"]).decode()) == ("base64", README)
    assert data["last_commit_sha"] == head
    base = gitea.url
    assert data["url"] == f"{base}/api/v1/repos/{team.repo}/contents/README.md?ref=main"
    assert data["html_url"] == f"{base}/{team.repo}/src/branch/main/README.md"
    assert data["download_url"] == f"{base}/{team.repo}/raw/branch/main/README.md"
    assert data["git_url"] == f"{base}/api/v1/repos/{team.repo}/git/blobs/{blob}"
    assert data["_links"] == {"self": data["url"], "git": data["git_url"], "html": data["html_url"]}
    assert (data["target"], data["submodule_git_url"]) == (None, None)


async def test_contents_at_a_branch_or_a_commit(gitea: SimHandle, team: Team) -> None:
    """Follows testAPIGetContents: `ref` may be a branch or a full commit id (html links say which); the file
    as it is there; a bad ref is 404."""
    first = await setup_files(gitea, team)
    await gitea.push_commit(team.repo, team.owner, "next", {"README.md": "changed\n"}, base="main")
    on_branch = await gitea.api("GET", f"/repos/{team.repo}/contents/README.md", params={"ref": "next"})
    assert base64.b64decode(on_branch["content"]) == b"changed\n"
    assert "/src/branch/next/README.md" in on_branch["html_url"]
    at_commit = await gitea.api("GET", f"/repos/{team.repo}/contents/README.md", params={"ref": first})
    assert base64.b64decode(at_commit["content"]).decode() == README
    assert at_commit["html_url"].endswith(f"/src/commit/{first}/README.md")
    await gitea.api("GET", f"/repos/{team.repo}/contents/README.md", params={"ref": "badref"}, expect=404)


async def test_missing_path_is_404_naming_what_is_missing(gitea: SimHandle, team: Team) -> None:
    """Follows testAPIGetContents ("object does not exist [id: , rel_path: no-such]" for no-such/file.md)."""
    await setup_files(gitea, team)
    status, body, _ = await gitea.request("GET", f"{API}/repos/{team.repo}/contents/no-such/file.md")
    assert status == 404 and "object does not exist [id: , rel_path: no-such]" in body["errors"]
    status, body, _ = await gitea.request("GET", f"{API}/repos/{team.repo}/contents/missing.md")
    assert status == 404 and "object does not exist [id: , rel_path: missing.md]" in body["errors"]


async def test_directory_listing(gitea: SimHandle, team: Team) -> None:
    """Follows GetContentsOrList: a directory answers the list of its entries (files and directories), none
    with content; the root listing is GET .../contents."""
    await setup_files(gitea, team)
    root = await gitea.api("GET", f"/repos/{team.repo}/contents")
    by_name = {e["name"]: e for e in root}
    assert {"README.md", "docs", "run.sh"} <= set(by_name)
    assert (by_name["docs"]["type"], by_name["docs"]["size"], by_name["docs"]["download_url"]) == ("dir", 0, None)
    assert (by_name["README.md"]["content"], by_name["README.md"]["encoding"]) == (None, None)
    docs = await gitea.api("GET", f"/repos/{team.repo}/contents/docs")
    assert [(e["name"], e["path"], e["type"]) for e in docs] == [("guide.md", "docs/guide.md", "file")]


async def test_private_repository_contents_are_hidden(gitea: SimHandle, team: Team) -> None:
    """Follows testAPIGetContents: a token without access to the private repository gets 404."""
    private = await gitea.create_repo(team.owner, "private", private=True)
    status, _, _ = await gitea.request("GET", f"{API}/repos/{private}/contents/README.md", token=team.writer.token)
    assert status == 404
    status, _, _ = await gitea.request("GET", f"{API}/repos/{private}/contents/README.md", token=team.owner.token)
    assert status == 200


async def test_raw_file_and_its_ref_formats(gitea: SimHandle, team: Team) -> None:
    """Follows testAPIGetContentsRefFormats: the bytes of a file from the default branch, from `{sha}/path`,
    from `?ref=` a commit or a branch; a path that only exists on another branch is 404; an unknown `ref`
    falls back to the default branch (Gitea's FIXME, kept); a directory is 404."""
    head = await setup_files(gitea, team)
    await gitea.push_commit(team.repo, team.owner, "other", {"docs/only-here.md": "x\n"}, base="main")

    async def raw(path: str, **params: str) -> tuple[int, bytes]:
        async with gitea.session.get(f"{gitea.url}{API}/repos/{team.repo}/raw/{path}", params=params) as resp:
            return resp.status, await resp.read()

    assert await raw("README.md") == (200, README.encode())
    assert await raw(f"{head}/README.md") == (200, README.encode())
    assert await raw("README.md", ref=head) == (200, README.encode())
    assert await raw("README.md", ref="main") == (200, README.encode())
    assert (await raw("docs/only-here.md", ref="main"))[0] == 404
    assert await raw("docs/only-here.md", ref="other") == (200, b"x\n")
    assert await raw("README.md", ref="no-such") == (200, README.encode())
    assert (await raw("docs"))[0] == 404
    async with gitea.session.get(f"{gitea.url}{API}/repos/{team.repo}/raw/run.sh") as resp:
        assert (resp.headers["X-Gitea-Object-Type"], resp.content_type) == ("file", "text/plain")
