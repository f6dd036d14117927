"""Setup on the forge, for each managed repository: the bot's webhook exists exactly once, and the merge style
the strategy relies on is allowed (``manually-merged`` to mark PRs the staging strategy landed by a push;
``fast-forward-only`` for the pr-branch strategy). Both are off by default in Gitea.

For an ``owner/*`` pattern naming an organisation whose hooks the bot's user may manage (an owner of the
organisation: ``POST /orgs/{org}/hooks``), one organisation hook carries the events of all its repositories
(Gitea's ``PrepareWebhooks`` sends a repository's events to its owner's hooks too): those repositories then get
no hook of their own, and one the bot made earlier is removed, so that no event arrives twice. Run at start
for the named repositories and the organisations, and by discovery for each repository it adds.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.config import Settings
from bot.forge.client import GiteaClient
from bot.forge.errors import Forbidden, ForgeError, NotFound
from bot.logs import get_logger
from bot.repos.patterns import Owner

log = get_logger(__name__)
HOOK_EVENTS = ("pull_request", "issue_comment", "status", "push")


class Setup:
    def __init__(self, forge: GiteaClient, settings: Settings) -> None:
        self.forge = forge
        self.settings = settings
        self.org_hooked: set[str] = set()  # owners (lower case) whose organisation hook is the bot's

    async def start(self) -> None:
        """The organisation hooks, then every repository named one by one."""
        await self.organisations()
        for full_name in self.settings.explicit_repos:
            await self.repository(full_name)

    async def organisations(self) -> None:
        for pattern in self.settings.patterns:
            if isinstance(pattern, Owner) and await self._org_hook(pattern.owner):
                self.org_hooked.add(pattern.owner.lower())

    async def repository(self, full_name: str) -> None:
        owner, name = full_name.split("/")
        if owner.lower() in self.org_hooked:
            await self._drop_repository_hooks(owner, name)
        else:
            await self.repository_hook(owner, name)
        current = await self.forge.get_repo(owner, name)
        for flag in needed_merge_styles(self.settings):
            if not current.get(flag):
                await _enable(self.forge, full_name, flag)

    async def _org_hook(self, org: str) -> bool:
        """Whether the organisation's hook is in place now (False: a user, or the bot may not manage its hooks:
        each repository gets its own)."""
        url, secret = self.settings.webhook_url, self.settings.webhook_secret
        try:
            hooks = [hook for hook in await self.forge.list_org_hooks(org) if hook.url == url]
            if not hooks:
                hook = await self.forge.create_org_hook(org, url, secret, HOOK_EVENTS)
                log.info("setup.org_webhook_created", org=org, hook=hook.id)
                return True
            keep, *extra = hooks
            await self.forge.edit_org_hook(org, keep.id, secret, HOOK_EVENTS)
            for hook in extra:
                await self.forge.delete_org_hook(org, hook.id)
                log.info("setup.org_webhook_duplicate_removed", org=org, hook=hook.id)
        except NotFound:
            return False  # a user, not an organisation
        except Forbidden as exc:
            log.info("setup.org_webhook_not_allowed", org=org, error=str(exc), fallback="a hook per repository")
            return False
        return True

    async def repository_hook(self, owner: str, name: str) -> None:
        url, secret = self.settings.webhook_url, self.settings.webhook_secret
        hooks = [hook for hook in await self.forge.list_hooks(owner, name) if hook.url == url]
        if not hooks:
            hook = await self.forge.create_hook(owner, name, url, secret, HOOK_EVENTS)
            log.info("setup.webhook_created", repo=f"{owner}/{name}", hook=hook.id)
            return
        keep, *extra = hooks
        # The secret cannot be read back: set it (and the events) on the one we keep, drop duplicates.
        await self.forge.edit_hook(owner, name, keep.id, secret, HOOK_EVENTS)
        for hook in extra:
            await self.forge.delete_hook(owner, name, hook.id)
            log.info("setup.webhook_duplicate_removed", repo=f"{owner}/{name}", hook=hook.id)

    async def _drop_repository_hooks(self, owner: str, name: str) -> None:
        for hook in await self.forge.list_hooks(owner, name):
            if hook.url == self.settings.webhook_url:
                await self.forge.delete_hook(owner, name, hook.id)
                log.info("setup.webhook_replaced_by_org_hook", repo=f"{owner}/{name}", hook=hook.id)


async def ensure_webhooks(forge: GiteaClient, settings: Settings, repos: Iterable[str] | None = None) -> None:
    """The hooks of the named repositories (or ``repos``), one each."""
    setup = Setup(forge, settings)
    for full_name in settings.explicit_repos if repos is None else repos:
        owner, name = full_name.split("/")
        await setup.repository_hook(owner, name)


def needed_merge_styles(settings: Settings) -> tuple[str, ...]:
    """Staging marks PRs merged with `manually-merged`; pr-branch merges with `fast-forward-only`, and still
    needs `manually-merged` for the PRs from forks, which it tests on staging (the fork rule)."""
    if settings.strategy == "staging":
        return ("allow_manual_merge",)
    return ("allow_fast_forward_only_merge", "allow_manual_merge")


async def ensure_merge_styles(forge: GiteaClient, settings: Settings, repos: Iterable[str] | None = None) -> None:
    for full_name in settings.explicit_repos if repos is None else repos:
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
