"""agent execution: scheduling columns, transitions, sessions, logs, replica leases

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
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _agent_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("result", sa.Text()),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("budget_warned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("parent_session_id", sa.String(36)),
        sa.Column("owner", sa.String(255)),
        sa.Column("run_id", sa.String(36)),
        sa.Column("worker_id", sa.String(255)),
        sa.Column("run_started_at", sa.DateTime(timezone=True)),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    )


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        for column in _agent_columns():
            batch.add_column(column)
    op.create_index("idx_agents_owner", "agents", ["owner"])
    op.create_table(
        "agent_transitions",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_state", sa.String(50), nullable=False),
        sa.Column("to_state", sa.String(50), nullable=False),
        sa.Column("from_status", sa.String(50), nullable=False),
        sa.Column("to_status", sa.String(50), nullable=False),
        sa.Column("trigger", sa.String(50), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("actor", sa.String(255)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_agent_transitions_agent_id", "agent_transitions", ["agent_id"])
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("parent_id", sa.String(36)),
        sa.Column("depth", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("variables", JSON, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_sessions_agent_id", "sessions", ["agent_id"])
    op.create_index("ix_sessions_parent_id", "sessions", ["parent_id"])
    op.create_table(
        "session_messages",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_session_messages_session_id", "session_messages", ["session_id"])
    op.create_table(
        "agent_logs",
        sa.Column("agent_id", sa.String(36), primary_key=True),
        sa.Column("sequence", sa.BigInteger(), primary_key=True),
        sa.Column("session_id", sa.String(36)),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(10), nullable=False),
        sa.Column("stream", sa.String(20), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_table(
        "agent_replicas",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_replicas")
    op.drop_table("agent_logs")
    op.drop_table("session_messages")
    op.drop_table("sessions")
    op.drop_table("agent_transitions")
    op.drop_index("idx_agents_owner", "agents")
    with op.batch_alter_table("agents") as batch:
        for column in reversed(_agent_columns()):
            batch.drop_column(column.name)
