"""The words of the notifications: one :class:`Message` per event, plain text with links, for any chat.

Pure functions. A message names the repository and the PR by number in its title (what a channel full of
them is scanned for) and carries the links: the PR on the forge, and its page on the queue (the reason, the
checks, the history).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from bot.db.models import Entry, PullRequest, Repository
from bot.notifications.outbox import Kind, Message
from bot.queue import messages
from bot.queue.model import EntryState, Reason

if TYPE_CHECKING:
    from bot.config import Settings


def forge_pull_url(settings: Settings, repository: str, number: int) -> str:
    return f"{str(settings.gitea_url).rstrip('/')}/{repository}/pulls/{number}"


def queue_page_url(settings: Settings, repository: str, branch: str | None = None) -> str:
    page = f"{str(settings.external_url).rstrip('/')}/queue/{repository}"
    return f"{page}#{branch}" if branch else page


def _pull(pull: PullRequest) -> str:
    title = f" “{pull.title}”" if pull.title else ""
    author = f" by {pull.author}" if pull.author else ""
    return f"PR #{pull.number}{title}{author}"


def outcome(settings: Settings, repo: Repository, entry: Entry, pull: PullRequest, queue_url: str) -> Message | None:
    """A final entry's message: merged, or rejected with the reason; None for an entry that was cancelled
    (by a person, a push, the PR closed): nobody needs telling about that outside the PR."""
    detail = dict(entry.reason_detail or {})
    links = f"PR: {forge_pull_url(settings, repo.full_name, pull.number)}\nQueue: {queue_url}"

    def told(kind: Kind, title: str, body: str) -> Message:
        return Message(
            kind,
            title,
            body,
            link=queue_url,
            repository=repo.full_name,
            train_id=entry.train_id,
            entry_id=entry.id,
            pull_number=pull.number,
            key=f"entry:{entry.id}",
        )

    base = detail.get("base") or pull.base_ref or "the target branch"
    if entry.state == EntryState.MERGED:
        sha = str(entry.merged_sha or detail.get("sha") or "")[:10]
        landed = f" as {sha}" if sha else ""
        return told(
            Kind.MERGED,
            f"{repo.full_name}: PR #{pull.number} merged",
            f"{_pull(pull)} was merged into {base}{landed} by the queue.\n{links}",
        )
    if entry.state == EntryState.FAILED:
        reason = Reason(entry.reason) if entry.reason else None
        why = messages.status_description(reason, detail).removeprefix("failed: ") if reason else "no reason given"
        failing = detail.get("target_url") if reason is Reason.CHECKS_FAILED else None
        check = f"\nCheck: {failing}" if failing else ""
        code = f" ({reason.value})" if reason else ""
        return told(
            Kind.REJECTED,
            f"{repo.full_name}: PR #{pull.number} rejected",
            f"{_pull(pull)} was not merged into {base}: {why}{code}.{check}\n{links}",
        )
    return None


def stuck(
    settings: Settings, repository: str, branch: str, train_id: int, waiting: int, since: datetime, now: datetime
) -> Message:
    """A train with work and no progress since ``since``; keyed by the episode, so it is told once."""
    minutes = int((now - since).total_seconds() // 60)
    link = queue_page_url(settings, repository, branch)
    return Message(
        Kind.STUCK,
        f"{repository}: the queue for {branch} is stuck",
        f"{waiting} PR{'s' if waiting != 1 else ''} in line for {branch}, and nothing has moved for {minutes} minutes "
        f"(since {since:%Y-%m-%d %H:%M} UTC). CI may not be reporting, or the bot cannot reach the forge.\n"
        f"Queue: {link}",
        link=link,
        repository=repository,
        train_id=train_id,
        key=f"stuck:train:{train_id}:since:{since.isoformat()}",
    )


def frozen(settings: Settings, repository: str, branch: str | None, by: str | None, reason: str = "") -> Message:
    """The queue of ``branch`` (every branch when None) was frozen: nothing lands until it is unfrozen."""
    which = f"the queue for {branch}" if branch else "the queue"
    who = f" by {by}" if by else ""
    why = f": {reason}" if reason else ""
    link = queue_page_url(settings, repository, branch)
    return Message(
        Kind.FROZEN,
        f"{repository}: {which} is frozen",
        f"{which[0].upper()}{which[1:]} was frozen{who}{why}. Nothing lands until it is unfrozen.\nQueue: {link}",
        link=link,
        repository=repository,
    )


def unfrozen(settings: Settings, repository: str, branch: str | None, by: str | None) -> Message:
    which = f"the queue for {branch}" if branch else "the queue"
    who = f" by {by}" if by else ""
    link = queue_page_url(settings, repository, branch)
    return Message(
        Kind.UNFROZEN,
        f"{repository}: {which} is running again",
        f"{which[0].upper()}{which[1:]} was unfrozen{who}.\nQueue: {link}",
        link=link,
        repository=repository,
    )


def config_broken(
    repository: str | None, where: str, problem: str, *, link: str | None = None, key: str | None = None
) -> Message:
    """A configuration file the bot reads is broken (``problem``: the one-line error, without secrets).
    ``key``: e.g. the file's blob SHA, so that finding the same broken file again is not told again."""
    scope = f"{repository}: " if repository else ""
    return Message(
        Kind.CONFIG_BROKEN,
        f"{scope}merge-bot configuration is broken",
        f"{where} cannot be used: {problem}." + (f"\n{link}" if link else ""),
        link=link,
        repository=repository,
        key=key,
    )
