"""events table and the runtime tables (outbox, processed_events)

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
        "events",
        sa.Column(
            "sequence_number",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("source_component", sa.String(100)),
        sa.Column("source_instance", sa.String(200)),
        sa.Column("source_version", sa.String(50)),
        sa.Column("correlation_id", sa.String(100)),
        sa.Column("causation_id", sa.String(100)),
        sa.Column("trace_id", sa.String(100)),
        sa.Column("agent_id", sa.String(36)),
        sa.Column("team_id", sa.String(36)),
        sa.Column("workflow_id", sa.String(36)),
        sa.Column("user_id", sa.String(100)),
        sa.Column("partition_key", sa.String(100)),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    for name, column in (
        ("idx_events_type", "event_type"),
        ("idx_events_timestamp", "timestamp"),
        ("idx_events_correlation_id", "correlation_id"),
        ("idx_events_agent_id", "agent_id"),
        ("idx_events_team_id", "team_id"),
        ("idx_events_workflow_id", "workflow_id"),
        ("idx_events_trace_id", "trace_id"),
    ):
        op.create_index(name, "events", [column])


def downgrade() -> None:
    op.drop_table("events")
    drop_runtime_tables()
