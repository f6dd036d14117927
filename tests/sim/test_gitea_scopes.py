"""Access-token scopes, held to Gitea 1.25: routers/api/v1/api.go (tokenRequiresScopes on each route group)
and models/auth/access_token_scope.go (write includes read; `all` includes everything)."""

from __future__ import annotations

import pytest

from gitea_sim import scopes
from gitea_sim.testing import SimHandle

from .conftest import Team

API = "/api/v1"


async def token_with(gitea: SimHandle, team: Team, *names: str) -> str:
    status, data, _ = await gitea.request("POST", f"{API}/users/alice/tokens", basic=("alice", team.owner.password),
                                          json={"name": "-".join(names) or "none", "scopes": list(names)})
    assert status == 201, data
    return str(data["sha1"])


@pytest.mark.parametrize(("method", "path", "needed"), [
    ("GET", "/user", ["read:user"]),
    ("GET", "/user/repos", ["read:user", "read:repository"]),
    ("GET", "/users/alice/repos", ["read:user", "read:repository"]),
    ("GET", "/repos/alice/demo", ["read:repository"]),
    ("POST", "/repos/alice/demo/statuses/abc", ["write:repository"]),
    ("DELETE", "/repos/alice/demo/hooks/1", ["write:repository"]),
    ("GET", "/repos/alice/demo/pulls/1", ["read:repository"]),
    ("POST", "/repos/alice/demo/issues/1/comments", ["write:issue"]),
    ("DELETE", "/repos/alice/demo/issues/comments/1", ["write:issue"]),
    ("GET", "/repos/alice/demo/labels", ["read:issue"]),
    ("GET", "/repos/search", ["read:repository"]),
    ("GET", "/orgs/acme/teams", ["read:organization"]),
    ("PUT", "/teams/1/members/bob", ["write:organization"]),
    ("POST", "/admin/users", ["write:admin"]),
    ("GET", "/version", []),
])
def test_routes_name_the_scope_categories_of_their_group(method: str, path: str, needed: list[str]) -> None:
    """Follows the route groups of routers/api/v1/api.go: issues, labels and milestones are the issue
    category, the rest of /repos the repository one; /user/repos and /users/{u}/repos need both."""
    assert scopes.required(method, path) == needed


async def test_a_token_without_the_scope_is_refused_with_its_scopes(gitea: SimHandle, team: Team) -> None:
    """Follows tokenRequiresScopes: 403 "token does not have at least one of required scope(s), required=[...],
    token scope=..." before the handler runs (so also for a comment that does not exist)."""
    token = await token_with(gitea, team, "read:user", "write:repository")
    status, body, _ = await gitea.request("DELETE", f"{API}/repos/{team.repo}/issues/comments/999", token=token)
    assert (status, body["message"]) == (403, "token does not have at least one of required scope(s), "
                                              "required=[write:issue], token scope=read:user,write:repository")
    status, _, _ = await gitea.request("GET", f"{API}/repos/{team.repo}", token=token)
    assert status == 200  # write:repository includes read:repository
    status, _, _ = await gitea.request("DELETE", f"{API}/repos/{team.repo}/hooks/999", token=token)
    assert status == 404  # allowed by the scope; the hook does not exist


async def test_all_covers_everything_and_passwords_have_no_scopes(gitea: SimHandle, team: Team) -> None:
    """Follows AccessTokenScopeAll, and tokenRequiresScopes applying to token authentication only."""
    status, _, _ = await gitea.request("DELETE", f"{API}/repos/{team.repo}/issues/comments/999",
                                       token=team.owner.token)
    assert status == 404
    status, _, _ = await gitea.request("GET", f"{API}/user", basic=("alice", team.owner.password))
    assert status == 200


async def test_a_token_as_basic_auth_password_keeps_its_scopes(gitea: SimHandle, team: Team) -> None:
    """Follows services/auth/basic.go: a token given as the password authenticates as that token."""
    token = await token_with(gitea, team, "read:repository")
    status, body, _ = await gitea.request("GET", f"{API}/user", basic=("alice", token))
    assert status == 403 and "required=[read:user]" in body["message"]


async def test_unknown_scope_names_are_refused(gitea: SimHandle, team: Team) -> None:
    """Follows CreateAccessToken: AccessTokenScope.Normalize refuses a name it does not know (400)."""
    status, body, _ = await gitea.request("POST", f"{API}/users/alice/tokens", basic=("alice", team.owner.password),
                                          json={"name": "bad", "scopes": ["write:everything"]})
    assert status == 400 and "write:everything" in body["message"]
