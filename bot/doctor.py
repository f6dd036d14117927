"""``merge-bot doctor``: is the configured Gitea/Forgejo set up the way the bot needs?

One line per check, ``ok`` or what to change; the exit status is 1 when any check failed. The checks are
pure functions of what was observed (``*_finding``); :func:`examine` is the one I/O runner: it asks the forge
with the configured token and reads the bot's own database.

What is observable, and how:

- **The token**: ``GET /user`` answers (401: not a valid token).
- **Its scopes**: Gitea shows a token's scopes only when it refuses a call for one (403 "token does not have
  at least one of required scope(s), required=[...], token scope=..."; ``GET /users/{u}/tokens`` takes a
  password, not a token). So each scope the bot uses is tried with a call that cannot change anything:
  ``GET /user`` (read:user), ``DELETE .../hooks/0`` (write:repository), ``DELETE .../issues/comments/0``
  (write:issue) and, with ``allowed_teams``, ``GET /orgs/{org}/teams`` (read:organization). The scope check
  runs before the handler, so an allowed call answers 404 and a refused one names the token's scopes.
- **Reachability** (``[webhook] ALLOWED_HOST_LIST``, the network, the secret): only a delivery proves it.
  Doctor asks the forge for a test delivery of the repository's hook and waits for it in the bot's inbox
  (``webhook_deliveries``), where the running bot stores a delivery only after checking its signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, TextIO

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.db.models import Attempt, CommitStatus, Repository, Train, WebhookDelivery
from bot.db.session import make_engine
from bot.forge.client import Branch, GiteaClient, Hook
from bot.forge.errors import Forbidden, ForgeError, NotFound, Unauthorized
from bot.queue.checks import is_own
from bot.repos import discovery
from bot.repos.patterns import Exact, discovers
from bot.setup import HOOK_EVENTS, needed_merge_styles

SCOPE_REFUSAL = re.compile(r"token does not have at least one of required scope\(s\)")
TOKEN_SCOPE = re.compile(r"token scope=(?P<scopes>\S*)")
MERGE_STYLE_NAMES = {
    "allow_manual_merge": '"Manually merged" (Settings, Pull Requests: mark PR as manually merged)',
    "allow_fast_forward_only_merge": '"Fast-forward only"',
}
FINISHED = ("done", "failed", "abandoned")
POLL_SECONDS = 0.2
Sleep = Callable[[float], Awaitable[None]]
Database = Callable[[Settings], AbstractAsyncContextManager[str]]


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    subject: str
    ok: bool | None  # None: cannot tell yet (not a failure)
    text: str

    def line(self) -> str:
        mark = "ok" if self.ok else ("FAIL" if self.ok is False else "?")
        where = f" {self.subject}" if self.subject else ""
        return f"{mark:<4}  {self.check}{where}: {self.text}"


@dataclass(frozen=True, slots=True)
class SeenHook:
    hook: Hook
    owner_level: bool  # an organisation's hook, not the repository's own


@dataclass(frozen=True, slots=True)
class Candidate:
    ref: str
    sha: str
    state: str
    reason: str | None
    contexts: tuple[str, ...]  # contexts that reported on the candidate (any state)


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.ok is False for f in findings)


# -- the checks (pure) --------------------------------------------------------------------------------


def token_finding(configured: bool, login: str | None, error: ForgeError | None, url: str) -> Finding:
    if not configured:
        return Finding("token", "", False, "no token is configured: set MERGE_BOT_GITEA_TOKEN to an API token of "
                                           "the bot's user")
    if isinstance(error, Unauthorized):
        return Finding("token", "", False, f"{url} refuses the token ({error.status}): create a new token for the "
                                           "bot's user and set MERGE_BOT_GITEA_TOKEN")
    if error is not None and not (isinstance(error, Forbidden) and SCOPE_REFUSAL.search(error.message)):
        return Finding("token", "", False, f"{url} did not answer GET /user: {error}")
    who = f"of user {login}" if login else "(its user cannot be read without read:user)"
    return Finding("token", "", True, f"valid, {who}")


def scope_finding(refusals: Mapping[str, str | None]) -> Finding:
    """``refusals`` maps each scope the bot uses to what its probe got: None when allowed, the forge's scope
    refusal, or why the probe could not be tried."""
    missing = [scope for scope, refusal in refusals.items() if refusal and SCOPE_REFUSAL.search(refusal)]
    untried = {scope: refusal for scope, refusal in refusals.items() if refusal and scope not in missing}
    needed = ", ".join(refusals)
    if not missing and untried:
        return Finding("scopes", "", None, "; ".join(f"{scope} could not be tried: {why}"
                                                     for scope, why in untried.items()))
    if not missing:
        return Finding("scopes", "", True, f"the token may use {needed} (each tried with a call that changes "
                                            "nothing; Gitea shows a token's scopes only when it refuses one)")
    has = next((m.group("scopes") for r in refusals.values() if r and (m := TOKEN_SCOPE.search(r))), None)
    holding = f" (it has: {has or 'none'})" if has is not None else ""
    return Finding("scopes", "", False, f"the token lacks {', '.join(missing)}{holding}: create a token with "
                                         f"{needed} for the bot's user")


def database_finding(problem: str) -> Finding:
    return Finding("database", "", False, f"cannot read the bot's database{_colon(problem)}: run doctor where "
                                          "MERGE_BOT_DATABASE_URL (or the embedded one in the data dir) is reachable; "
                                          "without it the test delivery and CI cannot be checked")


def admin_finding(repo: str, permissions: Mapping[str, Any] | None, login: str | None) -> Finding:
    who = login or "the bot's user"
    if permissions is None:
        return Finding("admin", repo, False, f"not found, or not visible to {who}: check MERGE_BOT_REPOS, and make "
                                              f"{who} a collaborator")
    if not permissions.get("admin"):
        level = "write" if permissions.get("push") else "read"
        return Finding("admin", repo, False, f"{who} has {level} access: make it a collaborator with Administrator "
                                              "access (it creates its webhook, enables the merge style and reads "
                                              "other users' permissions)")
    return Finding("admin", repo, True, f"{who} is an admin")


def webhook_finding(repo: str, hooks: Sequence[SeenHook], url: str, note: str = "") -> Finding:
    """The hooks (the repository's and its organisation's) that point at the bot's webhook URL."""
    ours = [seen for seen in hooks if seen.hook.url.rstrip("/") == url.rstrip("/")]
    if not ours:
        return Finding("webhook", repo, False, f"no webhook points at {url}{note}: start merge-bot serve (it creates "
                                                f"one) or add one sending {', '.join(HOOK_EVENTS)} as JSON")
    if len(ours) > 1:
        names = ", ".join(_hook_name(seen) for seen in ours)
        return Finding("webhook", repo, False, f"{len(ours)} webhooks point at {url} ({names}): every event "
                                                "arrives that many times; delete all but one")
    seen = ours[0]
    hook = seen.hook
    if not hook.active:
        return Finding("webhook", repo, False, f"{_hook_name(seen)} is inactive: activate it")
    if hook.content_type and hook.content_type != "json":
        return Finding("webhook", repo, False, f"{_hook_name(seen)} sends {hook.content_type} bodies: set its POST "
                                                "content type to application/json")
    missing = [event for event in HOOK_EVENTS if event not in hook.events]
    if missing:
        return Finding("webhook", repo, False, f"{_hook_name(seen)} does not send {', '.join(missing)}: start "
                                                "merge-bot serve (it sets the events) or tick them in the hook")
    return Finding("webhook", repo, True, f"{_hook_name(seen)} sends {', '.join(HOOK_EVENTS)} to {url}")


