"""agents.pending_reason / pending_message: why an agent that needs a run is not placed yet

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("pending_reason", sa.String(30)))
        batch.add_column(sa.Column("pending_message", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("pending_message")
        batch.drop_column("pending_reason")
