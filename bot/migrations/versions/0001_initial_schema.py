"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:55:41.731080
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repositories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("forge_id", sa.BigInteger(), nullable=True),
        sa.Column("webhook_id", sa.BigInteger(), nullable=True),
        sa.Column("last_comment_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repositories")),
        sa.UniqueConstraint("owner", "name", name=op.f("uq_repositories_owner_name")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("delivery_uuid", sa.String(length=64), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=True),
        sa.Column("repository", sa.String(length=511), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("tries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_try_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'done', 'parked')", name=op.f("ck_webhook_deliveries_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["next_try_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "uq_webhook_deliveries_delivery_uuid",
        "webhook_deliveries",
        ["delivery_uuid"],
        unique=True,
        postgresql_where=sa.text("delivery_uuid IS NOT NULL"),
    )
    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.String(length=255), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column(
            "args",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("outcome_reason", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("outcome IN ('accepted', 'refused', 'ignored')", name=op.f("ck_commands_outcome")),
        sa.CheckConstraint("trigger IN ('comment', 'label', 'button', 'cli')", name=op.f("ck_commands_trigger")),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_commands_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
        sa.UniqueConstraint("repository_id", "source_key", name=op.f("uq_commands_repository_id_source_key")),
    )
    op.create_table(
        "commit_statuses",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("context", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("target_url", sa.Text(), server_default="", nullable=False),
        sa.Column("forge_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'success', 'error', 'failure', 'warning', 'skipped')",
            name=op.f("ck_commit_statuses_state"),
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_commit_statuses_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commit_statuses")),
        sa.UniqueConstraint(
            "repository_id", "sha", "context", name=op.f("uq_commit_statuses_repository_id_sha_context")
        ),
    )
    op.create_table(
        "pull_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("forge_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("author", sa.String(length=255), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("draft", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("merged", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("merge_commit_sha", sa.String(length=64), nullable=True),
        sa.Column("head_ref", sa.String(length=255), server_default="", nullable=False),
        sa.Column("head_sha", sa.String(length=64), server_default="", nullable=False),
        sa.Column("head_repo", sa.String(length=511), nullable=True),
        sa.Column("base_ref", sa.String(length=255), server_default="", nullable=False),
        sa.Column("allow_maintainer_edit", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "labels",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("forge_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('open', 'closed')", name=op.f("ck_pull_requests_state")),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_pull_requests_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pull_requests")),
        sa.UniqueConstraint("repository_id", "number", name=op.f("uq_pull_requests_repository_id_number")),
    )
    op.create_table(
        "trains",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_trains_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trains")),
        sa.UniqueConstraint("repository_id", "branch", name=op.f("uq_trains_repository_id_branch")),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("train_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="building", nullable=False),
        sa.Column("strategy", sa.String(length=16), server_default="staging", nullable=False),
        sa.Column("base_sha", sa.String(length=64), nullable=False),
        sa.Column("candidate_sha", sa.String(length=64), nullable=True),
        sa.Column("ref", sa.String(length=255), nullable=True),
        sa.Column("intent", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("reason_detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('building', 'testing', 'passed', 'merging', 'done', 'failed', 'abandoned')",
            name=op.f("ck_attempts_state"),
        ),
        sa.CheckConstraint("strategy IN ('staging', 'pr-branch')", name=op.f("ck_attempts_strategy")),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["attempts.id"], name=op.f("fk_attempts_parent_id_attempts"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["train_id"], ["trains.id"], name=op.f("fk_attempts_train_id_trains"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    op.create_index(
        "ix_attempts_active_train_id",
        "attempts",
        ["train_id"],
        unique=False,
        postgresql_where=sa.text("state IN ('building', 'testing', 'passed', 'merging')"),
    )
    op.create_table(
        "entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("train_id", sa.Integer(), nullable=False),
        sa.Column("pull_request_id", sa.Integer(), nullable=False),
        sa.Column("command_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("approved_sha", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("merge_method", sa.String(length=16), server_default="rebase", nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("reason_detail", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("merged_sha", sa.String(length=64), nullable=True),
        sa.Column("retries", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("cancel_requested_by", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("merge_method IN ('rebase', 'merge', 'squash')", name=op.f("ck_entries_merge_method")),
        sa.CheckConstraint(
            "state IN ('waiting', 'queued', 'testing', 'merged', 'failed', 'cancelled')",
            name=op.f("ck_entries_state"),
        ),
        sa.CheckConstraint("trigger IN ('comment', 'label', 'button', 'cli')", name=op.f("ck_entries_trigger")),
        sa.ForeignKeyConstraint(
            ["command_id"], ["commands.id"], name=op.f("fk_entries_command_id_commands"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pull_request_id"],
            ["pull_requests.id"],
            name=op.f("fk_entries_pull_request_id_pull_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["train_id"], ["trains.id"], name=op.f("fk_entries_train_id_trains"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entries")),
    )
    op.create_index("ix_entries_train_id_state", "entries", ["train_id", "state"], unique=False)
    op.create_index(
        "uq_entries_one_active_per_pull_request",
        "entries",
        ["pull_request_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('waiting', 'queued', 'testing')"),
    )
    op.create_table(
        "attempt_entries",
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("head_sha", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_attempt_entries_attempt_id_attempts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_attempt_entries_entry_id_entries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("attempt_id", "entry_id", name=op.f("pk_attempt_entries")),
        sa.UniqueConstraint("attempt_id", "position", name=op.f("uq_attempt_entries_attempt_id_position")),
    )
    op.create_table(
        "dependencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("repo", sa.String(length=255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.CheckConstraint("source IN ('native', 'body', 'command')", name=op.f("ck_dependencies_source")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_dependencies_entry_id_entries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dependencies")),
        sa.UniqueConstraint(
            "entry_id", "owner", "repo", "number", name=op.f("uq_dependencies_entry_id_owner_repo_number")
        ),
    )
    op.create_table(
        "entry_events",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("actor", sa.String(length=255), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["attempts.id"],
            name=op.f("fk_entry_events_attempt_id_attempts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["entries.id"], name=op.f("fk_entry_events_entry_id_entries"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_events")),
    )
    op.create_index(op.f("ix_entry_events_entry_id"), "entry_events", ["entry_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_entry_events_entry_id"), table_name="entry_events")
    op.drop_table("entry_events")
    op.drop_table("dependencies")
    op.drop_table("attempt_entries")
    op.drop_index(
        "uq_entries_one_active_per_pull_request",
        table_name="entries",
        postgresql_where=sa.text("state IN ('waiting', 'queued', 'testing')"),
    )
    op.drop_index("ix_entries_train_id_state", table_name="entries")
    op.drop_table("entries")
    op.drop_index(
        "ix_attempts_active_train_id",
        table_name="attempts",
        postgresql_where=sa.text("state IN ('building', 'testing', 'passed', 'merging')"),
    )
    op.drop_table("attempts")
    op.drop_table("trains")
    op.drop_table("pull_requests")
    op.drop_table("commit_statuses")
    op.drop_table("commands")
    op.drop_index(
        "uq_webhook_deliveries_delivery_uuid",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("delivery_uuid IS NOT NULL"),
    )
    op.drop_index(
        "ix_webhook_deliveries_pending",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("webhook_deliveries")
    op.drop_table("repositories")
