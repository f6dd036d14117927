"""The whole data model of the design (DESIGN.md, "The shape").

- ``Repository`` and ``Train`` (repository, target branch): one gate per train at a time.
- ``PullRequest``: cached forge state, refreshed by webhooks and the reconciler.
- ``Entry``: a queued PR, bound to the head SHA that was approved.
- ``Attempt`` and ``AttemptEntry``: one candidate under test and the entries it carries, in order (each with
  the commit of the candidate where its change ends).
- ``Dependency``: an entry waits until each of these PRs is merged.
- ``Command``: every trigger (comment, label, button) acts at most once, keyed by its source.
- ``WebhookDelivery``: the inbox; one row per delivery UUID.
- ``EntryEvent``: the audit log of an entry, shown on its queue page.
- ``CommitStatus``: the latest status per (repository, SHA, context), for candidates under test.
- ``Notification``: the outbox of messages to chat and mail, one row per event and target URL
  (``bot.notifications``).
- ``HoldRow``: a freeze or a pause of a branch's train or of a whole repository (``bot.holds``).
- ``TrainEvent``: the audit log of trains (frozen, unfrozen, paused, unpaused), by whom and why.
- ``Cursor``: where the reconciler's incremental reads of the forge stand (``bot.repos``).

States are stored as text with CHECK constraints, so adding a state is a small migration, not an ALTER TYPE.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from bot.db.base import Base
from bot.queue.model import AttemptState, EntryState, HoldKind, MergeMethod, Strategy

ACTIVE_ENTRY_STATES_SQL = "state IN ('waiting', 'queued', 'testing')"
ACTIVE_ATTEMPT_STATES_SQL = "state IN ('building', 'testing', 'passed', 'merging')"


class Trigger(enum.StrEnum):
    COMMENT = "comment"
    LABEL = "label"
    BUTTON = "button"
    CLI = "cli"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    PARKED = "parked"


class NotificationKind(enum.StrEnum):
    """The events told outside the forge (``bot.notifications``)."""

    MERGED = "merged"
    REJECTED = "rejected"
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    STUCK = "stuck"
    CONFIG_BROKEN = "config_broken"


class HoldSource(enum.StrEnum):
    """How a hold was placed."""

    CLI = "cli"
    API = "api"
    COMMENT = "comment"


class TrainEventKind(enum.StrEnum):
    FROZEN = "frozen"
    UNFROZEN = "unfrozen"
    PAUSED = "paused"
    UNPAUSED = "unpaused"


class NotificationState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def _one_of(column: str, values: type[enum.StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{member.value}'" for member in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=column)


def _now() -> Any:
    return func.now()


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    forge_id: Mapped[int | None] = mapped_column(BigInteger)
    webhook_id: Mapped[int | None] = mapped_column(BigInteger)
    last_comment_id: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reconciled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    # 0009: discovery (bot.repos.discovery)
    discovered_by: Mapped[str | None] = mapped_column(String(255))
    unmanaged_at: Mapped[datetime | None]
    unmanaged_reason: Mapped[str | None] = mapped_column(String(64))
    set_up_at: Mapped[datetime | None]
    needs_full_pass: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (UniqueConstraint("owner", "name"),)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class Cursor(Base):
    """Where an incremental read stands (0009): ``feed:<owner>`` is the forge's time of the last change feed
    read of that owner's pull requests, ``discovery`` the last full listing of the patterns."""

    __tablename__ = "cursors"

    name: Mapped[str] = mapped_column(String(300), primary_key=True)
    at: Mapped[datetime]


class Train(Base):
    __tablename__ = "trains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    branch: Mapped[str] = mapped_column(String(255))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # 0005: the chain's depth now (None: the policy's start); the column is window_size (WINDOW is reserved in SQL)
    window: Mapped[int | None] = mapped_column("window_size", Integer)
    adaptive: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # 0005: the last adaptive choice and its reason
    config_problem: Mapped[str | None] = mapped_column(Text)  # 0007: the branch's merge-bot file is bad
    created_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (UniqueConstraint("repository_id", "branch"),)


