"""Webhook payloads in the shapes of modules/structs/hook.go, and delivery as services/webhook/deliver.go does it:
signed, asynchronous, 5 s timeout, no retry. Deliveries to one hook go out in order, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import aiohttp

from .gitrepo import ZERO_SHA, CommitInfo
from .model import Access, Comment, CommitStatus, Hook, Issue, Repo, User

if TYPE_CHECKING:
    from .core import Sim

DELIVERY_TIMEOUT_S = 5.0
JSON = dict[str, Any]

# X-Gitea-Event for each X-Gitea-Event-Type (webhook_module.HookEventType.Event()).
EVENT_HEADER = {
    "push": "push",
    "pull_request": "pull_request",
    "pull_request_assign": "pull_request",
    "pull_request_label": "pull_request",
    "pull_request_milestone": "pull_request",
    "pull_request_sync": "pull_request",
    "pull_request_review_request": "pull_request",
    "issue_comment": "issue_comment",
    "pull_request_comment": "issue_comment",
    "pull_request_review_approved": "pull_request_approved",
    "pull_request_review_rejected": "pull_request_rejected",
    "pull_request_review_comment": "pull_request_comment",
    "status": "status",
}

# Which API hook event names subscribe to each event type (routers/api/v1/utils/hook.go: pullHook, issuesHook).
_PULL_TYPES = {"pull_request_assign", "pull_request_label", "pull_request_milestone", "pull_request_comment",
               "pull_request_sync", "pull_request_review_request"}


def hook_wants(hook: Hook, event_type: str) -> bool:
    events = set(hook.events)
    if event_type == "pull_request":
        return bool(events & {"pull_request", "pull_request_only"})
    if event_type in _PULL_TYPES:
        return bool(events & {event_type, "pull_request"})
    if event_type.startswith("pull_request_review_") and event_type != "pull_request_review_request":
        return bool(events & {"pull_request_review", "pull_request"})
    if event_type == "issue_comment":
        return bool(events & {"issue_comment", "issues"})
    return event_type in events


def signatures(secret: str, body: bytes) -> tuple[str, str]:
    if not secret:
        return "", ""
    key = secret.encode()
    return (hmac.new(key, body, hashlib.sha1).hexdigest(), hmac.new(key, body, hashlib.sha256).hexdigest())


def delivery_headers(flavour: str, delivery: str, event_type: str, secret: str, body: bytes) -> dict[str, str]:
    event = EVENT_HEADER.get(event_type, event_type)
    sha1, sha256 = signatures(secret, body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GiteaServer",
        "X-Gitea-Delivery": delivery, "X-Gitea-Event": event, "X-Gitea-Event-Type": event_type,
        "X-Gitea-Signature": sha256,
        "X-Gogs-Delivery": delivery, "X-Gogs-Event": event, "X-Gogs-Event-Type": event_type,
        "X-Gogs-Signature": sha256,
        "X-Hub-Signature": f"sha1={sha1}", "X-Hub-Signature-256": f"sha256={sha256}",
        "X-GitHub-Delivery": delivery, "X-GitHub-Event": event, "X-GitHub-Event-Type": event_type,
    }
    if flavour == "forgejo":
        headers.update({"X-Forgejo-Delivery": delivery, "X-Forgejo-Event": event,
                        "X-Forgejo-Event-Type": event_type, "X-Forgejo-Signature": sha256})
    return headers


@dataclass
class Delivery:
    uuid: str
    hook_id: int
    repo_id: int
    event_type: str
    body: bytes
    redelivery_of: str = ""


class Webhooks:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.history: dict[str, Delivery] = {}
        self._queues: dict[int, asyncio.Queue[Delivery]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def wait_idle(self, within_s: float = 10.0) -> None:
        """Wait until every queued delivery was attempted (for tests)."""
        await asyncio.wait_for(self._idle.wait(), within_s)

    # --- which hooks ---
    def hooks_of(self, repo: Repo) -> list[Hook]:
        """PrepareWebhooks: the repository's hooks, then those of its owner (user or organisation)."""
        owner = self.sim.state.users.get(repo.owner_id)
        return [*repo.hooks.values(), *(owner.hooks.values() if owner is not None else ())]

    def find_hook(self, repo: Repo, hook_id: int) -> Hook | None:
        return next((hook for hook in self.hooks_of(repo) if hook.id == hook_id), None)

    # --- emitting ---
    def emit(self, repo: Repo, event_type: str, payload: JSON, branch: str | None = None) -> None:
        if event_type == "status" and self.sim.flavour == "forgejo":
            return  # Forgejo has no status webhook event
        body = json.dumps(payload, indent=2).encode()
        for hook in self.hooks_of(repo):
            if hook.active:
                self._prepare(repo, hook, event_type, body, branch)

    def test(self, repo: Repo, hook: Hook, payload: JSON, branch: str) -> None:
        """TestHook calls PrepareWebhook on the one hook: its events and branch filter count, `active` does
        not (an inactive hook gets its test delivery too)."""
        self._prepare(repo, hook, "push", json.dumps(payload, indent=2).encode(), branch)

    def _prepare(self, repo: Repo, hook: Hook, event_type: str, body: bytes, branch: str | None) -> None:
        if not hook_wants(hook, event_type):
            return
        if branch is not None and hook.branch_filter not in ("", "*", "**") \
                and not fnmatchcase(branch, hook.branch_filter):
            return
        self._enqueue(Delivery(str(uuid.uuid4()), hook.id, repo.id, event_type, body))

    def redeliver(self, delivery_uuid: str) -> Delivery | None:
        """What the web UI's "Redeliver" does: the same body under a new delivery UUID."""
        old = self.history.get(delivery_uuid)
        if old is None:
            return None
        new = Delivery(str(uuid.uuid4()), old.hook_id, old.repo_id, old.event_type, old.body, old.uuid)
        self._enqueue(new)
        return new

    def _enqueue(self, d: Delivery) -> None:
        fault = self.sim.faults.take_webhook(d.event_type)
        copies = [d]
        if fault is not None:
            self.sim.log.add("delivery_fault", uuid=d.uuid, event_type=d.event_type, action=fault.action)
            if fault.action == "drop":
                self.history[d.uuid] = d
                self.sim.log.add("delivery", uuid=d.uuid, hook_id=d.hook_id, event=EVENT_HEADER.get(d.event_type),
                                 event_type=d.event_type, status=None, error="dropped by fault", dropped=True,
                                 redelivery_of=d.redelivery_of)
                return
            if fault.action == "duplicate":
                copies = [d, d]
            elif fault.action == "redeliver":
                copies = [d, Delivery(str(uuid.uuid4()), d.hook_id, d.repo_id, d.event_type, d.body, d.uuid)]
            elif fault.action == "delay":
                self._pending += 1
                self._idle.clear()
                asyncio.get_running_loop().call_later(fault.delay_s, self._delayed, d)
                return
        for c in copies:
            self._put(c)

    def _delayed(self, d: Delivery) -> None:
        self._pending -= 1
        self._put(d)
        if self._pending == 0 and all(q.empty() for q in self._queues.values()):
            self._idle.set()

    def _put(self, d: Delivery) -> None:
        queue = self._queues.get(d.hook_id)
        if queue is None:
            queue = self._queues[d.hook_id] = asyncio.Queue()
            self._workers[d.hook_id] = asyncio.create_task(self._worker(queue))
        self._pending += 1
        self._idle.clear()
        queue.put_nowait(d)

    async def _worker(self, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            d = await queue.get()
            try:
                await self._deliver(d)
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    async def _deliver(self, d: Delivery) -> None:
        self.history[d.uuid] = d
        repo = self.sim.state.repos.get(d.repo_id)
        hook = self.find_hook(repo, d.hook_id) if repo else None
        if hook is None:
            return
        headers = delivery_headers(self.sim.flavour, d.uuid, d.event_type, hook.secret, d.body)
        if hook.authorization_header:
            headers["Authorization"] = hook.authorization_header
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S))
        started = time.monotonic()
        status: int | None = None
        error = ""
        try:
            async with self._session.post(hook.url, data=d.body, headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.sim.log.add("delivery", uuid=d.uuid, hook_id=d.hook_id, url=hook.url,
                         event=EVENT_HEADER.get(d.event_type, d.event_type), event_type=d.event_type,
                         status=status, error=error, ok=status is not None and 200 <= status < 300,
                         duration_ms=round((time.monotonic() - started) * 1000, 1),
                         redelivery_of=d.redelivery_of)


class Payloads:
    """Builders for the webhook bodies the simulator sends."""

    def __init__(self, sim: Sim) -> None:
        self.sim = sim

    def _common(self, repo: Repo, sender: User) -> tuple[JSON, JSON]:
        ser = self.sim.ser
        return ser.repo(repo, Access.READ), ser.user(sender)

    def pull_request(self, action: str, repo: Repo, issue: Issue, sender: User, *,
                     changes: JSON | None = None, review: JSON | None = None, commit_id: str = "") -> JSON:
        repo_json, sender_json = self._common(repo, sender)
        data: JSON = {"action": action, "number": issue.index}
        if changes is not None:
            data["changes"] = changes
        data.update({"pull_request": self.sim.ser.pull(repo, issue, Access.READ), "requested_reviewer": None,
                     "repository": repo_json, "sender": sender_json, "commit_id": commit_id, "review": review})
        return data

    def comment(self, action: str, repo: Repo, issue: Issue, comment: Comment, sender: User,
                changes: JSON | None = None) -> JSON:
        ser = self.sim.ser
        repo_json, sender_json = self._common(repo, sender)
        data: JSON = {"action": action, "issue": ser.issue(repo, issue)}
        if issue.pr is not None:
            data["pull_request"] = ser.pull(repo, issue, Access.READ)
        data["comment"] = ser.comment(repo, issue, comment)
        if changes is not None:
            data["changes"] = changes
        data.update({"repository": repo_json, "sender": sender_json, "is_pull": issue.is_pull})
        return data

    def status(self, repo: Repo, st: CommitStatus, commit: CommitInfo, sender: User) -> JSON:
        repo_json, sender_json = self._common(repo, sender)
        return {"commit": self.sim.ser.payload_commit(repo, commit), "context": st.context,
                "created_at": _ts(st), "description": st.description, "id": st.id,
                "repository": repo_json, "sender": sender_json, "sha": st.sha, "state": st.state,
                "target_url": st.target_url, "updated_at": _ts(st)}

    def push(self, repo: Repo, ref: str, before: str, after: str, commits: list[CommitInfo],
             pusher: User) -> JSON:
        ser = self.sim.ser
        repo_json, sender_json = self._common(repo, pusher)
        shown = [ser.payload_commit(repo, c) for c in commits[:20]]
        return {
            "ref": ref, "before": before, "after": after,
            "compare_url": f"{ser.repo_html(repo)}/compare/{before}...{after}" if before != ZERO_SHA else "",
            "commits": shown, "total_commits": len(commits), "head_commit": shown[0] if shown else None,
            "repository": repo_json, "pusher": ser.user(pusher), "sender": sender_json,
        }


    def test_push(self, repo: Repo, ref: str, commit: CommitInfo, doer: User) -> JSON:
        """The body TestHook sends: one commit, before = after = that commit, no access in the repository."""
        ser = self.sim.ser
        shown = ser.payload_commit(repo, commit)
        return {
            "ref": ref, "before": commit.sha, "after": commit.sha,
            "compare_url": f"{ser.repo_html(repo)}/compare/{commit.sha}...{commit.sha}",
            "commits": [shown], "total_commits": 1, "head_commit": shown,
            "repository": ser.repo(repo, Access.NONE), "pusher": ser.user(doer), "sender": ser.user(doer),
        }


def _ts(st: CommitStatus) -> str:
    return st.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
