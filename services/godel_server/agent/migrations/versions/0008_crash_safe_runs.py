"""agents.reschedules and sessions.update_seq: runs lost to infrastructure are counted apart from
the agent's own retries, and each run's worker updates are applied once (highest applied seq)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("reschedules", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("update_seq", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("update_seq")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("reschedules")
