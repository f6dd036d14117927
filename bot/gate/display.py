"""What the people on a PR see of its train while it waits: its position, what a waiting entry waits for,
and (staging) the candidate's CI results mirrored onto the PR head. Each is posted once per change."""

from __future__ import annotations

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
from bot.queue.model import AttemptView, EntryState, Reason, TrainSnapshot

POSITIONS_SHOWN = 5


class Display:
    def __init__(
        self, settings: Settings, sessions: async_sessionmaker[AsyncSession], forge: GiteaClient, notices: Notices
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.forge = forge
        self.notices = notices
        self._positions: dict[int, int] = {}
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

    async def post_positions(self, loaded: Loaded, snapshot: TrainSnapshot) -> None:
        for position, view in enumerate(machine.queue_order(snapshot.entries), start=1):
            if self._positions.get(view.id) == position or (position > POSITIONS_SHOWN and view.id in self._positions):
                continue  # beyond the first few, a position is posted once: the queue moves by one each merge
            entry, pull = loaded.entries[view.id]
            description = messages.status_description(Reason.IDLE, {"position": position})
            await self.notices.status(loaded.repo, pull, entry.approved_sha, "pending", description)
            self._positions[view.id] = position

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
