"""agents.user_team_id (the user team an agent is shared with) and request ids unique per user

An agent's owner is its user_id (since 0004) and the user team it is shared with; the `team`
scope of permissions compares that team with the caller's. CreateAgent's request_id was unique
across all callers, so one caller could fetch another's agent by reusing its request id; it is
now unique per user. Indexes serve the lists filtered by owner.

Revision ID: 0007
Revises: 0006_agent_placements
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006_agent_placements"
branch_labels = None
depends_on = None

# The unique constraint 0001 created on request_id has no name of its own: PostgreSQL named it
# agents_request_id_key; on SQLite the batch copy names it through this convention.
CONVENTION = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    with op.batch_alter_table("agents", naming_convention=CONVENTION) as batch:
        batch.add_column(sa.Column("user_team_id", sa.String(36)))
        batch.drop_constraint("agents_request_id_key", type_="unique")
        batch.create_unique_constraint("uq_agents_user_request", ["user_id", "request_id"])
        batch.create_index("idx_agents_user_spawned", ["user_id", "spawned_at", "id"])
        batch.create_index("idx_agents_user_team_spawned", ["user_team_id", "spawned_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("agents", naming_convention=CONVENTION) as batch:
        batch.drop_index("idx_agents_user_team_spawned")
        batch.drop_index("idx_agents_user_spawned")
        batch.drop_constraint("uq_agents_user_request", type_="unique")
        batch.create_unique_constraint("agents_request_id_key", ["request_id"])
        batch.drop_column("user_team_id")
