"""Branches, branch protections and commits held to Gitea's integration tests (tests/integration/api_branch_test.go,
api_repo_git_commits_test.go) and to models/git/protected_branch*.go. Each test names the Gitea test it follows."""

from __future__ import annotations

import pytest

from gitea_sim.testing import SimHandle

from .conftest import Team


@pytest.mark.parametrize(("name", "exists"), [("main", True), ("main/doesnotexist", False), ("feature/1", True),
                                              ("feature/1/doesnotexist", False)])
async def test_get_branch(gitea: SimHandle, team: Team, name: str, exists: bool) -> None:
    """Follows tests/integration/api_branch_test.go TestAPIGetBranch: nested names resolve exactly; the owner
    may push and merge."""
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "feature/1"})
    status, body, _ = await gitea.request("GET", f"/api/v1/repos/{team.repo}/branches/{name}",
                                          token=team.owner.token)
    if not exists:
        assert status == 404
        return
    assert status == 200
    assert (body["name"], body["user_can_push"], body["user_can_merge"]) == (name, True, True)


async def test_create_branches(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_branch_test.go TestAPICreateBranch (testAPICreateBranches): from the default
    branch, from a named branch, an existing name (409), from another branch, from a missing one (404)."""
    url = f"/repos/{team.repo}/branches"
    cases = [("", "new_branch_from_default_branch", 201), ("main", "new_branch_from_main_1", 201),
             ("main", "new_branch_from_main_1", 409), ("new_branch_from_main_1", "branch_2", 201),
             ("does_not_exist", "new_branch_from_non_existent", 404)]
    for old, new, expected in cases:
        status, body, _ = await gitea.request("POST", "/api/v1" + url, token=team.owner.token,
                                              json={"new_branch_name": new, "old_branch_name": old})
        assert status == expected, (old, new, body)
        if expected == 201:
            assert body["name"] == new


async def test_create_branch_needs_write_access(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/branch.go CreateBranch (reqRepoWriter): a reader is refused with 403."""
    status, _, _ = await gitea.request("POST", f"/api/v1/repos/{team.repo}/branches", token=team.reader.token,
                                       json={"new_branch_name": "nope"})
    assert status == 403


async def test_branch_protection_lifecycle(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_branch_test.go TestAPIBranchProtection: a rule for a branch that does not
    exist is fine; a rule can only be created once (403); a protected branch cannot be deleted (403); status
    checks are set and cleared by PATCH; after the rule is gone the default branch still cannot be deleted, an
    ordinary branch can."""
    url = f"/repos/{team.repo}/branch_protections"
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "branch2"})
    await gitea.api("POST", url, json={"rule_name": "main/doesnotexist"}, expect=201)
    await gitea.api("GET", f"{url}/main", expect=404)
    created = await gitea.api("POST", url, json={"rule_name": "main"}, expect=201)
    assert created["rule_name"] == "main"
    await gitea.api("POST", url, json={"rule_name": "main"}, expect=403)
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "guarded"})
    await gitea.api("POST", url, json={"rule_name": "guarded"}, expect=201)
    await gitea.api("DELETE", f"/repos/{team.repo}/branches/guarded", expect=403)
    await gitea.api("PATCH", f"{url}/main", json={"enable_push": True})
    await gitea.api("PATCH", f"{url}/main", json={"enable_status_check": True, "status_check_contexts": ["test1"]})
    rule = await gitea.api("GET", f"{url}/main")
    assert (rule["enable_push"], rule["enable_status_check"], rule["status_check_contexts"]) == (True, True, ["test1"])
    await gitea.api("PATCH", f"{url}/main", json={"enable_status_check": False, "status_check_contexts": []})
    rule = await gitea.api("GET", f"{url}/main")
    assert (rule["enable_status_check"], rule["status_check_contexts"]) == (False, [])
    await gitea.api("DELETE", f"{url}/main", expect=204)
    await gitea.api("DELETE", f"/repos/{team.repo}/branches/main", expect=403)
    await gitea.api("DELETE", f"/repos/{team.repo}/branches/branch2", expect=204)


async def test_branch_protection_needs_admin(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/api.go (branch_protections under reqAdmin): a writer gets 403."""
    await gitea.api("GET", f"/repos/{team.repo}/branch_protections", token=team.writer.token, expect=403)
    await gitea.api("POST", f"/repos/{team.repo}/branch_protections", token=team.writer.token,
                    json={"rule_name": "main"}, expect=403)


async def test_new_rules_get_increasing_priorities(gitea: SimHandle, team: Team) -> None:
    """Follows models/git/protected_branch.go UpdateProtectBranch: a new rule whose priority is unset (or 0) gets
    the highest so far plus one; routers/api/v1/repo/branch.go CreateBranchProtection passes a given one on."""
    url = f"/repos/{team.repo}/branch_protections"
    first = await gitea.api("POST", url, json={"rule_name": "release/*"})
    second = await gitea.api("POST", url, json={"rule_name": "main"})
    third = await gitea.api("POST", url, json={"rule_name": "*", "priority": 0})
    assert [first["priority"], second["priority"], third["priority"]] == [1, 2, 3]
    await gitea.api("DELETE", f"{url}/main")
    fourth = await gitea.api("POST", url, json={"rule_name": "hotfix/*"})
    assert fourth["priority"] == 4
    chosen = await gitea.api("POST", url, json={"rule_name": "docs/*", "priority": 10})
    assert chosen["priority"] == 10
    after = await gitea.api("POST", url, json={"rule_name": "feature/*"})
    assert after["priority"] == 11


async def test_glob_rules_match_by_priority_and_plain_names_first(gitea: SimHandle, team: Team) -> None:
    """Follows models/git/protected_branch_list.go GetFirstMatchProtectedBranchRule: a plain rule naming the
    branch wins; among globs the lowest priority (the older rule) wins."""
    url = f"/repos/{team.repo}/branch_protections"
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "release/1"})
    await gitea.api("POST", url, json={"rule_name": "release/*", "required_approvals": 1})
    await gitea.api("POST", url, json={"rule_name": "*", "required_approvals": 2})
    branch = await gitea.api("GET", f"/repos/{team.repo}/branches/release/1")
    assert branch["required_approvals"] == 1
    await gitea.api("POST", url, json={"rule_name": "release/1", "required_approvals": 3})
    branch = await gitea.api("GET", f"/repos/{team.repo}/branches/release/1")
    assert branch["required_approvals"] == 3
    main = await gitea.api("GET", f"/repos/{team.repo}/branches/main")
    assert (main["protected"], main["required_approvals"]) == (True, 2)


