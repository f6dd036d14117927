"""Discovered repositories and the reconciler's cursors

``repositories.discovered_by``: the pattern of ``MERGE_BOT_REPOS`` (``owner/*``, ``topic:NAME``) under which
discovery found the repository (NULL: never discovered; a repository named one by one is managed without it).
``unmanaged_at`` and ``unmanaged_reason``: when and why a discovered repository left the managed set (deleted,
archived, its topic removed, the bot no longer an admin); NULL while it is managed. ``set_up_at``: when its
webhook and merge styles were last set up. ``needs_full_pass``: the reconciler's last pass on it failed, so
the next one reads all of it instead of what the change feed names.

``cursors``: where the reconciler's incremental reads stand (the forge's time of the last change feed read per
owner, the last full discovery), shared by every replica.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("repositories", sa.Column("discovered_by", sa.String(length=255), nullable=True))
    op.add_column("repositories", sa.Column("unmanaged_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("repositories", sa.Column("unmanaged_reason", sa.String(length=64), nullable=True))
    op.add_column("repositories", sa.Column("set_up_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "repositories",
        sa.Column("needs_full_pass", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "cursors",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cursors")),
    )


def downgrade() -> None:
    op.drop_table("cursors")
    for column in ("needs_full_pass", "set_up_at", "unmanaged_reason", "unmanaged_at", "discovered_by"):
        op.drop_column("repositories", column)
