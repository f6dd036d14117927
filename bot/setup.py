"""Auto-setup at start, for each managed repository: the bot's webhook exists exactly once, and the merge
style the strategy relies on is allowed (``manually-merged`` to mark PRs the staging strategy landed by a
push; ``fast-forward-only`` for the pr-branch strategy). Both are off by default in Gitea."""

from __future__ import annotations

from bot.config import Settings
from bot.forge.client import GiteaClient
from bot.forge.errors import ForgeError
from bot.logs import get_logger

log = get_logger(__name__)
HOOK_EVENTS = ("pull_request", "issue_comment", "status", "push")


async def ensure_webhooks(forge: GiteaClient, settings: Settings) -> None:
    for full_name in settings.repos:
        owner, name = full_name.split("/")
        hooks = [hook for hook in await forge.list_hooks(owner, name) if hook.url == settings.webhook_url]
        if not hooks:
            hook = await forge.create_hook(owner, name, settings.webhook_url, settings.webhook_secret, HOOK_EVENTS)
            log.info("setup.webhook_created", repo=full_name, hook=hook.id)
            continue
        keep, *extra = hooks
        # The secret cannot be read back: set it (and the events) on the one we keep, drop duplicates.
        await forge.edit_hook(owner, name, keep.id, settings.webhook_secret, HOOK_EVENTS)
        for hook in extra:
            await forge.delete_hook(owner, name, hook.id)
            log.info("setup.webhook_duplicate_removed", repo=full_name, hook=hook.id)


def needed_merge_styles(settings: Settings) -> tuple[str, ...]:
    """Staging marks PRs merged with `manually-merged`; pr-branch merges with `fast-forward-only`, and still
    needs `manually-merged` for the PRs from forks, which it tests on staging (the fork rule)."""
    if settings.strategy == "staging":
        return ("allow_manual_merge",)
    return ("allow_fast_forward_only_merge", "allow_manual_merge")


async def ensure_merge_styles(forge: GiteaClient, settings: Settings) -> None:
    for full_name in settings.repos:
        owner, name = full_name.split("/")
        current = await forge.get_repo(owner, name)
        for flag in needed_merge_styles(settings):
            if not current.get(flag):
                await _enable(forge, full_name, flag)


async def _enable(forge: GiteaClient, full_name: str, flag: str) -> None:
    owner, name = full_name.split("/")
    try:
        await forge.edit_repo(owner, name, **{flag: True})
        log.info("setup.merge_style_enabled", repo=full_name, setting=flag)
    except ForgeError as exc:
        log.error(
            "setup.merge_style_missing",
            repo=full_name,
            setting=flag,
            error=str(exc),
            hint="enable it in the repository's settings, or give the bot admin rights",
        )
