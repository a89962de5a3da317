"""clusters and api_keys tables and the runtime tables (outbox, processed_events)

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from godel_server.runtime.runtime_tables_migration import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    create_runtime_tables()
    op.create_table(
        "clusters",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("region", sa.String(100)),
        sa.Column("endpoint", sa.String(500), nullable=False),
        sa.Column("api_version", sa.String(20)),
        sa.Column("status", sa.String(50), nullable=False, server_default="offline"),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True)),
        sa.Column("health_score", sa.Integer(), nullable=False, server_default="100"),
        sa.Column("max_agents", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("current_agents", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("features", JSON, nullable=False),
        sa.Column("supported_models", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("idx_clusters_status", "clusters", ["status"])
    op.create_index("idx_clusters_region", "clusters", ["region"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("role", sa.String(50), nullable=False),
        sa.Column("user_id", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("clusters")
    drop_runtime_tables()
