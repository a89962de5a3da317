"""an index for the per-user cap on live agents: (user_id, lifecycle_state)

CreateAgent counts the caller's agents that have not ended (GODEL_MAX_RUNNING_AGENTS_PER_USER,
500 by default). Through idx_agents_user_spawned that count read every agent the user ever had:
~6 ms of CPU per CreateAgent with 10,000 ended agents on SQLite. This index makes it one short
range per live state.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("idx_agents_user_lifecycle", "agents", ["user_id", "lifecycle_state"])


def downgrade() -> None:
    op.drop_index("idx_agents_user_lifecycle", "agents")