def _hook_name(seen: SeenHook) -> str:
    return f"{'organisation ' if seen.owner_level else ''}hook {seen.hook.id}"


def delivery_finding(repo: str, hook: SeenHook | None, arrived: bool | None, waited: float, url: str,
                     answers_here: bool | None = None, problem: str = "") -> Finding:
    if hook is None:
        return Finding("delivery", repo, False, "not tried: there is no webhook to test")
    if problem:
        return Finding("delivery", repo, None if arrived is None else False, problem)
    if hook.owner_level:
        return Finding("delivery", repo, None, f"{_hook_name(hook)} is the organisation's, and Gitea tests only a "
                                                "repository's hooks: see its recent deliveries in the organisation's "
                                                "webhook settings")
    if arrived:
        return Finding("delivery", repo, True, f"a test delivery of {_hook_name(hook)} reached the bot, signed with "
                                                "its secret")
    here = ""
    if answers_here is False:
        here = f"; nothing answers at {url.rsplit('/', 1)[0]}/healthz from here either: is merge-bot serve running?"
    return Finding("delivery", repo, False, f"no test delivery of {_hook_name(hook)} reached the bot within "
                                            f"{waited:g} s: Gitea must reach {url} (allow its host in [webhook] "
                                            "ALLOWED_HOST_LIST of app.ini) and sign with the bot's secret (merge-bot "
                                            f"serve sets it at start){here}")


