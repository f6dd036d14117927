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


def needed_merge_style(settings: Settings) -> str:
    return "allow_manual_merge" if settings.strategy == "staging" else "allow_fast_forward_only_merge"


async def ensure_merge_styles(forge: GiteaClient, settings: Settings) -> None:
    flag = needed_merge_style(settings)
    for full_name in settings.repos:
        owner, name = full_name.split("/")
        if (await forge.get_repo(owner, name)).get(flag):
            continue
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
