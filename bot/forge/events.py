"""Headers and body of a webhook delivery → one typed event. No I/O.

Branch on the event *type* (``X-Gitea-Event-Type``), not ``X-Gitea-Event``, which folds several together
(FACTS.md). Older Gitea sent only ``X-Gitea-Event``; then the action tells the sub-event apart.

:func:`parse_event` returns ``None`` for a well-formed delivery the bot does not act on (an assignee change,
a comment on a plain issue, ...), and raises :class:`MalformedEvent` when a delivery it does act on lacks
a field it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Flavour = Literal["gitea", "forgejo"]


class MalformedEvent(ValueError):
    """The body does not have the shape of the event its headers name."""


@dataclass(frozen=True, slots=True)
class DeliveryHeaders:
    delivery_id: str | None
    event: str
    event_type: str
    flavour: Flavour


def delivery_headers(headers: Mapping[str, str]) -> DeliveryHeaders:
    """Read the delivery id and event names, from the Forgejo, Gitea, Gogs or GitHub spelling."""

    def first(*names: str) -> str:
        for name in names:
            value = headers.get(name, "").strip()
            if value:
                return value
        return ""

    flavour: Flavour = "forgejo" if headers.get("X-Forgejo-Event") else "gitea"
    event = first("X-Forgejo-Event", "X-Gitea-Event", "X-Gogs-Event", "X-GitHub-Event")
    event_type = first("X-Forgejo-Event-Type", "X-Gitea-Event-Type", "X-Gogs-Event-Type", "X-GitHub-Event-Type")
    delivery = first("X-Forgejo-Delivery", "X-Gitea-Delivery", "X-Gogs-Delivery", "X-GitHub-Delivery")
    return DeliveryHeaders(delivery or None, event, event_type or event, flavour)


@dataclass(frozen=True, slots=True)
class RepoRef:
    owner: str
    name: str
    forge_id: int | None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True, slots=True)
class PullRequestInfo:
    number: int
    forge_id: int | None
    title: str
    body: str
    author: str
    state: str
    draft: bool
    merged: bool
    merge_commit_sha: str | None
    mergeable: bool | None
    head_ref: str
    head_sha: str
    head_repo: str | None
    base_ref: str
    labels: tuple[str, ...]
    allow_maintainer_edit: bool
    updated_at: str | None


@dataclass(frozen=True, slots=True)
class PullRequestEvent:
    """opened, closed (merged or not), reopened, edited, synchronized (new head), deleted."""

    action: str
    repo: RepoRef
    sender: str
    pull: PullRequestInfo

    @property
    def merged(self) -> bool:
        return self.action == "closed" and self.pull.merged


@dataclass(frozen=True, slots=True)
class LabelsChanged:
    """The PR's full current label set (Gitea sends no diff)."""

    action: str
    repo: RepoRef
    sender: str
    pull: PullRequestInfo

    @property
    def labels(self) -> tuple[str, ...]:
        return self.pull.labels


@dataclass(frozen=True, slots=True)
class ReviewEvent:
    repo: RepoRef
    sender: str
    pull: PullRequestInfo
    verdict: Literal["approved", "rejected"]
    content: str


@dataclass(frozen=True, slots=True)
class CommentEvent:
    """A comment on an issue or PR (``is_pull``): created, edited or deleted."""

    action: str
    repo: RepoRef
    sender: str
    number: int
    is_pull: bool
    comment_id: int
    body: str
    author: str
    pull: PullRequestInfo | None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    repo: RepoRef
    sender: str
    sha: str
    context: str
    state: str
    target_url: str
    description: str
    status_id: int | None


@dataclass(frozen=True, slots=True)
class PushEvent:
    repo: RepoRef
    sender: str
    ref: str
    before: str
    after: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


Event = PullRequestEvent | LabelsChanged | ReviewEvent | CommentEvent | StatusEvent | PushEvent

PULL_ACTIONS = frozenset({"opened", "closed", "reopened", "edited", "synchronized", "deleted"})
LABEL_ACTIONS = frozenset({"label_updated", "label_cleared"})
COMMENT_ACTIONS = frozenset({"created", "edited", "deleted"})
STATUS_STATES = frozenset({"pending", "success", "error", "failure", "warning", "skipped"})
REVIEW_TYPES: dict[str, Literal["approved", "rejected"]] = {
    "pull_request_review_approved": "approved",
    "pull_request_review_rejected": "rejected",
}
# Event types whose deliveries the bot stores; everything else is answered 2xx and dropped.
PULL_EVENT_TYPES = frozenset({"pull_request", "pull_request_sync", "pull_request_label"})
COMMENT_EVENT_TYPES = frozenset({"issue_comment", "pull_request_comment"})
HANDLED_EVENT_TYPES = PULL_EVENT_TYPES | COMMENT_EVENT_TYPES | frozenset(REVIEW_TYPES) | frozenset({"status", "push"})


def wanted(event: Event | None) -> bool:
    """Whether the bot keeps this event: comments on plain issues are dropped like unknown events."""
    if event is None:
        return False
    return not (isinstance(event, CommentEvent) and not event.is_pull)


def parse_event(event_type: str, payload: Any) -> Event | None:
    """Turn a delivery body into a typed event, or ``None`` when the bot has nothing to do with it."""
    if not isinstance(payload, Mapping):
        raise MalformedEvent("the body is not a JSON object")
    if event_type not in HANDLED_EVENT_TYPES:
        return None
    if event_type == "push":
        return _push(payload)
    if event_type == "status":
        return _status(payload)
    if event_type in COMMENT_EVENT_TYPES:
        return _comment(payload)
    if event_type in REVIEW_TYPES:
        return _review(payload, REVIEW_TYPES[event_type])
    return _pull_family(payload)