def protection_finding(repo: str, name: str, branch: Branch | None, status_context: str, strategy: str,
                       login: str | None) -> Finding:
    where = f"{repo} {name}"
    who = login or "the bot's user"
    if branch is None:
        return Finding("protection", where, False, f"there is no branch {name}")
    if not branch.protected:
        return Finding("protection", where, False, f"{name} is not protected: add a rule that requires the "
                                                   f"{status_context} status check, so nothing merges around the queue")
    rule = f"rule {branch.rule!r}" if branch.rule else "its rule"
    problems = []
    if not (branch.status_checks and any(fnmatchcase(status_context, p) for p in branch.contexts)):
        problems.append(f"make {status_context} a required status check of {rule}")
    if strategy == "staging" and not branch.user_can_push:
        problems.append(f"let {who} push to {name} ({rule}: push allowlist); the staging strategy lands "
                        "candidates by a push")
    if not branch.user_can_merge:
        problems.append(f"let {who} merge into {name} ({rule}: merge allowlist)")
    if problems:
        return Finding("protection", where, False, "; ".join(problems))
    push = f", {who} may push" if strategy == "staging" else ""
    return Finding("protection", where, True, f"{rule} requires {status_context}{push}")


def merge_style_finding(repo: str, current: Mapping[str, Any], needed: Sequence[str], strategy: str) -> Finding:
    off = [flag for flag in needed if not current.get(flag)]
    if off:
        names = " and ".join(MERGE_STYLE_NAMES.get(flag, flag) for flag in off)
        return Finding("merge style", repo, False, f"{', '.join(off)} is off: enable {names} in the repository's "
                                                    f"settings (the {strategy} strategy needs it; merge-bot serve "
                                                    "enables it at start when it is an admin)")
    return Finding("merge style", repo, True, f"{', '.join(needed)} enabled")


def ci_finding(repo: str, candidates: Sequence[Candidate], own_context: str) -> Finding:
    """Did CI ever report on a merge-bot/** candidate? ``candidates`` are the newest first."""
    if not candidates:
        return Finding("ci", repo, None, "no candidate was built on merge-bot/** yet: queue a PR, then run doctor "
                                         "again")
    for candidate in candidates:
        ci = [c for c in candidate.contexts if not is_own(c, own_context)]
        if ci:
            return Finding("ci", repo, True, f"CI reported {', '.join(sorted(ci))} on {candidate.ref}")
    finished = [c for c in candidates if c.state in FINISHED]
    if not finished:
        return Finding("ci", repo, None, f"{candidates[0].ref} is waiting for its first CI status: run doctor again "
                                         "when it has finished")
    timed_out = [c.ref for c in finished if c.reason == "ci_timeout"]
    why = f" ({', '.join(timed_out)} timed out waiting)" if timed_out else ""
    return Finding("ci", repo, False, f"CI never reported a status on the last {len(candidates)} candidates{why}: "
                                      "make CI run on pushes to merge-bot/** branches")


