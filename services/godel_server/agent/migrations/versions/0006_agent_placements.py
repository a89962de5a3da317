"""agent_placements: agents created through this cluster that run on a peer cluster (federation)

Revision ID: 0006_agent_placements
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_agent_placements"
down_revision = "0005"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agent_placements",
        sa.Column("agent_id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("state", sa.String(50), nullable=False),
        sa.Column("request", JSON, nullable=False),
        sa.Column("creator", JSON, nullable=False),
        sa.Column("event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("replaced_from", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_placements_cluster", "agent_placements", ["cluster"])


def downgrade() -> None:
    op.drop_index("ix_agent_placements_cluster", table_name="agent_placements")
    op.drop_table("agent_placements")