class PullRequest(Base):
    __tablename__ = "pull_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    forge_id: Mapped[int | None] = mapped_column(BigInteger)
    title: Mapped[str] = mapped_column(Text, server_default="")
    body: Mapped[str] = mapped_column(Text, server_default="")
    author: Mapped[str] = mapped_column(String(255), server_default="")
    state: Mapped[str] = mapped_column(String(16), server_default="open")
    draft: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    merged: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    merge_commit_sha: Mapped[str | None] = mapped_column(String(64))
    head_ref: Mapped[str] = mapped_column(String(255), server_default="")
    head_sha: Mapped[str] = mapped_column(String(64), server_default="")
    head_repo: Mapped[str | None] = mapped_column(String(511))
    base_ref: Mapped[str] = mapped_column(String(255), server_default="")
    allow_maintainer_edit: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    labels: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    forge_updated_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        UniqueConstraint("repository_id", "number"),
        CheckConstraint("state IN ('open', 'closed')", name="state"),
    )


class Entry(Base):
    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_id: Mapped[int] = mapped_column(ForeignKey("trains.id", ondelete="CASCADE"))
    pull_request_id: Mapped[int] = mapped_column(ForeignKey("pull_requests.id", ondelete="CASCADE"))
    command_id: Mapped[int | None] = mapped_column(ForeignKey("commands.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), server_default=EntryState.QUEUED.value)
    approved_sha: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    merge_method: Mapped[str] = mapped_column(String(16), server_default=MergeMethod.REBASE.value)
    reason: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    merged_sha: Mapped[str | None] = mapped_column(String(64))
    retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    cancel_requested_by: Mapped[str | None] = mapped_column(String(255))
    single: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # /merge single: 0004
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    queued_at: Mapped[datetime] = mapped_column(server_default=_now())
    finished_at: Mapped[datetime | None]
    told_at: Mapped[datetime | None]  # the PR was told the outcome (status, comment): see migration 0002
    tell_after: Mapped[datetime | None]  # telling it failed: not again before this

    __table_args__ = (
        _one_of("state", EntryState),
        _one_of("trigger", Trigger),
        _one_of("merge_method", MergeMethod),
        Index(
            "uq_entries_one_active_per_pull_request",
            "pull_request_id",
            unique=True,
            postgresql_where=text(ACTIVE_ENTRY_STATES_SQL),
        ),
        Index("ix_entries_train_id_state", "train_id", "state"),
        Index("ix_entries_untold", "train_id", postgresql_where=text("finished_at IS NOT NULL AND told_at IS NULL")),
    )


class Attempt(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_id: Mapped[int] = mapped_column(ForeignKey("trains.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    split_from: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))  # 0004
    retry_of: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))  # 0005
    retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # 0005: re-tests of this candidate
    status_floor: Mapped[int | None] = mapped_column(BigInteger)  # 0005: statuses with ids up to it do not count
    state: Mapped[str] = mapped_column(String(16), server_default=AttemptState.BUILDING.value)
    strategy: Mapped[str] = mapped_column(String(16), server_default=Strategy.STAGING.value)
    base_sha: Mapped[str] = mapped_column(String(64))
    candidate_sha: Mapped[str | None] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(255))
    intent: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        _one_of("state", AttemptState),
        _one_of("strategy", Strategy),
        Index(
            "ix_attempts_active_train_id",
            "train_id",
            postgresql_where=text(ACTIVE_ATTEMPT_STATES_SQL),
        ),
        Index(
            "ix_attempts_unsettled_bisections",
            "train_id",
            postgresql_where=text("reason = 'bisected' AND (reason_detail ->> 'outcome') IS NULL"),
        ),
    )


class AttemptEntry(Base):
    __tablename__ = "attempt_entries"

    attempt_id: Mapped[int] = mapped_column(ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    head_sha: Mapped[str] = mapped_column(String(64))
    end_sha: Mapped[str | None] = mapped_column(String(64))  # where its change ends in the candidate: 0003

    __table_args__ = (UniqueConstraint("attempt_id", "position"),)


class Dependency(Base):
    __tablename__ = "dependencies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(String(255))
    repo: Mapped[str] = mapped_column(String(255))
    number: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("entry_id", "owner", "repo", "number"),
        CheckConstraint("source IN ('native', 'body', 'command')", name="source"),
    )


class Command(Base):
    __tablename__ = "commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    source_key: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    author: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_reason: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(server_default=_now())
    processed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("repository_id", "source_key"),
        _one_of("trigger", Trigger),
        CheckConstraint("outcome IN ('accepted', 'refused', 'ignored')", name="outcome"),
    )


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    delivery_uuid: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    repository: Mapped[str | None] = mapped_column(String(511))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[str] = mapped_column(String(16), server_default=DeliveryState.PENDING.value)
    tries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_try_at: Mapped[datetime] = mapped_column(server_default=_now())
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(server_default=_now())
    processed_at: Mapped[datetime | None]

    __table_args__ = (
        _one_of("state", DeliveryState),
        Index(
            "uq_webhook_deliveries_delivery_uuid",
            "delivery_uuid",
            unique=True,
            postgresql_where=text("delivery_uuid IS NOT NULL"),
        ),
        Index(
            "ix_webhook_deliveries_pending",
            "next_try_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )


class EntryEvent(Base):
    __tablename__ = "entry_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("attempts.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    at: Mapped[datetime] = mapped_column(server_default=_now())


class CommitStatus(Base):
    __tablename__ = "commit_statuses"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    sha: Mapped[str] = mapped_column(String(64))
    context: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, server_default="")
    target_url: Mapped[str] = mapped_column(Text, server_default="")
    forge_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        UniqueConstraint("repository_id", "sha", "context"),
        CheckConstraint("state IN ('pending', 'success', 'error', 'failure', 'warning', 'skipped')", name="state"),
    )


