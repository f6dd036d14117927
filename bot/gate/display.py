"""What the people on a PR see of its train while it waits: its position, what a waiting entry waits for,
and (staging) the candidate's CI results mirrored onto the PR head. Each is posted once per change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.db import queries
from bot.db.models import Entry, PullRequest, Repository
from bot.forge.client import GiteaClient
from bot.gate.notices import Notices
from bot.gate.rows import Loaded, Running
from bot.gate.strategies import plan_for
from bot.gate.waiting import Waits
from bot.queue import machine, messages
from bot.queue.checks import latest_per_context as checks_latest
from bot.queue.model import AttemptView, EntryState, HoldKind, Reason, TrainSnapshot

POSITIONS_SHOWN = 5


class Display:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], forge: GiteaClient, notices: Notices
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.forge = forge
        self.notices = notices
        self._positions: dict[int, tuple[int, str]] = {}  # entry → (position, hold words) last posted
        self._held_green: dict[int, str] = {}
        self._told: dict[int, str] = {}
        self._mirrored: dict[tuple[int, str], str] = {}

    def promoted(self, entry_id: int) -> None:
        """The entry joined the queue: what it waited for is no longer shown."""
        self._told.pop(entry_id, None)

    async def tell_waiting(self, loaded: Loaded, waits: dict[int, Waits]) -> None:
        """Say once to each waiting entry what it waits for, or why it is blocked."""
        for entry_id, wait in waits.items():
            entry, pull = loaded.entries[entry_id]
            await self._tell_waiting(loaded.repo, entry, pull, wait.text, wait.blocked)

    async def _tell_waiting(self, repo: Repository, entry: Entry, pull: PullRequest, text: str, blocked: bool) -> None:
        if self._told.get(entry.id) == text:
            return
        self._told[entry.id] = text
        await self.notices.status(repo, pull, entry.approved_sha, "pending", text)
        if blocked and (entry.reason_detail or {}).get("blocked") != text:
            await self.notices.comment(
                repo, pull, f"This PR is queued but {text}. Fixing that unblocks it; no new command is needed."
            )
            async with self.sessions.begin() as session:
                await queries.move_entry(
                    session,
                    entry,
                    EntryState.WAITING.value,
                    reason_detail={**(entry.reason_detail or {}), "blocked": text},
                )

    async def post_positions(
        self, loaded: Loaded, snapshot: TrainSnapshot, decision: machine.Decision | None = None
    ) -> None:
        """Each queued entry's place in line; while the train is frozen or paused, that too and why. While a
        freeze holds green candidates back (``decision``), their entries are told they wait for it."""
        held = hold_shown(snapshot)
        words = messages.hold_words(*held) if held is not None else ""
        for position, view in enumerate(machine.queue_order(snapshot.entries), start=1):
            shown = self._positions.get(view.id)
            if shown == (position, words) or (position > POSITIONS_SHOWN and shown is not None and shown[1] == words):
                continue  # beyond the first few, a position is posted once: the queue moves by one each merge
            entry, pull = loaded.entries[view.id]
            reason, detail = held if held is not None else (Reason.IDLE, {})
            description = messages.status_description(reason, {**detail, "position": position})
            await self.notices.status(loaded.repo, pull, entry.approved_sha, "pending", description)
            self._positions[view.id] = (position, words)
        if decision is not None and decision.reason is Reason.FROZEN:
            await self._tell_green_held(loaded, decision)

    async def _tell_green_held(self, loaded: Loaded, decision: machine.Decision) -> None:
        text = f"passed; lands when no longer {messages.hold_words(Reason.FROZEN, decision.detail)}"
        text = text if len(text) <= messages.STATUS_LIMIT else text[: messages.STATUS_LIMIT - 1] + "…"
        for attempt_id in decision.detail.get("green", []):
            running = loaded.attempts.get(attempt_id)
            for member in running.members if running is not None else []:
                if self._held_green.get(member.entry_id) == text:
                    continue
                entry, pull = loaded.entries[member.entry_id]
                await self.notices.status(loaded.repo, pull, entry.approved_sha, "pending", text)
                self._held_green[member.entry_id] = text

    async def mirror_checks(self, loaded: Loaded, snapshot: TrainSnapshot) -> None:
        """Each candidate's CI results, mirrored onto its PR heads as ``merge-bot/<context>``, so authors see
        why without leaving the PR (staging only: with pr-branch, CI already runs on the PR)."""
        for view in snapshot.attempts:
            await self._mirror_attempt_checks(loaded, loaded.attempt(view.id), view)

    async def _mirror_attempt_checks(self, loaded: Loaded, running: Running, view: AttemptView) -> None:
        attempt = running.row
        if not plan_for(attempt.strategy).mirrors_checks or not attempt.candidate_sha:
            return
        own = self.settings.status_context
        for context, status in checks_latest(view.statuses).items():
            if context == own or context.startswith(own + "/"):
                continue
            for member in running.members:
                key = (member.entry_id, context)
                if self._mirrored.get(key) == status.state:
                    continue
                self._mirrored[key] = status.state
                entry, _ = loaded.entries[member.entry_id]
                await self.notices.best_effort(
                    self.forge.create_status,
                    loaded.repo.owner,
                    loaded.repo.name,
                    entry.approved_sha,
                    state=status.state,
                    context=f"{own}/{context}",
                    description=f"on the queue's candidate {attempt.candidate_sha[:10]}",
                    target_url=status.target_url,
                )


def hold_shown(snapshot: TrainSnapshot) -> tuple[Reason, dict[str, Any]] | None:
    """The freeze (else the pause) in force on the train, as a reason and the words' detail; None when none is."""
    for kind, reason in ((HoldKind.FREEZE, Reason.FROZEN), (HoldKind.PAUSE, Reason.PAUSED)):
        hold = snapshot.held(kind)
        if hold is not None:
            return reason, {"reason": hold.reason, "until": hold.until, "scope": hold.scope}
    return None
