"""The queue's background work in one process: setup on the forge, the inbox worker and the gate runner.

Started by the app factory when a forge token is configured. Setup (who the bot is, its webhooks) is
retried with backoff until the forge answers, so a forge outage at start delays the queue, not the web.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import holds
from bot.clock import Clock
from bot.config import Settings
from bot.forge.client import GiteaClient
from bot.forge.errors import ForgeError
from bot.forge.permissions import Permissions
from bot.gate.runner import GateRunner
from bot.gate.service import GateDeps
from bot.git.mirror import MirrorCache
from bot.git.runner import GitRunner, Identity
from bot.inbox.enqueue import Enqueuer
from bot.inbox.intake import Intake, IntakeDeps
from bot.inbox.worker import InboxWorker
from bot.logs import REDACTOR, get_logger
from bot.notifications import targets
from bot.notifications.sender import SEND_SECONDS, Sender
from bot.notifications.stuck import CHECK_SECONDS, StuckCheck
from bot.notify import INBOX, TRAIN, Listener, notify
from bot.repoconfig.cache import RepoConfigs
from bot.scheduler.jobs import build_scheduler, cluster_once
from bot.scheduler.reap import Reaper
from bot.scheduler.reconcile import Reconciler
from bot.setup import Setup

log = get_logger(__name__)


@dataclass
class QueueService:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    database_url: str
    clock: Clock
    http: aiohttp.ClientSession
    engine: AsyncEngine
    worker: InboxWorker | None = None
    runner: GateRunner | None = None
    reconciler: Reconciler | None = None
    reaper: Reaper | None = None
    _notifying: set[asyncio.Task[None]] = field(default_factory=set)

    def wake_inbox(self) -> None:
        if self.worker is not None:
            self.worker.wake()

    async def run(self) -> None:
        settings = self.settings
        assert settings.gitea_token is not None
        forge = GiteaClient(self.http, str(settings.gitea_url), settings.gitea_token)
        setup = Setup(forge, settings)
        login = await self._setup(forge, setup)
        git = GitRunner(
            committer=Identity(login, f"{login}@merge-bot.invalid"),
            token=settings.gitea_token,
            user=login,
            auth_url=str(settings.gitea_url),
            home=settings.data_dir / "git-home",
        )
        REDACTOR.add(*git.secrets)  # the base64 Basic credentials are as secret as the token
        (settings.data_dir / "git-home").mkdir(parents=True, exist_ok=True)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        mirrors = MirrorCache(git, settings.data_dir / "mirrors")
        permissions = Permissions(
            forge, self.clock, allowed_users=settings.allowed_users, allowed_teams=settings.allowed_teams
        )
        configs = RepoConfigs(settings, self.sessions, forge, mirrors, self.clock)  # each repository's own file
        deps = GateDeps(settings, self.sessions, forge, git, mirrors, self.clock, owner, permissions, configs)
        self.runner = runner = GateRunner(deps, self.database_url)
        enqueuer = Enqueuer(settings, self.sessions, forge, self.clock, permissions, self.wake_train, configs=configs)
        intake = Intake(IntakeDeps(settings, self.sessions, forge, self.clock, login, self.wake_train), enqueuer)
        self.worker = worker = InboxWorker(self.sessions, intake.handle, self.clock)
        reconciler = Reconciler(settings, self.sessions, forge, intake, self.clock, runner.wake, setup)
        reaper = Reaper(settings, self.sessions, forge, self.clock, runner.wake)
        self.reconciler, self.reaper = reconciler, reaper
        def urls_for(_repository: str | None) -> tuple[str, ...]:
            return targets(settings)  # a repository's own list joins here once there is one

        sender = Sender(self.sessions, self.clock, urls_for)
        stuck = StuckCheck(settings, self.sessions, self.clock, urls_for)
        async def expire_holds() -> int:
            return await holds.expire_due(self.sessions, settings, self.clock, self.wake_train)

        listener = Listener(self.database_url, {INBOX: lambda _payload: worker.wake(), TRAIN: self._train_notified})
        scheduler = build_scheduler(
            [
                ("reconcile", cluster_once(self.engine, 1, "reconcile", reconciler.run), settings.reconcile_seconds),
                ("reap", cluster_once(self.engine, 2, "reap", reaper.run), settings.reap_seconds),
                ("notify", cluster_once(self.engine, 3, "notify", sender.run), SEND_SECONDS),
                ("stuck", cluster_once(self.engine, 4, "stuck", stuck.run), CHECK_SECONDS),
                ("holds", cluster_once(self.engine, 5, "holds", expire_holds), holds.EXPIRE_SECONDS),
            ]
        )
        log.info("queue.started", bot=login, repos=list(settings.repos), owner=owner)
        scheduler.start()
        try:
            await asyncio.gather(runner.run(), worker.run(), listener.run())
        finally:
            scheduler.shutdown(wait=False)

    def wake_train(self, train_id: int) -> None:
        """Wake the train's gate here, and in whichever other process holds its lock."""
        if self.runner is not None:
            self.runner.wake(train_id)
        task = asyncio.create_task(notify(self.engine, TRAIN, str(train_id)))
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    def _train_notified(self, payload: str) -> None:
        if self.runner is not None and payload.isdigit():
            self.runner.wake(int(payload))

    async def _setup(self, forge: GiteaClient, setup: Setup) -> str:
        """Who the bot is; the organisation hooks and the named repositories (discovery sets up the others)."""
        delay = 1.0
        while True:
            try:
                login = await forge.current_user()
                await setup.start()
                return login
            except ForgeError as exc:
                log.warning("queue.setup_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
