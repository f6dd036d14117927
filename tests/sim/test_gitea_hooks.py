"""Organisation webhooks and test deliveries, held to Gitea 1.25: routers/api/v1/org/hook.go and
routers/api/v1/utils/hook.go (ListOwnerHooks, AddOwnerHook, EditOwnerHook, DeleteOwnerHook), api.go
(reqOrgOwnership on /orgs/{org}/hooks), services/webhook/webhook.go (PrepareWebhooks adds the owner's hooks to
a repository's own; PrepareWebhook checks events and branch filter) and routers/api/v1/repo/hook.go TestHook."""

from __future__ import annotations

import hashlib
import hmac

from gitea_sim.testing import SimHandle

from .conftest import Receiver, Team

API = "/api/v1"
SECRET = "org-secret"


def hook_body(url: str, events: list[str], secret: str = SECRET, **extra: object) -> dict[str, object]:
    return {"type": "gitea", "active": True, "events": events,
            "config": {"url": url, "content_type": "json", "secret": secret}, **extra}


def signed(received_body: bytes, headers: dict[str, str], secret: str) -> bool:
    expected = hmac.new(secret.encode(), received_body, hashlib.sha256).hexdigest()
    return headers.get("X-Gitea-Signature") == expected


async def test_org_hook_crud(gitea: SimHandle, team: Team) -> None:
    """Follows utils/hook.go: created with `push` when no events are named (201), listed with X-Total-Count,
    read, edited (events and active), deleted (204), then 404; the secret is never shown."""
    org = await gitea.create_org(team.owner, "acme")
    token = team.owner.token
    status, hook, _ = await gitea.request("POST", f"{API}/orgs/{org}/hooks", token=token, json={
        "type": "gitea", "config": {"url": "http://127.0.0.1:9/h", "content_type": "json", "secret": "s"}})
    assert (status, hook["events"], hook["active"], hook["config"]["url"]) == (201, ["push"], False,
                                                                              "http://127.0.0.1:9/h")
    assert "secret" not in hook["config"]
    status, listed, headers = await gitea.request("GET", f"{API}/orgs/{org}/hooks", token=token)
    assert (status, [h["id"] for h in listed], headers["X-Total-Count"]) == (200, [hook["id"]], "1")
    edited = await gitea.api("PATCH", f"/orgs/{org}/hooks/{hook['id']}", token=token,
                             json={"events": ["push", "status"], "active": True})
    assert (edited["events"], edited["active"]) == (["push", "status"], True)
    assert (await gitea.api("GET", f"/orgs/{org}/hooks/{hook['id']}", token=token))["events"] == ["push", "status"]
    await gitea.api("DELETE", f"/orgs/{org}/hooks/{hook['id']}", token=token, expect=204)
    await gitea.api("GET", f"/orgs/{org}/hooks/{hook['id']}", token=token, expect=404)
    status, body, _ = await gitea.request("POST", f"{API}/orgs/{org}/hooks", token=token,
                                          json={"type": "nope", "config": {"url": "u", "content_type": "json"}})
    assert (status, body["message"]) == (422, "Invalid hook type")


async def test_org_hooks_need_an_org_owner(gitea: SimHandle, team: Team) -> None:
    """Follows api.go: /orgs/{org}/hooks sits behind orgAssignment (404 for an unknown organisation or a
    user's name), reqToken (401) and reqOrgOwnership (403 "Must be an organization owner"; site admins pass)."""
    org = await gitea.create_org(team.owner, "acme")
    status, body, _ = await gitea.request("GET", f"{API}/orgs/{org}/hooks", token=team.writer.token)
    assert (status, body["message"]) == (403, "Must be an organization owner")
    status, _, _ = await gitea.request("GET", f"{API}/orgs/{org}/hooks")
    assert status == 401
    status, _, _ = await gitea.request("GET", f"{API}/orgs/alice/hooks", token=team.owner.token)
    assert status == 404
    status, _, _ = await gitea.request("GET", f"{API}/orgs/{org}/hooks", token=gitea.admin_token)
    assert status == 200


async def test_org_hook_gets_the_events_of_every_repository_of_the_org(
    gitea: SimHandle, team: Team, receiver: Receiver
) -> None:
    """Follows services/webhook/webhook.go PrepareWebhooks: a repository's event goes to its own hooks and to
    the hooks of its owner, each delivery signed with that hook's secret; repositories of other owners do not
    reach the organisation's hook."""
    org = await gitea.create_org(team.owner, "acme")
    one = await gitea.create_repo(team.owner, "one", org=org)
    two = await gitea.create_repo(team.owner, "two", org=org)
    await gitea.api("POST", f"/orgs/{org}/hooks", token=team.owner.token, json=hook_body(receiver.url, ["push"]))
    await gitea.push_commit(one, team.owner, "main", {"a.txt": "1\n"})
    await gitea.push_commit(two, team.owner, "main", {"b.txt": "1\n"})
    await gitea.push_commit(team.repo, team.owner, "main", {"c.txt": "1\n"})
    await gitea.wait_idle()
    pushes = receiver.of_type("push")
    assert sorted(p.json()["repository"]["full_name"] for p in pushes) == [one, two]
    assert all(signed(p.body, p.headers, SECRET) for p in pushes)


