"""Git over smart HTTP: auth as Gitea accepts it, protected-branch refusals, refs/pull/N/head, push webhooks."""

from __future__ import annotations

import base64

import pytest

from gitea_sim.gitrepo import run_git
from gitea_sim.testing import SimApiError, SimHandle, running_sim

from .conftest import Receiver, Team, make_team


async def test_clone_with_token_and_push_moves_branch(gitea: SimHandle, team: Team) -> None:
    sha = await gitea.push_commit(team.repo, team.writer, "feature", {"f.txt": "x\n"}, base="main")
    branch = await gitea.api("GET", f"/repos/{team.repo}/branches/feature")
    assert branch["commit"]["id"] == sha


async def test_basic_auth_with_password_and_token_as_username(gitea: SimHandle, team: Team, tmp_path) -> None:
    host = gitea.url.split("://")[1]
    by_password = f"http://bob:{team.writer.password}@{host}/{team.repo}.git"
    by_token_user = f"http://{team.writer.token}:x-oauth-basic@{host}/{team.repo}.git"
    for i, url in enumerate((by_password, by_token_user)):
        code, _, err = await run_git(["ls-remote", url, "refs/heads/main"], check=False)
        assert code == 0, err
        assert i >= 0


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def _ls_remote(g: SimHandle, repo: str, header: str) -> tuple[int, str]:
    """`git ls-remote` with the credentials only in a header, as the bot sends them."""
    code, _, err = await run_git(
        ["-c", f"http.extraHeader=Authorization: {header}", "ls-remote", f"{g.url}/{repo}.git", "refs/heads/main"],
        check=False,
    )
    return code, err


@pytest.mark.parametrize("flavour", ["gitea", "forgejo"])
async def test_token_as_basic_password_works_on_git_paths_with_any_user_name(flavour: str, tmp_path) -> None:
    async with running_sim(tmp_path, flavour=flavour) as g:
        team = await make_team(g)
        secret = await g.create_repo(team.owner, "secret", private=True)
        await g.add_collaborator(secret, "bob", "write")
        for user in ("bob", "merge-bot", "anything"):
            code, err = await _ls_remote(g, secret, _basic(user, team.writer.token))
            assert code == 0, err
        status, _, _ = await g.request(
            "GET",
            f"/{secret}.git/info/refs",
            params={"service": "git-receive-pack"},
            headers={"Authorization": _basic("x", team.writer.token)},
        )
        assert status == 200


@pytest.mark.parametrize(("flavour", "accepted"), [("gitea", True), ("forgejo", False)])
async def test_the_token_scheme_on_git_paths_is_refused_by_the_forgejo_flavour(
    flavour: str, accepted: bool, tmp_path
) -> None:
    async with running_sim(tmp_path, flavour=flavour) as g:
        team = await make_team(g)
        for scheme in ("token", "Bearer"):
            for service in ("git-upload-pack", "git-receive-pack"):
                status, _, headers = await g.request(
                    "GET",
                    f"/{team.repo}.git/info/refs",
                    params={"service": service},
                    headers={"Authorization": f"{scheme} {team.writer.token}"},
                )
                assert status == (200 if accepted else 401), (scheme, service)
                if not accepted:
                    assert headers["WWW-Authenticate"].startswith("Basic")
        code, err = await _ls_remote(g, team.repo, f"token {team.writer.token}")
        assert (code == 0) is accepted, err
        # The API keeps taking the token scheme in both flavours.
        status, body, _ = await g.request("GET", "/api/v1/user", token=team.writer.token)
        assert (status, body["login"]) == (200, "bob")


async def test_wrong_password_is_refused(gitea: SimHandle, team: Team) -> None:
    # On a public repository git never sends credentials for a fetch (no 401 challenge), as with Gitea.
    secret = await gitea.create_repo(team.owner, "secret", private=True)
    await gitea.add_collaborator(secret, "bob", "write")
    host = gitea.url.split("://")[1]
    code, _, err = await run_git(["ls-remote", f"http://bob:wrong@{host}/{secret}.git"], check=False)
    assert code != 0
    assert "Authentication failed" in err or "401" in err


async def test_read_only_collaborator_cannot_push(gitea: SimHandle, team: Team) -> None:
    with pytest.raises(SimApiError) as err:
        await gitea.push_commit(team.repo, team.reader, "rita-branch", {"r.txt": "r\n"}, base="main")
    assert "403" in str(err.value.body)


