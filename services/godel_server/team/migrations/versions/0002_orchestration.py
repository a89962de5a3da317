"""orchestration: teams, members, workflows, workflow steps, tasks, team agents, budgets

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from godel_server.team.models import Base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("teams", "members", "workflows", "workflow_steps", "tasks", "team_agents", "budgets")


def upgrade() -> None:
    bind = op.get_bind()
    Base.metadata.create_all(bind, tables=[Base.metadata.tables[name] for name in TABLES])


def downgrade() -> None:
    bind = op.get_bind()
    Base.metadata.drop_all(bind, tables=[Base.metadata.tables[name] for name in reversed(TABLES)])