# -- the runner (I/O) ---------------------------------------------------------------------------------


async def _refusal(call: Awaitable[Any]) -> str | None:
    """What a harmless probe got: None when the scope let it through (whatever else the forge said), the
    refusal when it did not, or why the probe could not be tried."""
    try:
        await call
    except Forbidden as exc:
        return exc.message if SCOPE_REFUSAL.search(exc.message) else None
    except NotFound:
        return None
    except ForgeError as exc:
        return str(exc)
    return None


async def examine(
    settings: Settings,
    database_url: str | None,
    http: aiohttp.ClientSession,
    *,
    wait_seconds: float = 10.0,
    database_problem: str = "",
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
) -> list[Finding]:
    clock = clock or SystemClock()
    url = str(settings.gitea_url).rstrip("/")
    forge = GiteaClient(http, url, settings.gitea_token, get_retries=1)
    login: str | None = None
    error: ForgeError | None = None
    if settings.gitea_token is not None:
        try:
            login = await forge.current_user()
        except ForgeError as exc:
            error = exc
    token = token_finding(settings.gitea_token is not None, login, error, url)
    findings = [token]
    if not token.ok:
        return findings
    repos, found = await _repositories(forge, settings)
    if found is not None:
        findings.append(discovery_finding(settings, found))
    findings.append(await _scopes(forge, settings, error, repos))
    engine = make_engine(database_url, pool_size=1, application_name="merge-bot doctor") if database_url else None
    if engine is not None:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, SQLAlchemyError) as exc:
            await engine.dispose()
            engine, database_problem = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    if engine is None:
        findings.append(database_finding(database_problem))
    try:
        for full_name in repos:
            findings.extend(await _repository(forge, settings, full_name, login, engine, http, wait_seconds,
                                              clock, sleep))
    finally:
        if engine is not None:
            await engine.dispose()
    return findings


async def _repositories(forge: GiteaClient, settings: Settings) -> tuple[list[str], discovery.Found | None]:
    """The repositories to check: those named, and what the patterns name on the forge now."""
    names = {name.lower(): name for name in settings.explicit_repos}
    if not discovers(settings.patterns):
        return list(names.values()), None
    found = await discovery.list_all(forge, settings.patterns)
    for key, (name, _) in sorted(found.eligible.items()):
        names.setdefault(key, name)
    return list(names.values()), found


def discovery_finding(settings: Settings, found: discovery.Found) -> Finding:
    patterns = ", ".join(str(p) for p in settings.patterns if not isinstance(p, Exact))
    if found.errors:
        return Finding("discovery", patterns, False, f"a listing failed ({'; '.join(found.errors)}): the bot keeps "
                                                     "what it manages until the forge answers")
    named = f"{len(found.eligible)} repositor{'y' if len(found.eligible) == 1 else 'ies'} the bot administers"
    if found.refused:
        left = ", ".join(f"{name} ({why.value.replace('_', ' ')})" for name, why in sorted(found.refused.items()))
        return Finding("discovery", patterns, True, f"{named}; not managed: {left}")
    return Finding("discovery", patterns, True, named)


async def _scopes(
    forge: GiteaClient, settings: Settings, user_error: ForgeError | None, repos: Sequence[str]
) -> Finding:
    refusals: dict[str, str | None] = {
        "read:user": user_error.message if isinstance(user_error, Forbidden) else None
    }
    if repos:
        owner, name = repos[0].split("/")
        refusals["write:repository"] = await _refusal(forge.delete_hook(owner, name, 0))
        refusals["write:issue"] = await _refusal(forge.delete_comment(owner, name, 0))
    if settings.allowed_teams:
        org, team = settings.allowed_teams[0].split("/")
        refusals["read:organization"] = await _refusal(forge.team_member(org, team, "merge-bot-doctor"))
    return scope_finding(refusals)


