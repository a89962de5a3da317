"""clusters.health (what the registry observed) and cluster_affinities (session -> cluster)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("health", JSON, nullable=False, server_default=sa.text("'{}'")))
    op.create_table(
        "cluster_affinities",
        sa.Column("session_id", sa.String(255), primary_key=True),
        sa.Column("cluster_id", sa.String(36), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cluster_affinities_expires_at", "cluster_affinities", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_cluster_affinities_expires_at", table_name="cluster_affinities")
    op.drop_table("cluster_affinities")
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("health")
