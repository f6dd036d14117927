"""The words people read: reason codes and their details → comments and commit-status descriptions.

Every sentence the bot writes to a PR comes from here, so wording stays consistent and reviewable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bot.queue.model import Reason

STATUS_LIMIT = 140  # Gitea shows the description in one line; keep it short


def _short(sha: object) -> str:
    return str(sha or "")[:10]


def _list(items: object) -> str:
    names = [str(item) for item in items] if isinstance(items, (list, tuple)) else []
    return ", ".join(f"`{name}`" for name in names) or "(none)"


def outcome_comment(reason: Reason, detail: Mapping[str, Any], *, queue_url: str = "") -> str:
    """The one comment the bot posts on a PR when its entry reaches a final state."""
    link = f"\n\nDetails: {queue_url}" if queue_url else ""
    base = detail.get("base", "the target branch")
    if reason is Reason.MERGED:
        batch = ""
        if detail.get("with"):
            batch = (
                f" It was tested in one candidate ({_short(detail.get('candidate'))}) together with "
                f"{_prs(detail['with'])}, which landed with it."
            )
        return (
            f"Merged by the queue as {detail.get('sha', '')} after its checks passed on that very commit.{batch}{link}"
        )
    if reason is Reason.CHECKS_FAILED:
        where = f" ({detail['target_url']})" if detail.get("target_url") else ""
        described = f": {detail['description']}" if detail.get("description") else ""
        combines = f"combines this PR with the current {base}"
        if detail.get("with"):
            combines = f"combines the batch {_prs(detail['with'])} with the current {base}"
        found = (
            " It was found by splitting a red batch: it fails alone on top of everything that passed before it."
            if detail.get("bisected")
            else ""
        )
        return (
            f"Not merged: the required check `{detail.get('context', '?')}` reported "
            f"**{detail.get('state', 'failure')}**{described}{where} on {_short(detail.get('sha'))}, the commit that "
            f"{combines}.{found} Fix it and queue the PR again with `/merge`.{link}"
        )
    if reason is Reason.CI_TIMEOUT:
        waiting = list(detail.get("missing", [])) + list(detail.get("pending", []))
        return (
            f"Not merged: the required checks {_list(waiting)} did not finish on {_short(detail.get('sha'))} "
            f"before the deadline ({detail.get('timeout', 'CI timeout')}). "
            f"Check that CI runs on the queue's branches, then `/merge retry`.{link}"
        )
    if reason is Reason.CONFLICT:
        return (
            f"Not merged: this PR conflicts with the current {base} in {_list(detail.get('paths', []))}. "
            f"Rebase or merge {base} into it, then queue it again with `/merge`.{link}"
        )
    if reason is Reason.ALREADY_IN_BASE:
        return f"Nothing to merge: every change of this PR is already in {base}.{link}"
    if reason is Reason.BAD_CONFIG:
        return (
            f"Not merged: this PR changes the queue's configuration, and the file it brings cannot be used: "
            f"{detail.get('problem', '?')}. Fix it (`merge-bot check-config --repo-file "
            f"{detail.get('path', '.gitea/merge-bot.toml')}` checks it offline), then queue the PR again with "
            f"`/merge`.{link}"
        )
    if reason is Reason.HEAD_CHANGED:
        return (
            f"Removed from the queue: new commits arrived ({_short(detail.get('head'))}) after the PR was queued at "
            f"{_short(detail.get('approved'))}. A queue approval covers one commit; queue it again with `/merge`.{link}"
        )
    if reason is Reason.PR_CLOSED:
        return f"Removed from the queue: the PR was closed.{link}"
    if reason is Reason.PR_MERGED_OUTSIDE:
        return f"Removed from the queue: the PR was merged outside the queue.{link}"
    if reason is Reason.MERGE_REFUSED:
        if detail.get("via") == "merge":  # the merge call (pr-branch), not a push
            return (
                f"Not merged: the forge refused to merge this PR into {base} "
                f"({detail.get('message') or 'no reason given'}). The bot's user needs the right to merge into "
                f"{base}: write access, and a place on the merge whitelist of the branch protection if it has "
                f"one.{link}"
            )
        return (
            f"Not merged: the forge refused to move {base} ({detail.get('message', 'no reason given')}). "
            f"The bot needs push rights on {base} (push whitelist of the branch protection).{link}"
        )
    if reason is Reason.CANCELLED_BY_USER:
        return f"Removed from the queue by {detail.get('by', 'a maintainer')}.{link}"
    if reason is Reason.REPOSITORY_UNMANAGED:
        return (
            f"Removed from the queue: merge-bot no longer manages this repository "
            f"({UNMANAGED_WHY.get(str(detail.get('why')), str(detail.get('why') or 'it left the managed set'))}). "
            f"Nothing of this PR was merged by the queue{_was_merging(detail)}; once the repository is managed "
            f"again, queue it with `/merge`.{link}"
        )
    if reason is Reason.PERMISSION_REVOKED:
        return (
            f"Not merged: @{detail.get('by', '?')}, who queued this PR, no longer has write access. "
            f"Someone with write access can queue it again with `/merge`.{link}"
        )
    return f"Queue update: {reason.value}.{link}"


UNMANAGED_WHY = {
    "deleted": "it was deleted",
    "archived": "it was archived",
    "admin_lost": "the bot's user is no longer an admin of it",
    "topic_removed": "it no longer carries the topic the bot looks for",
    "not_matched": "no pattern of MERGE_BOT_REPOS names it any more",
}


def _was_merging(detail: Mapping[str, Any]) -> str:
    return " (it was being merged: check the base branch)" if detail.get("was_merging") else ""


def flaky_comment(context: str, target_url: str, numbers: list[int]) -> str:
    """Said on every PR of a batch that failed although each of its parts passed."""
    where = f" ({target_url})" if target_url else ""
    return (
        f"Note: the batch {_prs(numbers)} failed on `{context or 'a required check'}`{where}, yet every part of it "
        "passed when tested on its own, and all of it landed. The failure did not come from these changes: "
        f"it is counted as a flaky failure of `{context or 'that check'}`."
    )


def _prs(numbers: object) -> str:
    found = [f"#{number}" for number in numbers] if isinstance(numbers, (list, tuple)) else []
    return ", ".join(found) or "(none)"


def status_description(reason: Reason, detail: Mapping[str, Any]) -> str:
    """The description of the bot's own `merge-bot` commit status on the PR head."""
    if reason is Reason.STARTED:
        text = f"testing in {detail.get('ref', 'the queue')}"
        if detail.get("with"):
            text += f" with {_prs(detail['with'])}"
    elif reason is Reason.MERGED:
        text = f"merged as {_short(detail.get('sha'))}"
    elif reason is Reason.CHECKS_FAILED:
        text = f"failed: {detail.get('context', 'a required check')} reported {detail.get('state', 'failure')}"
    elif reason is Reason.CI_TIMEOUT:
        text = "failed: required checks did not report before the deadline"
    elif reason is Reason.CONFLICT:
        text = f"failed: conflicts in {', '.join(detail.get('paths', [])) or 'some files'}"
    elif reason is Reason.HEAD_CHANGED:
        text = "cancelled: new commits after the approval"
    elif reason in (Reason.PR_CLOSED, Reason.PR_MERGED_OUTSIDE, Reason.CANCELLED_BY_USER):
        text = "removed from the queue"
    elif reason is Reason.REPOSITORY_UNMANAGED:
        text = "removed from the queue: the repository is no longer managed"
    elif reason is Reason.MERGE_REFUSED:
        text = "failed: the forge refused the fast-forward"
    elif reason is Reason.PERMISSION_REVOKED:
        text = "failed: the approver no longer has write access"
    elif reason is Reason.ALREADY_IN_BASE:
        text = "nothing to merge: already in the base"
    elif reason is Reason.BAD_CONFIG:
        text = f"failed: {detail.get('problem', 'the merge-bot file it brings is not valid')}"
    elif reason in (Reason.FROZEN, Reason.PAUSED):
        text = f"{hold_words(reason, detail)}; position {detail.get('position', '?')}"
    else:
        text = f"queued, position {detail.get('position', '?')}"
    return text if len(text) <= STATUS_LIMIT else text[: STATUS_LIMIT - 1] + "…"


def hold_words(reason: Reason, detail: Mapping[str, Any]) -> str:
    """A freeze or a pause in a few words: "frozen until 18:00 UTC: release 4.2" (``detail``: the hold's
    ``reason``, ``until`` as ISO 8601 or a datetime, and ``scope``)."""
    what = "frozen" if reason is Reason.FROZEN else "paused"
    if detail.get("scope") == "window":
        what += " outside the merge windows"
    until = detail.get("until")
    if until:
        when = until if isinstance(until, datetime) else datetime.fromisoformat(str(until))
        what += f" until {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    why = str(detail.get("reason") or "")
    return f"{what}: {why}" if why and detail.get("scope") != "window" else what