def _pull_family(payload: Mapping[str, Any]) -> Event | None:
    action = _str(payload, "action")
    if action in LABEL_ACTIONS:
        return LabelsChanged(action, _repo(payload), _sender(payload), _pull(payload))
    if action == "reviewed":  # pre-1.12 Gitea folded reviews into the pull_request event
        verdict = REVIEW_TYPES.get(str(_obj(payload, "review").get("type", "")))
        return _review(payload, verdict) if verdict else None
    if action not in PULL_ACTIONS:
        return None
    return PullRequestEvent(action, _repo(payload), _sender(payload), _pull(payload))


def _review(payload: Mapping[str, Any], verdict: Literal["approved", "rejected"]) -> ReviewEvent:
    review = payload.get("review") or {}
    content = str(review.get("content") or "") if isinstance(review, Mapping) else ""
    return ReviewEvent(_repo(payload), _sender(payload), _pull(payload), verdict, content)


def _comment(payload: Mapping[str, Any]) -> CommentEvent | None:
    action = _str(payload, "action")
    if action not in COMMENT_ACTIONS:
        return None
    issue = _obj(payload, "issue")
    comment = _obj(payload, "comment")
    is_pull = payload.get("is_pull")
    if not isinstance(is_pull, bool):  # before Gitea 1.10 only issue.pull_request told
        is_pull = isinstance(issue.get("pull_request"), Mapping)
    pull = _pull(payload) if isinstance(payload.get("pull_request"), Mapping) else None
    return CommentEvent(
        action=action,
        repo=_repo(payload),
        sender=_sender(payload),
        number=_int(issue, "number"),
        is_pull=is_pull,
        comment_id=_int(comment, "id"),
        body=str(comment.get("body") or ""),
        author=_login(comment.get("user")) or _sender(payload),
        pull=pull,
    )


def _status(payload: Mapping[str, Any]) -> StatusEvent:
    state = _str(payload, "state")
    if state not in STATUS_STATES:
        raise MalformedEvent(f"unknown status state {state!r}")
    status_id = payload.get("id")
    return StatusEvent(
        repo=_repo(payload),
        sender=_sender(payload),
        sha=_sha(payload, "sha"),
        context=_str(payload, "context"),
        state=state,
        target_url=str(payload.get("target_url") or ""),
        description=str(payload.get("description") or ""),
        status_id=status_id if isinstance(status_id, int) and not isinstance(status_id, bool) else None,
    )


def _push(payload: Mapping[str, Any]) -> PushEvent:
    return PushEvent(
        repo=_repo(payload),
        sender=_sender(payload),
        ref=_str(payload, "ref"),
        before=_sha(payload, "before"),
        after=_sha(payload, "after"),
    )


def _pull(payload: Mapping[str, Any]) -> PullRequestInfo:
    return pull_info(_obj(payload, "pull_request"))


def pull_info(pull: Any) -> PullRequestInfo:
    """A pull request object (webhook ``pull_request`` or an API answer, same shape) → PullRequestInfo."""
    if not isinstance(pull, Mapping):
        raise MalformedEvent("pull request is not an object")
    head = _obj(pull, "head")
    base = _obj(pull, "base")
    head_repo = head.get("repo")
    labels = pull.get("labels") or []
    if not isinstance(labels, list):
        raise MalformedEvent("pull_request.labels is not a list")
    mergeable = pull.get("mergeable")
    return PullRequestInfo(
        number=_int(pull, "number"),
        forge_id=_opt_int(pull, "id"),
        title=str(pull.get("title") or ""),
        body=str(pull.get("body") or ""),
        author=_login(pull.get("user")),
        state=_str(pull, "state"),
        draft=bool(pull.get("draft")),
        merged=bool(pull.get("merged")),
        merge_commit_sha=pull.get("merge_commit_sha") or None,
        mergeable=mergeable if isinstance(mergeable, bool) else None,
        head_ref=_str(head, "ref"),
        head_sha=_sha(head, "sha"),
        head_repo=_full_name(head_repo),
        base_ref=_str(base, "ref"),
        labels=tuple(str(item["name"]) for item in labels if isinstance(item, Mapping) and "name" in item),
        allow_maintainer_edit=bool(pull.get("allow_maintainer_edit")),
        updated_at=pull.get("updated_at") if isinstance(pull.get("updated_at"), str) else None,
    )


def _full_name(repo: Any) -> str | None:
    if isinstance(repo, Mapping) and isinstance(repo.get("full_name"), str) and repo["full_name"]:
        return str(repo["full_name"])
    return None


def _repo(payload: Mapping[str, Any]) -> RepoRef:
    repo = _obj(payload, "repository")
    full_name = repo.get("full_name")
    owner = _login(repo.get("owner"))
    name = repo.get("name")
    if isinstance(full_name, str) and full_name.count("/") == 1:
        owner, name = full_name.split("/")
    if not owner or not isinstance(name, str) or not name:
        raise MalformedEvent("repository has no owner/name")
    return RepoRef(owner, name, _opt_int(repo, "id"))


def _sender(payload: Mapping[str, Any]) -> str:
    return _login(payload.get("sender"))


def _login(user: Any) -> str:
    if isinstance(user, Mapping):
        for key in ("login", "username"):
            value = user.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


def _obj(payload: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = payload.get(key)
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"{key} is missing or not an object")
    return value


def _str(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(f"{key} is missing or not a string")
    return value


def _sha(payload: Mapping[str, Any], key: str) -> str:
    value = _str(payload, key)
    if not (len(value) in (40, 64) and all(c in "0123456789abcdef" for c in value)):
        raise MalformedEvent(f"{key} is not a commit SHA")
    return value


def _int(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedEvent(f"{key} is missing or not an integer")
    return value


def _opt_int(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
