"""orchestration: teams, members, workflows, workflow steps, tasks, team agents, budgets

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
TABLES = ("teams", "members", "workflows", "workflow_steps", "tasks", "team_agents", "budgets")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("config", JSON, nullable=False),
        sa.Column("execution_strategy", sa.String(50), nullable=False),
        sa.Column("effective_strategy", sa.String(50)),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("budget_allocated", sa.Float()),
        sa.Column("budget_consumed", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", JSON, nullable=False),
    )
    op.create_index("idx_teams_created_at", "teams", ["created_at", "id"])
    op.create_index("idx_teams_status", "teams", ["status"])
    op.create_table(
        "members",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("team_id", sa.String(36)),
        sa.Column("workflow_id", sa.String(36)),
        sa.Column("step_id", sa.String(100)),
        sa.Column("role", sa.String(50), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(36)),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("input", sa.Text()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("agent_id", sa.String(36)),
        sa.Column("session_id", sa.String(36)),
        sa.Column("spec", JSON, nullable=False),
        sa.Column("result", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index("idx_members_agent", "members", ["agent_id"])
    op.create_index("idx_members_status", "members", ["status"])
    op.create_index("idx_members_team", "members", ["team_id", "position"])
    op.create_index("idx_members_workflow", "members", ["workflow_id"])
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("definition", JSON, nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("current_step_id", sa.String(100)),
        sa.Column("context", JSON, nullable=False),
        sa.Column("results", JSON, nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(36)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", JSON, nullable=False),
    )
    op.create_index("idx_workflows_created_at", "workflows", ["created_at", "id"])
    op.create_index("idx_workflows_status", "workflows", ["status"])
    op.create_index("idx_workflows_team_id", "workflows", ["team_id"])
    op.create_table(
        "workflow_steps",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        sa.Column("dependencies", JSON, nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("result", JSON),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(36)),
        sa.UniqueConstraint("workflow_id", "step_id", name="uq_workflow_steps_step"),
    )
    op.create_index("idx_workflow_steps_workflow_id", "workflow_steps", ["workflow_id", "position"])
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("request_id", sa.String(100), unique=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.String(36)),
        sa.Column("agent_id", sa.String(36)),
        sa.Column("result", JSON),
        sa.Column("error", sa.Text()),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True)),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("metadata", JSON, nullable=False),
    )
    op.create_index("idx_tasks_agent", "tasks", ["agent_id"])
    op.create_index("idx_tasks_created_at", "tasks", ["created_at", "id"])
    op.create_index("idx_tasks_queue", "tasks", ["team_id", "status", "priority", "created_at"])
    op.create_table(
        "team_agents",
        sa.Column("agent_id", sa.String(36), primary_key=True),
        sa.Column("team_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("idx_team_agents_team", "team_agents", ["team_id", "status"])
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(255), nullable=False),
        sa.Column("total_budget", sa.Float(), nullable=False),
        sa.Column("used_budget", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("period", sa.String(20), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True)),
        sa.Column("period_end", sa.DateTime(timezone=True)),
        sa.Column("warned", sa.Boolean(), nullable=False),
        sa.Column("exceeded", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("entity_type", "entity_id", name="uq_budgets_entity"),
    )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