async def _repository(
    forge: GiteaClient,
    settings: Settings,
    full_name: str,
    login: str | None,
    engine: AsyncEngine | None,
    http: aiohttp.ClientSession,
    wait_seconds: float,
    clock: Clock,
    sleep: Sleep,
) -> list[Finding]:
    owner, name = full_name.split("/")
    try:
        repo = await forge.get_repo(owner, name)
    except NotFound:
        return [admin_finding(full_name, None, login)]
    except ForgeError as exc:
        return [Finding("admin", full_name, False, f"the forge did not answer: {exc}")]
    findings = [admin_finding(full_name, repo.get("permissions") or {}, login)]

    seen, note = await _hooks(forge, owner, name)
    findings.append(webhook_finding(full_name, seen, settings.webhook_url, note))
    ours = [s for s in seen if s.hook.url.rstrip("/") == settings.webhook_url.rstrip("/") and s.hook.active]
    tested = next((s for s in ours if not s.owner_level), ours[0] if ours else None)
    findings.append(await _delivery(forge, settings, full_name, tested, engine, http, wait_seconds, clock, sleep))

    branches = [str(repo.get("default_branch") or "main")]
    if engine is not None:
        branches += [b for b in await _train_branches(engine, owner, name) if b not in branches]
    for branch in branches:
        try:
            info = await forge.branch(owner, name, branch)
        except ForgeError as exc:
            findings.append(Finding("protection", f"{full_name} {branch}", False, f"cannot read the branch: {exc}"))
            continue
        findings.append(protection_finding(full_name, branch, info, settings.status_context, settings.strategy,
                                           login))
    findings.append(merge_style_finding(full_name, repo, needed_merge_styles(settings), settings.strategy))
    if engine is None:
        findings.append(Finding("ci", full_name, None, "not looked at: the bot's database cannot be read"))
    else:
        findings.append(ci_finding(full_name, await _candidates(engine, forge, owner, name), settings.status_context))
    return findings


def _colon(problem: str) -> str:
    return f": {problem}" if problem else ""


async def _hooks(forge: GiteaClient, owner: str, name: str) -> tuple[list[SeenHook], str]:
    note = ""
    try:
        seen = [SeenHook(hook, False) for hook in await forge.list_hooks(owner, name)]
    except ForgeError as exc:
        seen, note = [], f" (the repository's hooks cannot be read: {exc.status} {exc.message})"
    try:
        seen += [SeenHook(hook, True) for hook in await forge.list_org_hooks(owner)]
    except NotFound:
        pass  # the owner is a user, not an organisation
    except ForgeError:
        note += f" (the hooks of organisation {owner} cannot be read by the bot's user)"
    return seen, note


async def _delivery(
    forge: GiteaClient,
    settings: Settings,
    full_name: str,
    hook: SeenHook | None,
    engine: AsyncEngine | None,
    http: aiohttp.ClientSession,
    wait_seconds: float,
    clock: Clock,
    sleep: Sleep,
) -> Finding:
    url = settings.webhook_url
    if hook is None or hook.owner_level:
        return delivery_finding(full_name, hook, None, wait_seconds, url)
    if engine is None:
        return delivery_finding(full_name, hook, None, wait_seconds, url,
                                problem="not tried: the bot's database cannot be read")
    owner, name = full_name.split("/")
    async with engine.connect() as connection:
        since = (await connection.execute(text("SELECT clock_timestamp()"))).scalar_one()
    try:
        await forge.test_hook(owner, name, hook.hook.id)
    except ForgeError as exc:
        return delivery_finding(full_name, hook, False, wait_seconds, url,
                                problem=f"Gitea refused the test delivery of {_hook_name(hook)}: {exc}")
    deadline = clock.monotonic() + wait_seconds
    while True:
        if await _test_delivery_stored(engine, full_name, since):
            return delivery_finding(full_name, hook, True, wait_seconds, url)
        if clock.monotonic() >= deadline:
            break
        await sleep(POLL_SECONDS)
    return delivery_finding(full_name, hook, False, wait_seconds, url, await _answers(http, url))


