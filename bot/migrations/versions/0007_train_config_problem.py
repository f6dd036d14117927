"""A repository file that cannot be used: trains.config_problem

``trains.config_problem``: what is wrong with the merge-bot file at the tip of the train's branch (its path,
line and problem, the commit that brought it and whose rules stay in force), shown on the queue page; NULL
while the file is good or absent.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("trains", sa.Column("config_problem", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("trains", "config_problem")
