"""Which contexts must be green, from the forge and the config (DESIGN.md, "Required checks").

The base branch's protection wins when it has status checks enabled with contexts (globs since Gitea
1.20); else the configured list; else "at least one status, and all green".
"""

from __future__ import annotations

from bot.forge.client import GiteaClient, Protection
from bot.queue.model import RequiredChecks


def resolve(protection: Protection | None, configured: tuple[str, ...], own: str = "merge-bot") -> RequiredChecks:
    """The bot's own context is dropped from the list: it is required of PRs (so nothing lands untested),
    never of the candidate the bot itself is testing."""
    if protection is not None and protection.status_checks:
        contexts = tuple(c for c in protection.contexts if c != own and not c.startswith(own + "/"))
        if contexts:
            return RequiredChecks(contexts, "branch protection")
    if configured:
        return RequiredChecks(tuple(configured), "configuration")
    return RequiredChecks(None, "default")


async def required_checks(
    client: GiteaClient, owner: str, repo: str, branch: str, configured: tuple[str, ...], own: str
) -> RequiredChecks:
    return resolve(await client.branch_protection(owner, repo, branch), configured, own)
