"""notification_channels.openclaw_channel and .target (OpenClaw notification channels)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notification_channels") as batch:
        batch.add_column(sa.Column("openclaw_channel", sa.String(64), nullable=True))
        batch.add_column(sa.Column("target", sa.String(512), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM notification_channels WHERE type = 'openclaw'")
    with op.batch_alter_table("notification_channels") as batch:
        batch.drop_column("target")
        batch.drop_column("openclaw_channel")
