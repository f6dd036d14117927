"""holds and train_events: freezes and pauses, and the trains' audit log

``holds``: a freeze (nothing lands; PRs are still queued and tested) or a pause (nothing new is started) of
one branch's train, or of every train of a repository (``branch`` NULL), with its reason, who placed it and
how (``source``: cli, api, comment), and when it lifts by itself (``until``; NULL: when someone lifts it).
A hold stays as a row once lifted (``lifted_at``, ``lifted_by``); at most one of each kind is in force per
scope. ``train_events``: the audit log of what was done to trains (frozen, unfrozen, paused, unpaused), by
whom and why, for a branch or a whole repository; entries keep their own log in ``entry_events``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_running", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=255), nullable=True),
        sa.CheckConstraint("kind IN ('freeze', 'pause')", name=op.f("ck_holds_kind")),
        sa.CheckConstraint("source IN ('cli', 'api', 'comment')", name=op.f("ck_holds_source")),
        sa.ForeignKeyConstraint(
            ["repository_id"], ["repositories.id"], name=op.f("fk_holds_repository_id_repositories"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index(
        "uq_holds_branch_in_force",
        "holds",
        ["repository_id", "branch", "kind"],
        unique=True,
        postgresql_where=sa.text("lifted_at IS NULL AND branch IS NOT NULL"),
    )
    op.create_index(
        "uq_holds_repository_in_force",
        "holds",
        ["repository_id", "kind"],
        unique=True,
        postgresql_where=sa.text("lifted_at IS NULL AND branch IS NULL"),
    )
    op.create_table(
        "train_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=True),
        sa.Column("hold_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("detail", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('frozen', 'unfrozen', 'paused', 'unpaused')", name=op.f("ck_train_events_kind")),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_train_events_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["holds.id"], name=op.f("fk_train_events_hold_id_holds"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_train_events")),
    )
    op.create_index("ix_train_events_repository_id_at", "train_events", ["repository_id", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_train_events_repository_id_at", table_name="train_events")
    op.drop_table("train_events")
    op.drop_index("uq_holds_repository_in_force", table_name="holds")
    op.drop_index("uq_holds_branch_in_force", table_name="holds")
    op.drop_table("holds")