async def _test_delivery_stored(engine: AsyncEngine, full_name: str, since: datetime) -> bool:
    """A test delivery is a push whose before and after are the same commit (no real push is)."""
    payload = WebhookDelivery.payload
    query = select(WebhookDelivery.id).where(
        func.lower(WebhookDelivery.repository) == full_name.lower(),
        WebhookDelivery.event_type == "push",
        WebhookDelivery.received_at >= since,
        payload["before"].astext == payload["after"].astext,
    )
    async with engine.connect() as connection:
        return (await connection.execute(query.limit(1))).first() is not None


async def _answers(http: aiohttp.ClientSession, webhook_url: str) -> bool | None:
    """Whether the bot answers at its external URL from where doctor runs (None: it answered oddly)."""
    health = webhook_url.rsplit("/", 1)[0] + "/healthz"
    try:
        async with http.get(health, timeout=aiohttp.ClientTimeout(total=3)) as response:
            return True if response.status in (200, 503) else None
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _train_branches(engine: AsyncEngine, owner: str, name: str) -> list[str]:
    query = (
        select(Train.branch)
        .join(Repository, Repository.id == Train.repository_id)
        .where(func.lower(Repository.owner) == owner.lower(), func.lower(Repository.name) == name.lower())
        .order_by(Train.id)
    )
    async with engine.connect() as connection:
        return [str(row[0]) for row in await connection.execute(query)]


async def _candidates(
    engine: AsyncEngine, forge: GiteaClient, owner: str, name: str, limit: int = 10
) -> list[Candidate]:
    """The newest staging candidates with the contexts that reported on each: from the bot's database (status
    webhooks), else from the forge (Forgejo sends no status webhook)."""
    query = (
        select(Attempt.ref, Attempt.candidate_sha, Attempt.state, Attempt.reason, Repository.id)
        .join(Train, Train.id == Attempt.train_id)
        .join(Repository, Repository.id == Train.repository_id)
        .where(
            func.lower(Repository.owner) == owner.lower(),
            func.lower(Repository.name) == name.lower(),
            Attempt.strategy == "staging",
            Attempt.candidate_sha.is_not(None),
            Attempt.ref.is_not(None),  # a PR that landed as it was (no build) was never on merge-bot/**
        )
        .order_by(Attempt.id.desc())
        .limit(limit)
    )
    found: list[Candidate] = []
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
        for ref, sha, state, reason, repository_id in rows:
            reported = (
                await connection.execute(
                    select(CommitStatus.context).where(
                        CommitStatus.repository_id == repository_id, CommitStatus.sha == sha
                    )
                )
            ).scalars()
            shown = str(ref or sha).removeprefix("refs/heads/")
            found.append(Candidate(shown, str(sha), str(state), reason, tuple(str(c) for c in reported)))
    if found and not any(c.contexts for c in found):
        refreshed = []
        for position, candidate in enumerate(found):
            contexts = candidate.contexts
            if position < 3:
                with contextlib.suppress(ForgeError):
                    contexts = tuple(s.context for s in await forge.list_statuses(owner, name, candidate.sha))
            refreshed.append(Candidate(candidate.ref, candidate.sha, candidate.state, candidate.reason, contexts))
        found = refreshed
    return found


async def main(settings: Settings, database: Database, *, wait_seconds: float, out: TextIO | None = None) -> int:
    """Print one line per finding; 1 when any check failed."""
    stream = out or sys.stdout
    async with AsyncExitStack() as stack:
        url: str | None = None
        problem = ""
        try:
            url = await stack.enter_async_context(database(settings))
        except Exception as exc:  # the database helper's own one-line errors (CliError) and connection failures
            problem = str(exc)
        async with aiohttp.ClientSession() as http:
            findings = await examine(settings, url, http, wait_seconds=wait_seconds, database_problem=problem)
    for finding in findings:
        print(redact(finding.line(), settings.secrets()), file=stream)
    return 1 if failed(findings) else 0


def redact(line: str, secrets: Iterable[str]) -> str:
    """No secret reaches the terminal, whatever a forge or database error message carried."""
    for secret in secrets:
        line = line.replace(secret, "**********")
    return line
