"""agents table and the runtime tables (outbox, processed_events)

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
        "agents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("team_id", sa.String(36)),
        sa.Column("label", sa.String(255)),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("context", JSON),
        sa.Column("code", JSON),
        sa.Column("reasoning", JSON),
        sa.Column("safety_boundaries", JSON),
        sa.Column("status", sa.String(50), nullable=False, server_default="pending"),
        sa.Column("lifecycle_state", sa.String(50), nullable=False, server_default="initializing"),
        sa.Column("repo", sa.Text()),
        sa.Column("worktree_path", sa.Text()),
        sa.Column("commits", JSON, nullable=False),
        sa.Column("spawned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("pause_time", sa.DateTime(timezone=True)),
        sa.Column("paused_by", sa.String(255)),
        sa.Column("runtime_seconds", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("retry_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_retries", sa.Integer(), nullable=False, server_default="3"),
        sa.Column("last_error", sa.Text()),
        sa.Column("budget_limit", sa.Float()),
        sa.Column("budget_consumed", sa.Float(), nullable=False, server_default="0"),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("session_id", sa.String(36)),
        sa.Column("created_by", sa.String(100)),
    )
    op.create_index("idx_agents_team_id", "agents", ["team_id"])
    op.create_index("idx_agents_status", "agents", ["status"])
    op.create_index("idx_agents_lifecycle_state", "agents", ["lifecycle_state"])
    op.create_index("idx_agents_status_spawned", "agents", ["status", "spawned_at"])
    op.create_index("idx_agents_model", "agents", ["model"])
    op.create_index("idx_agents_label", "agents", ["label"])
    op.create_index("idx_agents_spawned_id", "agents", ["spawned_at", "id"])


def downgrade() -> None:
    op.drop_table("agents")
    drop_runtime_tables()