async def test_inactive_org_hook_gets_nothing(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    """Follows PrepareWebhooks (ListWebhookOptions{IsActive: true} for owner hooks too)."""
    org = await gitea.create_org(team.owner, "acme")
    one = await gitea.create_repo(team.owner, "one", org=org)
    await gitea.api("POST", f"/orgs/{org}/hooks", token=team.owner.token,
                    json=hook_body(receiver.url, ["push"], active=False))
    await gitea.push_commit(one, team.owner, "main", {"a.txt": "1\n"})
    await gitea.wait_idle()
    assert receiver.of_type("push") == []


async def test_test_delivery_is_a_signed_push_of_the_default_branch_head(
    gitea: SimHandle, team: Team, receiver: Receiver
) -> None:
    """Follows routers/api/v1/repo/hook.go TestHook: 204; one push payload for the head of the default branch
    with before = after = that commit, ref refs/heads/<default>, signed with the hook's secret."""
    head = await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "1\n"})
    hook = await gitea.add_hook(team.repo, receiver.url, "repo-secret", events=["push"])
    await gitea.wait_idle()
    receiver.received.clear()
    status, body, _ = await gitea.request("POST", f"{API}/repos/{team.repo}/hooks/{hook['id']}/tests",
                                          token=team.owner.token)
    assert (status, body) == (204, None)
    delivery = await receiver.wait_for(lambda r: r.event_type == "push")
    payload = delivery.json()
    assert (payload["ref"], payload["before"], payload["after"], payload["total_commits"]) == (
        "refs/heads/main", head, head, 1)
    assert [c["id"] for c in payload["commits"]] == [head] and payload["head_commit"]["id"] == head
    assert payload["repository"]["permissions"] == {"admin": False, "push": False, "pull": False}
    assert payload["pusher"]["login"] == payload["sender"]["login"] == "alice"
    assert signed(delivery.body, delivery.headers, "repo-secret")


async def test_test_delivery_with_a_ref(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    """Follows TestHook with RepoRefForAPI: `ref` picks the commit and is the payload's ref as given; an
    unknown full commit id is 404."""
    feature = await gitea.push_commit(team.repo, team.owner, "feature", {"f.txt": "1\n"}, base="main")
    hook = await gitea.add_hook(team.repo, receiver.url, "s", events=["push"])
    await gitea.wait_idle()
    receiver.received.clear()
    await gitea.api("POST", f"/repos/{team.repo}/hooks/{hook['id']}/tests", params={"ref": "feature"}, expect=204)
    payload = (await receiver.wait_for(lambda r: r.event_type == "push")).json()
    assert (payload["ref"], payload["after"]) == ("feature", feature)
    await gitea.api("POST", f"/repos/{team.repo}/hooks/{hook['id']}/tests", params={"ref": "f" * 40}, expect=404)


async def test_test_delivery_follows_the_hooks_events_not_its_active_flag(
    gitea: SimHandle, team: Team, receiver: Receiver
) -> None:
    """Follows TestHook calling PrepareWebhook on the one hook: it skips a hook not subscribed to push, but
    does not look at `active`, so an inactive hook still gets its test delivery."""
    await gitea.push_commit(team.repo, team.owner, "main", {"a.txt": "1\n"})
    no_push = await gitea.add_hook(team.repo, receiver.url, "s", events=["status"])
    await gitea.api("POST", f"/repos/{team.repo}/hooks/{no_push['id']}/tests", expect=204)
    await gitea.wait_idle()
    assert receiver.of_type("push") == []
    inactive = await gitea.add_hook(team.repo, receiver.url, "s", events=["push"])
    await gitea.api("PATCH", f"/repos/{team.repo}/hooks/{inactive['id']}", json={"active": False})
    await gitea.api("POST", f"/repos/{team.repo}/hooks/{inactive['id']}/tests", expect=204)
    await receiver.wait_for(lambda r: r.event_type == "push")


async def test_test_delivery_needs_repo_admin_and_a_hook_of_the_repository(gitea: SimHandle, team: Team) -> None:
    """Follows api.go (hooks routes: reqToken, reqAdmin) and utils.GetRepoHook (404 for another repository's
    hook or an organisation's)."""
    hook = await gitea.add_hook(team.repo, "http://127.0.0.1:9/h", "s")
    status, _, _ = await gitea.request("POST", f"{API}/repos/{team.repo}/hooks/{hook['id']}/tests",
                                       token=team.writer.token)
    assert status == 403
    org = await gitea.create_org(team.owner, "acme")
    org_hook = await gitea.api("POST", f"/orgs/{org}/hooks", token=team.owner.token,
                               json=hook_body("http://127.0.0.1:9/h", ["push"]))
    await gitea.api("POST", f"/repos/{team.repo}/hooks/{org_hook['id']}/tests", expect=404)
    await gitea.api("POST", f"/repos/{team.repo}/hooks/999/tests", expect=404)