async def test_anonymous_can_clone_public_repo_but_not_push(gitea: SimHandle, team: Team, tmp_path) -> None:
    url = f"{gitea.url}/{team.repo}.git"
    code, _, _ = await run_git(["clone", "--quiet", url, str(tmp_path / "anon")], check=False)
    assert code == 0
    status, _, headers = await gitea.request(
        "GET", f"/{team.repo}.git/info/refs", params={"service": "git-receive-pack"}
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic")


async def test_private_repo_is_invisible_to_strangers(gitea: SimHandle, team: Team) -> None:
    secret = await gitea.create_repo(team.owner, "secret", private=True)
    stranger = await gitea.create_user("mallory")
    host = gitea.url.split("://")[1]
    url = f"http://mallory:{stranger.token}@{host}/{secret}.git"
    code, _, _ = await run_git(["ls-remote", url], check=False)
    assert code != 0
    status, _, _ = await gitea.request("GET", f"/api/v1/repos/{secret}", token=stranger.token)
    assert status == 404


async def test_force_push_to_protected_branch_is_refused(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "main", enable_push=True)
    await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "1\n"})
    work = await gitea.clone(team.repo, team.owner)
    await run_git(["-C", str(work), "reset", "--quiet", "--hard", "HEAD~1"])
    await run_git(["-C", str(work), "commit", "--quiet", "--allow-empty", "-m", "rewrite"])
    with pytest.raises(SimApiError) as err:
        await gitea.push(team.repo, team.owner, "HEAD:refs/heads/main", force=True)
    assert "Gitea: branch main is protected from force push" in err.value.body
    assert "pre-receive hook declined" in err.value.body


async def test_push_whitelist_and_disabled_push(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(
        team.repo, "main", enable_push=True, enable_push_whitelist=True, push_whitelist_usernames=["alice"]
    )
    with pytest.raises(SimApiError) as err:
        await gitea.push_commit(team.repo, team.writer, "main", {"b.txt": "b\n"})
    assert "Not allowed to push to protected branch main" in err.value.body
    await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "a\n"})
    await gitea.api("PATCH", f"/repos/{team.repo}/branch_protections/main", json={"enable_push": False})
    with pytest.raises(SimApiError) as err:
        await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "again\n"})
    assert "Not allowed to push to protected branch main" in err.value.body


async def test_deleting_protected_or_default_branch_is_refused(gitea: SimHandle, team: Team) -> None:
    await gitea.push_commit(team.repo, team.owner, "release", {"r.txt": "1\n"}, base="main")
    await gitea.protect(team.repo, "release", enable_push=True)
    with pytest.raises(SimApiError) as err:
        await gitea.push(team.repo, team.owner, ":refs/heads/release")
    assert "branch release is protected from deletion" in err.value.body
    with pytest.raises(SimApiError) as err:
        await gitea.push(team.repo, team.owner, ":refs/heads/main")
    assert "default branch" in err.value.body


async def test_glob_protection_rule_applies(gitea: SimHandle, team: Team) -> None:
    await gitea.protect(team.repo, "release/*", enable_push=False)
    with pytest.raises(SimApiError):
        await gitea.push_commit(team.repo, team.owner, "release/1.0", {"r.txt": "1\n"}, base="main")
    await gitea.push_commit(team.repo, team.owner, "release/2/x", {"r.txt": "1\n"}, base="main")


async def test_push_updates_pr_head_ref_and_fires_push_then_synchronized(
    gitea: SimHandle, team: Team, receiver: Receiver
) -> None:
    await gitea.add_hook(team.repo, receiver.url, "s3cret")
    first = await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "1\n"}, base="main")
    pr = await gitea.create_pr(team.repo, team.writer, "feat")
    second = await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "2\n"})
    assert first != second
    sync = await receiver.wait_for(lambda r: r.event_type == "pull_request_sync")
    body = sync.json()
    assert body["action"] == "synchronized"
    assert body["pull_request"]["head"]["sha"] == second
    assert sync.headers["X-Gitea-Event"] == "pull_request"
    pushes = [r.json() for r in receiver.of_type("push")]
    assert [p["after"] for p in pushes] == [first, second]
    assert pushes[1]["before"] == first and pushes[1]["total_commits"] == 1
    assert receiver.received.index(receiver.of_type("push")[1]) < receiver.received.index(sync)
    work = await gitea.clone(team.repo, team.writer)
    _, out, _ = await run_git(["-C", str(work), "ls-remote", "origin", f"refs/pull/{pr['number']}/head"])
    assert out.split()[0] == second
    got = await gitea.get_pr(team.repo, pr["number"])
    assert got["head"]["sha"] == second


async def test_pushing_to_pull_refs_is_refused(gitea: SimHandle, team: Team) -> None:
    await gitea.push_commit(team.repo, team.writer, "feat", {"f.txt": "1\n"}, base="main")
    await gitea.create_pr(team.repo, team.writer, "feat")
    work = await gitea.clone(team.repo, team.writer)
    await run_git(["-C", str(work), "commit", "--quiet", "--allow-empty", "-m", "sneaky"])
    with pytest.raises(SimApiError) as err:
        await gitea.push(team.repo, team.writer, "HEAD:refs/pull/1/head", force=True)
    assert "pull request refs are maintained by the server" in err.value.body
