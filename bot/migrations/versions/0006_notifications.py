"""notifications: the outbox of messages to chat and mail

Events that matter to a team (a PR merged or rejected, the queue frozen or unfrozen, a train stuck, a broken
configuration file) are written here, one row per target URL, in the transaction that records the event;
a background job sends them through apprise and retries failures with backoff. The target URL is a secret
and is never stored: ``target_index`` is its place in the configured list, ``target`` the URL without its
secrets. ``key`` makes an event enqueued twice (an outcome told again after a crash) one message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "kind IN ('merged', 'rejected', 'frozen', 'unfrozen', 'stuck', 'config_broken')"


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("repository", sa.String(length=511), nullable=True),
        sa.Column("train_id", sa.Integer(), nullable=True),
        sa.Column("entry_id", sa.Integer(), nullable=True),
        sa.Column("pull_number", sa.Integer(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("target_index", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=511), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(KINDS, name=op.f("ck_notifications_kind")),
        sa.CheckConstraint("state IN ('pending', 'sent', 'failed')", name=op.f("ck_notifications_state")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_notifications_entry_id_entries"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["train_id"], ["trains.id"], name=op.f("fk_notifications_train_id_trains"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_pending",
        "notifications",
        ["next_try_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "uq_notifications_key_target_index",
        "notifications",
        ["key", "target_index"],
        unique=True,
        postgresql_where=sa.text("key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_notifications_key_target_index", table_name="notifications")
    op.drop_index("ix_notifications_pending", table_name="notifications")
    op.drop_table("notifications")
