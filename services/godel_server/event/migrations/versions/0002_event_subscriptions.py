"""durable subscriptions: named filters with a server-kept cursor

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_subscriptions",
        sa.Column("owner", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("patterns", JSON, nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False, server_default=""),
        sa.Column("team_id", sa.String(36), nullable=False, server_default=""),
        sa.Column("workflow_id", sa.String(36), nullable=False, server_default=""),
        sa.Column("correlation_id", sa.String(100), nullable=False, server_default=""),
        sa.Column("trace_id", sa.String(100), nullable=False, server_default=""),
        sa.Column("source_component", sa.String(100), nullable=False, server_default=""),
        sa.Column("last_sequence", SEQUENCE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("event_subscriptions")