class Notification(Base):
    """One message for one target URL. The URL itself (a secret) is never stored: ``target_index`` is its place
    in the list that applied to the repository, ``target`` the URL with its secrets left out."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), server_default=NotificationState.PENDING.value)
    repository: Mapped[str | None] = mapped_column(String(511))  # owner/name; None for the whole bot
    train_id: Mapped[int | None] = mapped_column(ForeignKey("trains.id", ondelete="SET NULL"))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id", ondelete="SET NULL"))
    pull_number: Mapped[int | None] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(Text)
    key: Mapped[str | None] = mapped_column(String(255))  # an event enqueued twice under one key is sent once
    target_index: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(511))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_try_at: Mapped[datetime] = mapped_column(server_default=_now())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        _one_of("kind", NotificationKind),
        _one_of("state", NotificationState),
        Index("ix_notifications_pending", "next_try_at", postgresql_where=text("state = 'pending'")),
        Index(
            "uq_notifications_key_target_index",
            "key",
            "target_index",
            unique=True,
            postgresql_where=text("key IS NOT NULL"),
        ),
    )


class HoldRow(Base):
    """A freeze or a pause (``kind``, :class:`~bot.queue.model.HoldKind`) of the train of ``branch``, or of every
    train of the repository when ``branch`` is None. In force from ``created_at`` until it is lifted
    (``lifted_at``) or its ``until`` passes; at most one of each kind per scope is unlifted."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    branch: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, server_default="")
    actor: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    until: Mapped[datetime | None]
    cancel_running: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(server_default=_now())
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        _one_of("kind", HoldKind),
        _one_of("source", HoldSource),
        Index(
            "uq_holds_branch_in_force",
            "repository_id",
            "branch",
            "kind",
            unique=True,
            postgresql_where=text("lifted_at IS NULL AND branch IS NOT NULL"),
        ),
        Index(
            "uq_holds_repository_in_force",
            "repository_id",
            "kind",
            unique=True,
            postgresql_where=text("lifted_at IS NULL AND branch IS NULL"),
        ),
    )


class TrainEvent(Base):
    """What was done to a train (``branch``) or to every train of a repository (``branch`` None), by whom
    (``actor``; None when it happened by itself, a hold's end time passing) and how (``source``)."""

    __tablename__ = "train_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    branch: Mapped[str | None] = mapped_column(String(255))
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, server_default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    at: Mapped[datetime] = mapped_column(server_default=_now())

    __table_args__ = (
        _one_of("kind", TrainEventKind),
        Index("ix_train_events_repository_id_at", "repository_id", "at"),
    )