async def test_branch_protection_form_encoded(gitea: SimHandle, team: Team) -> None:
    """Follows routers/api/v1/repo/branch.go CreateBranchProtection with a form-encoded body: Gitea's binding
    turns the strings into booleans, numbers and lists."""
    status, rule, _ = await gitea.request(
        "POST", f"/api/v1/repos/{team.repo}/branch_protections", token=team.owner.token,
        form={"rule_name": "main", "enable_push": "false", "enable_status_check": "true",
              "status_check_contexts": "ci/test", "required_approvals": "2"})
    assert status == 201
    assert (rule["enable_push"], rule["enable_status_check"], rule["status_check_contexts"],
            rule["required_approvals"]) == (False, True, ["ci/test"], 2)


async def test_delete_branch_twice(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_branch_test.go TestAPIBranchProtection's branch deletions and
    routers/api/v1/repo/branch.go DeleteBranch: 204, then 404 for a branch that is gone."""
    await gitea.api("POST", f"/repos/{team.repo}/branches", json={"new_branch_name": "gone"})
    await gitea.api("DELETE", f"/repos/{team.repo}/branches/gone", token=team.writer.token, expect=204)
    await gitea.api("DELETE", f"/repos/{team.repo}/branches/gone", token=team.writer.token, expect=404)


async def test_get_single_commit_and_list(gitea: SimHandle, team: Team) -> None:
    """Follows tests/integration/api_repo_git_commits_test.go TestAPIReposGitCommits and
    TestAPIReposGitCommitList: a known SHA answers 200 with that SHA, an unknown one 404; the list is newest
    first and pages with X-Total-Count."""
    first = await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "1\n"}, message="first")
    second = await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "2\n"}, message="second")
    got = await gitea.api("GET", f"/repos/{team.repo}/git/commits/{first}")
    assert got["sha"] == first
    await gitea.api("GET", f"/repos/{team.repo}/git/commits/{'0' * 40}", expect=404)
    status, commits, headers = await gitea.request("GET", f"/api/v1/repos/{team.repo}/commits",
                                                   token=team.owner.token, params={"limit": "2"})
    assert status == 200
    assert [c["sha"] for c in commits] == [second, first]
    assert headers["X-Total-Count"] == "3"  # with the initial commit
    await gitea.api("GET", f"/repos/{team.repo}/commits", params={"sha": "no-such-branch"}, expect=404)
