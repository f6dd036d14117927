"""Auto-setup at start: for each managed repository, the bot's webhook exists exactly once."""

from __future__ import annotations

from bot.config import Settings
from bot.forge.client import GiteaClient
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
