"""Every captured Gitea/Forgejo payload parses into the right typed event (tests/contract/gitea/payloads)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.forge import events, signature
from bot.forge.events import (
    CommentEvent,
    LabelsChanged,
    PullRequestEvent,
    PushEvent,
    ReviewEvent,
    StatusEvent,
)
from tests.conftest import PAYLOADS

# file → (X-Gitea-Event, X-Gitea-Event-Type) as Gitea sends them for that payload (FACTS.md table).
HEADERS = {
    "SYNTHETIC-gitea-status-shape-from-v1.25.4-struct.json": ("status", "status"),
    "gitea-issue_comment-on-issue-created.json": ("issue_comment", "issue_comment"),
    "gitea-issue_comment-on-pr-created-2018.json": ("issue_comment", ""),
    "gitea-issue_comment-on-pr-created-v1.23plus.json": ("issue_comment", "pull_request_comment"),
    "gitea-issue_comment-on-pr-created.json": ("issue_comment", "pull_request_comment"),
    "gitea-pull_request-assigned.json": ("pull_request", "pull_request_assign"),
    "gitea-pull_request-closed-merged.json": ("pull_request", "pull_request"),
    "gitea-pull_request-closed-unmerged.json": ("pull_request", "pull_request"),
    "gitea-pull_request-edited-title.json": ("pull_request", "pull_request"),
    "gitea-pull_request-opened-2018-gitea1.5era.json": ("pull_request", ""),
    "gitea-pull_request-opened.json": ("pull_request", "pull_request"),
    "gitea-pull_request-reopened.json": ("pull_request", "pull_request"),
    "gitea-pull_request-review_requested.json": ("pull_request", "pull_request_review_request"),
    "gitea-pull_request-synchronized-2018-EDITEDCOPY.json": ("pull_request", ""),
    "gitea-pull_request-synchronized.json": ("pull_request", "pull_request_sync"),
    "gitea-pull_request_label-label_cleared-EDITEDCOPY.json": ("pull_request", "pull_request_label"),
    "gitea-pull_request_label-label_updated-2.json": ("pull_request", "pull_request_label"),
    "gitea-pull_request_label-label_updated-2022.json": ("pull_request", "pull_request_label"),
    "gitea-pull_request_label-label_updated.json": ("pull_request", "pull_request_label"),
    "gitea-pull_request_review-2022.json": ("pull_request_approved", "pull_request_review_approved"),
    "gitea-pull_request_review_approved.json": ("pull_request_approved", "pull_request_review_approved"),
    "gitea-pull_request_review_comment.json": ("pull_request_comment", "pull_request_review_comment"),
    "gitea-pull_request_review_rejected.json": ("pull_request_rejected", "pull_request_review_rejected"),
    "gitea-push-multi-commits.json": ("push", "push"),
    "gitea-push-new-branch.json": ("push", "push"),
    "gitea-push.json": ("push", "push"),
}

# file → (event class or None for "not handled", fields that must hold)
EXPECTED: dict[str, tuple[type | None, dict[str, Any]]] = {
    "SYNTHETIC-gitea-status-shape-from-v1.25.4-struct.json": (StatusEvent, {"state": "success"}),
    "gitea-issue_comment-on-issue-created.json": (CommentEvent, {"is_pull": False, "action": "created"}),
    "gitea-issue_comment-on-pr-created-2018.json": (CommentEvent, {"is_pull": True, "number": 2}),
    "gitea-issue_comment-on-pr-created-v1.23plus.json": (CommentEvent, {"is_pull": True, "number": 3}),
    "gitea-issue_comment-on-pr-created.json": (CommentEvent, {"is_pull": True, "number": 2, "comment_id": 6}),
    "gitea-pull_request-assigned.json": (None, {}),
    "gitea-pull_request-closed-merged.json": (PullRequestEvent, {"action": "closed", "merged": True}),
    "gitea-pull_request-closed-unmerged.json": (PullRequestEvent, {"action": "closed", "merged": False}),
    "gitea-pull_request-edited-title.json": (PullRequestEvent, {"action": "edited"}),
    "gitea-pull_request-opened-2018-gitea1.5era.json": (PullRequestEvent, {"action": "opened"}),
    "gitea-pull_request-opened.json": (PullRequestEvent, {"action": "opened"}),
    "gitea-pull_request-reopened.json": (PullRequestEvent, {"action": "reopened"}),
    "gitea-pull_request-review_requested.json": (None, {}),
    "gitea-pull_request-synchronized-2018-EDITEDCOPY.json": (PullRequestEvent, {"action": "synchronized"}),
    "gitea-pull_request-synchronized.json": (PullRequestEvent, {"action": "synchronized"}),
    "gitea-pull_request_label-label_cleared-EDITEDCOPY.json": (LabelsChanged, {"action": "label_cleared"}),
    "gitea-pull_request_label-label_updated-2.json": (LabelsChanged, {"action": "label_updated"}),
    "gitea-pull_request_label-label_updated-2022.json": (LabelsChanged, {"action": "label_updated"}),
    "gitea-pull_request_label-label_updated.json": (LabelsChanged, {"action": "label_updated"}),
    "gitea-pull_request_review-2022.json": (ReviewEvent, {"verdict": "approved"}),
    "gitea-pull_request_review_approved.json": (ReviewEvent, {"verdict": "approved"}),
    "gitea-pull_request_review_comment.json": (None, {}),
    "gitea-pull_request_review_rejected.json": (ReviewEvent, {"verdict": "rejected"}),
    "gitea-push-multi-commits.json": (PushEvent, {"branch": "main"}),
    "gitea-push-new-branch.json": (PushEvent, {"before": "0" * 40}),
    "gitea-push.json": (PushEvent, {"branch": "master"}),
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return data


def test_every_sample_is_in_the_table() -> None:
    on_disk = {path.name for path in PAYLOADS.glob("*.json")}
    assert on_disk == set(EXPECTED) == set(HEADERS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_parses_into_its_typed_event(name: str) -> None:
    event_name, event_type = HEADERS[name]
    headers = events.delivery_headers({"X-Gitea-Event": event_name, "X-Gitea-Event-Type": event_type})
    payload = load(name)
    event = events.parse_event(headers.event_type, payload)
    kind, fields = EXPECTED[name]
    if kind is None:
        assert event is None
        return
    assert isinstance(event, kind)
    for field, value in fields.items():
        assert getattr(event, field) == value, field
    assert event.repo.full_name == payload["repository"]["full_name"]


def test_pull_request_fields_come_from_the_payload() -> None:
    event = events.parse_event("pull_request", load("gitea-pull_request-closed-merged.json"))
    assert isinstance(event, PullRequestEvent)
    raw = load("gitea-pull_request-closed-merged.json")["pull_request"]
    assert event.pull.number == raw["number"]
    assert event.pull.head_sha == raw["head"]["sha"]
    assert event.pull.base_ref == raw["base"]["ref"]
    assert event.pull.merge_commit_sha == raw["merge_commit_sha"]


def test_fork_pull_request_names_its_head_repository() -> None:
    event = events.parse_event("pull_request", load("gitea-pull_request-opened.json"))
    assert isinstance(event, PullRequestEvent)
    assert event.pull.head_repo == "example2/example"
    assert event.repo.full_name == "example/example"


def test_label_event_carries_the_full_label_set() -> None:
    payload = load("gitea-pull_request_label-label_updated.json")
    event = events.parse_event("pull_request_label", payload)
    assert isinstance(event, LabelsChanged)
    assert event.labels == tuple(label["name"] for label in payload["pull_request"]["labels"])
    assert event.labels


def test_comment_on_a_plain_issue_is_not_wanted() -> None:
    issue = events.parse_event("issue_comment", load("gitea-issue_comment-on-issue-created.json"))
    pull = events.parse_event("pull_request_comment", load("gitea-issue_comment-on-pr-created.json"))
    assert not events.wanted(issue)
    assert events.wanted(pull)
    assert not events.wanted(None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {"X-Gitea-Delivery": "u1", "X-Gitea-Event": "pull_request", "X-Gitea-Event-Type": "pull_request_sync"},
            ("u1", "pull_request", "pull_request_sync", "gitea"),
        ),
        (
            {
                "X-Forgejo-Delivery": "u2",
                "X-Forgejo-Event": "issue_comment",
                "X-Forgejo-Event-Type": "pull_request_comment",
                "X-Gitea-Delivery": "u2",
            },
            ("u2", "issue_comment", "pull_request_comment", "forgejo"),
        ),
        ({"X-Gitea-Event": "push"}, (None, "push", "push", "gitea")),
        ({"X-GitHub-Delivery": "u3", "X-GitHub-Event": "status"}, ("u3", "status", "status", "gitea")),
    ],
)
def test_delivery_headers(headers: dict[str, str], expected: tuple[object, ...]) -> None:
    parsed = events.delivery_headers(headers)
    assert (parsed.delivery_id, parsed.event, parsed.event_type, parsed.flavour) == expected


@pytest.mark.parametrize(
    ("event_type", "mutate"),
    [
        ("pull_request", lambda p: p.pop("pull_request")),
        ("pull_request", lambda p: p["pull_request"].__setitem__("number", "7")),
        ("pull_request", lambda p: p["pull_request"]["head"].__setitem__("sha", "not-a-sha")),
        ("pull_request", lambda p: p.pop("repository")),
        ("pull_request", lambda p: p["pull_request"].__setitem__("labels", "bug")),
    ],
)
def test_malformed_handled_event_raises(event_type: str, mutate: Any) -> None:
    payload = load("gitea-pull_request-opened.json")
    mutate(payload)
    with pytest.raises(events.MalformedEvent):
        events.parse_event(event_type, payload)


def test_status_with_unknown_state_is_malformed() -> None:
    payload = load("SYNTHETIC-gitea-status-shape-from-v1.25.4-struct.json")
    payload["state"] = "exploded"
    with pytest.raises(events.MalformedEvent):
        events.parse_event("status", payload)


def test_non_object_body_is_malformed() -> None:
    with pytest.raises(events.MalformedEvent):
        events.parse_event("push", [1, 2])


class TestSignature:
    secret = b"It's a Secret to Everybody"
    body = b'{"zen":"Keep it logically awesome."}'

    def test_each_header_spelling_verifies(self) -> None:
        digest = signature.sign(self.secret, self.body)
        for headers in (
            {"X-Gitea-Signature": digest},
            {"X-Forgejo-Signature": digest},
            {"X-Hub-Signature-256": "sha256=" + digest},
        ):
            assert signature.verify(self.secret, self.body, headers)

    def test_wrong_missing_or_prefixless_signature_fails(self) -> None:
        digest = signature.sign(self.secret, self.body)
        assert not signature.verify(self.secret, self.body, {})
        assert not signature.verify(self.secret, self.body, {"X-Gitea-Signature": ""})
        assert not signature.verify(self.secret, self.body + b" ", {"X-Gitea-Signature": digest})
        assert not signature.verify(b"other", self.body, {"X-Gitea-Signature": digest})
        assert not signature.verify(self.secret, self.body, {"X-Hub-Signature-256": digest})

    def test_one_good_signature_among_bad_ones_is_enough(self) -> None:
        digest = signature.sign(self.secret, self.body)
        headers = {"X-Gitea-Signature": "00" * 32, "X-Hub-Signature-256": "sha256=" + digest}
        assert signature.verify(self.secret, self.body, headers)

    def test_known_vector(self) -> None:
        # HMAC-SHA256 test vector from RFC 4231, case 2.
        assert (
            signature.sign(b"Jefe", b"what do ya want for nothing?")
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )
