"""agents.user_id: the user of the API key that created the agent (for user budgets)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("user_id", sa.String(100)))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("user_id")
