"""Webhooks: signed and headed as Gitea does, bodies shaped like the real captures, faults on delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from gitea_sim.testing import SimHandle
from tests.conftest import PAYLOADS

from .conftest import Receiver, Team, make_team

SECRET = "hook-secret"

# Keys a real capture may hold that Gitea 1.25 leaves out: Repository.parent and .repo_transfer became
# `omitempty` (modules/structs/repo.go), so a capture from an older server shows them as null.
OMITTED_SINCE_CAPTURE = {"parent", "repo_transfer"}
# An old codeberg capture whose repository owner carried `permissions`; Gitea 1.25's (and the spec's) User
# has no such field.
KNOWN_CAPTURE_ODDITIES = {"$.repository.owner.permissions"}
# Captures from Forgejo servers (codeberg.org): compared with the simulator's forgejo flavour.
FORGEJO_CAPTURES = {"gitea-pull_request-reopened.json", "gitea-push-new-branch.json"}
# Values a capture shows set that are legitimately null in another state of the same object.
NULLABLE = {
    "merged_at",
    "merge_commit_sha",
    "merged_by",
    "closed_at",
    "due_date",
    "milestone",
    "assignee",
    "assignees",
    "requested_reviewers",
    "requested_reviewer",
    "review",
    "head_commit",
    "verification",
    "requested_reviewers_teams",
    "changes",
}


def shape_errors(sample: Any, ours: Any, path: str = "$") -> list[str]:
    """Every key of `sample` must be in `ours` with the same JSON type (recursively; first list item)."""
    if isinstance(sample, dict):
        if not isinstance(ours, dict):
            return [f"{path}: expected object, got {type(ours).__name__}"]
        errors: list[str] = []
        for key, value in sample.items():
            if key not in ours:
                if key not in OMITTED_SINCE_CAPTURE and f"{path}.{key}" not in KNOWN_CAPTURE_ODDITIES:
                    errors.append(f"{path}.{key}: missing")
                continue
            if ours[key] is None and value is not None:
                if key not in NULLABLE:
                    errors.append(f"{path}.{key}: null where the capture has {type(value).__name__}")
                continue
            errors += shape_errors(value, ours[key], f"{path}.{key}")
        return errors
    if sample is None or ours is None:
        return []
    if isinstance(sample, list):
        if not isinstance(ours, list):
            return [f"{path}: expected array"]
        return shape_errors(sample[0], ours[0], f"{path}[0]") if sample and ours else []
    kinds = {bool: "bool", int: "number", float: "number", str: "string"}
    if kinds[type(sample)] != kinds.get(type(ours)):
        return [f"{path}: {type(sample).__name__} in capture, {type(ours).__name__} here"]
    return []


async def drive_every_event(g: SimHandle, receiver: Receiver) -> dict[tuple[str, str], dict[str, Any]]:
    """Make the simulator send each event a merge bot sees; return the first body of each (type, action)."""
    team = await make_team(g)
    await g.add_hook(team.repo, receiver.url, SECRET, events=["push", "pull_request", "issue_comment", "status"])
    await g.create_label(team.repo, "queue")
    await g.create_label(team.repo, "bug", "#ff0000")
    await g.push_commit(team.repo, team.writer, "feat", {"a.txt": "1\n", "b.txt": "2\n"}, base="main")
    await g.push_commit(team.repo, team.writer, "feat", {"a.txt": "2\n"})
    pr = await g.create_pr(team.repo, team.writer, "feat", title="Feature")
    n = pr["number"]
    await g.api("PATCH", f"/repos/{team.repo}/pulls/{n}", json={"title": "Feature, renamed"}, token=team.writer.token)
    await g.api("POST", f"/repos/{team.repo}/issues/{n}/labels", json={"labels": ["queue", "bug"]})
    await g.api("DELETE", f"/repos/{team.repo}/issues/{n}/labels")
    await g.comment(team.repo, n, team.reader, "/merge")
    issue = await g.api("POST", f"/repos/{team.repo}/issues", json={"title": "a bug"}, token=team.reader.token)
    await g.comment(team.repo, issue["number"], team.writer, "thanks")
    sha = await g.push_commit(team.repo, team.writer, "feat", {"c.txt": "3\n"})
    await g.set_status(team.repo, sha, "success", "ci/test")
    await g.api(
        "POST",
        f"/repos/{team.repo}/pulls/{n}/reviews",
        json={"event": "APPROVED", "body": "lgtm"},
        token=team.owner.token,
    )
    await g.api(
        "POST",
        f"/repos/{team.repo}/pulls/{n}/reviews",
        json={"event": "REQUEST_CHANGES", "body": "no"},
        token=team.owner.token,
    )
    await g.api(
        "POST", f"/repos/{team.repo}/pulls/{n}/reviews", json={"event": "COMMENT", "body": "hm"}, token=team.owner.token
    )
    await g.api("PATCH", f"/repos/{team.repo}/pulls/{n}", json={"state": "closed"})
    await g.api("PATCH", f"/repos/{team.repo}/pulls/{n}", json={"state": "open"})
    await g.wait_idle()
    await g.merge(team.repo, n, team.writer, "merge")
    await g.push_commit(team.repo, team.writer, "other", {"o.txt": "1\n"}, base="main")
    await g.push_commit(team.repo, team.writer, "other", {"o.txt": "2\n", "p.txt": "3\n"})
    pr2 = await g.create_pr(team.repo, team.writer, "other", title="Other")
    await g.api("PATCH", f"/repos/{team.repo}/pulls/{pr2['number']}", json={"state": "closed"})
    await g.wait_idle()
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in receiver.received:
        body = r.json()
        key = (r.event_type, str(body.get("action", "")))
        if key == ("pull_request", "closed") and not body["pull_request"]["merged"]:
            key = ("pull_request", "closed-unmerged")
        if key == ("push", "") and body["before"] == "0" * 40:
            key = ("push", "new-branch")
        if key == ("push", "") and body["total_commits"] < 2:
            continue
        seen.setdefault(key, body)
    return seen


CASES = {
    "gitea-pull_request-opened.json": ("pull_request", "opened"),
    "gitea-pull_request-closed-merged.json": ("pull_request", "closed"),
    "gitea-pull_request-closed-unmerged.json": ("pull_request", "closed-unmerged"),
    "gitea-pull_request-reopened.json": ("pull_request", "reopened"),
    "gitea-pull_request-edited-title.json": ("pull_request", "edited"),
    "gitea-pull_request-synchronized.json": ("pull_request_sync", "synchronized"),
    "gitea-pull_request_label-label_updated.json": ("pull_request_label", "label_updated"),
    "gitea-pull_request_label-label_updated-2.json": ("pull_request_label", "label_updated"),
    "gitea-pull_request_label-label_updated-2022.json": ("pull_request_label", "label_updated"),
    "gitea-pull_request_label-label_cleared-EDITEDCOPY.json": ("pull_request_label", "label_cleared"),
    "gitea-pull_request_review_approved.json": ("pull_request_review_approved", "reviewed"),
    "gitea-pull_request_review_rejected.json": ("pull_request_review_rejected", "reviewed"),
    "gitea-pull_request_review_comment.json": ("pull_request_review_comment", "reviewed"),
    "gitea-pull_request_review-2022.json": ("pull_request_review_approved", "reviewed"),
    "gitea-issue_comment-on-pr-created.json": ("pull_request_comment", "created"),
    "gitea-issue_comment-on-pr-created-v1.23plus.json": ("pull_request_comment", "created"),
    "gitea-issue_comment-on-issue-created.json": ("issue_comment", "created"),
    "gitea-push.json": ("push", "new-branch"),
    "gitea-push-new-branch.json": ("push", "new-branch"),
    "gitea-push-multi-commits.json": ("push", ""),
    "SYNTHETIC-gitea-status-shape-from-v1.25.4-struct.json": ("status", ""),
}
# Not compared, on purpose: the 2018 captures (pre-1.10 shapes with a top-level `secret` and no `is_pull`),
# the hand-edited synchronized copy of them, and `assigned` / `review_requested` (events the simulator does
# not produce).
NOT_COMPARED = {
    "gitea-issue_comment-on-pr-created-2018.json",
    "gitea-pull_request-opened-2018-gitea1.5era.json",
    "gitea-pull_request-synchronized-2018-EDITEDCOPY.json",
    "gitea-pull_request-assigned.json",
    "gitea-pull_request-review_requested.json",
}


def test_every_sample_is_compared_or_excluded_with_a_reason() -> None:
    samples = {p.name for p in PAYLOADS.glob("*.json")}
    assert samples == set(CASES) | NOT_COMPARED


async def test_webhook_bodies_have_the_shape_of_real_captures(
    gitea: SimHandle, forgejo: SimHandle, receiver: Receiver
) -> None:
    seen = await drive_every_event(gitea, receiver)
    receiver.received.clear()
    seen_forgejo = await drive_every_event(forgejo, receiver)
    failures: dict[str, list[str]] = {}
    for name, key in CASES.items():
        sample = json.loads((PAYLOADS / name).read_text())
        ours = seen_forgejo if name in FORGEJO_CAPTURES else seen
        assert key in ours, f"{name}: the simulator sent no {key}"
        errors = shape_errors(sample, ours[key])
        if errors:
            failures[name] = errors
    assert failures == {}


async def test_headers_and_signature(gitea: SimHandle, receiver: Receiver) -> None:
    seen_types = set()
    await drive_every_event(gitea, receiver)
    for r in receiver.received:
        h = r.headers
        expected = hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert h["X-Gitea-Signature"] == expected == h["X-Gogs-Signature"]
        assert h["X-Hub-Signature-256"] == f"sha256={expected}"
        assert h["X-Hub-Signature"] == "sha1=" + hmac.new(SECRET.encode(), r.body, hashlib.sha1).hexdigest()
        assert h["X-Gitea-Delivery"] == h["X-Gogs-Delivery"] == h["X-GitHub-Delivery"]
        assert h["X-Gitea-Event"] == h["X-Gogs-Event"] == h["X-GitHub-Event"]
        assert h["X-Gitea-Event-Type"] == h["X-GitHub-Event-Type"]
        assert "X-Forgejo-Event" not in h
        assert h["Content-Type"] == "application/json"
        seen_types.add((h["X-Gitea-Event"], h["X-Gitea-Event-Type"]))
    assert {
        ("pull_request", "pull_request_sync"),
        ("pull_request", "pull_request_label"),
        ("issue_comment", "pull_request_comment"),
        ("issue_comment", "issue_comment"),
        ("status", "status"),
        ("push", "push"),
        ("pull_request_approved", "pull_request_review_approved"),
        ("pull_request_rejected", "pull_request_review_rejected"),
    } <= seen_types
    uuids = [r.headers["X-Gitea-Delivery"] for r in receiver.received]
    assert len(set(uuids)) == len(uuids)


async def test_no_secret_means_empty_signatures(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    await gitea.add_hook(team.repo, receiver.url, "", events=["push"])
    await gitea.push_commit(team.repo, team.writer, "x", {"x": "1"}, base="main")
    r = await receiver.wait_for(lambda r: r.event_type == "push")
    assert r.headers["X-Gitea-Signature"] == ""
    assert r.headers["X-Hub-Signature-256"] == "sha256="


async def test_hook_event_subscriptions_follow_gitea(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    """`issue_comment` alone does not get PR comments; `pull_request` gets every PR sub-event."""
    await gitea.add_hook(team.repo, receiver.url, SECRET, events=["issue_comment"])
    await gitea.push_commit(team.repo, team.writer, "f", {"f": "1"}, base="main")
    pr = await gitea.create_pr(team.repo, team.writer, "f")
    await gitea.comment(team.repo, pr["number"], team.writer, "on the PR")
    issue = await gitea.api("POST", f"/repos/{team.repo}/issues", json={"title": "t"})
    await gitea.comment(team.repo, issue["number"], team.writer, "on the issue")
    await gitea.wait_idle()
    assert [r.event_type for r in receiver.received] == ["issue_comment"]


async def test_branch_filter(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    await gitea.add_hook(team.repo, receiver.url, SECRET, events=["push"], branch_filter="main")
    await gitea.push_commit(team.repo, team.writer, "feature", {"f": "1"}, base="main")
    await gitea.push_commit(team.repo, team.owner, "main", {"m": "1"})
    await gitea.wait_idle()
    assert [r.json()["ref"] for r in receiver.received] == ["refs/heads/main"]


async def test_forgejo_flavour_headers_and_no_status_event(forgejo: SimHandle, receiver: Receiver) -> None:
    team = await make_team(forgejo)
    await forgejo.add_hook(team.repo, receiver.url, SECRET, events=["push", "status", "pull_request"])
    sha = await forgejo.push_commit(team.repo, team.writer, "f", {"f": "1"}, base="main")
    await forgejo.set_status(team.repo, sha, "success")
    await forgejo.wait_idle()
    assert [r.event_type for r in receiver.received] == ["push"]
    h = receiver.received[0].headers
    assert h["X-Forgejo-Event"] == "push" and h["X-Forgejo-Event-Type"] == "push"
    assert h["X-Forgejo-Delivery"] == h["X-Gitea-Delivery"]
    assert h["X-Forgejo-Signature"] == h["X-Gitea-Signature"]
    version = await forgejo.api("GET", "/version")
    assert "gitea" in version["version"]


async def test_failed_delivery_is_not_retried(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    receiver.status = 500
    await gitea.add_hook(team.repo, receiver.url, SECRET, events=["push"])
    await gitea.push_commit(team.repo, team.writer, "f", {"f": "1"}, base="main")
    await gitea.wait_idle()
    assert len(receiver.received) == 1
    deliveries = await gitea.log("delivery")
    assert [(d["status"], d["ok"]) for d in deliveries] == [(500, False)]


@pytest.mark.parametrize(
    ("action", "copies", "same_uuid"), [("drop", 0, True), ("duplicate", 2, True), ("redeliver", 2, False)]
)
async def test_delivery_faults(
    gitea: SimHandle, team: Team, receiver: Receiver, action: str, copies: int, same_uuid: bool
) -> None:
    await gitea.add_hook(team.repo, receiver.url, SECRET, events=["push"])
    await gitea.fault(kind="webhook", action=action, event="push", count=1)
    await gitea.push_commit(team.repo, team.writer, "f", {"f": "1"}, base="main")
    await gitea.wait_idle()
    assert len(receiver.received) == copies
    if copies:
        uuids = {r.headers["X-Gitea-Delivery"] for r in receiver.received}
        assert (len(uuids) == 1) is same_uuid
        assert len({r.body for r in receiver.received}) == 1


async def test_redeliver_from_the_log(gitea: SimHandle, team: Team, receiver: Receiver) -> None:
    await gitea.add_hook(team.repo, receiver.url, SECRET, events=["push"])
    await gitea.push_commit(team.repo, team.writer, "f", {"f": "1"}, base="main")
    await gitea.wait_idle()
    first = (await gitea.log("delivery"))[0]
    again = await gitea.sim_api("POST", "/_sim/webhooks/redeliver", {"uuid": first["uuid"]})
    await gitea.wait_idle()
    assert again["redelivery_of"] == first["uuid"]
    assert [r.headers["X-Gitea-Delivery"] for r in receiver.received] == [first["uuid"], again["uuid"]]
    assert receiver.received[0].body == receiver.received[1].body
