"""list indexes in list order: (filter column, spawned_at, id)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = {
    "idx_agents_team_id": ["team_id"],
    "idx_agents_status": ["status"],
    "idx_agents_lifecycle_state": ["lifecycle_state"],
    "idx_agents_status_spawned": ["status", "spawned_at"],
    "idx_agents_model": ["model"],
    "idx_agents_label": ["label"],
}
NEW = {
    "idx_agents_team_spawned": ["team_id", "spawned_at", "id"],
    "idx_agents_status_spawned_id": ["status", "spawned_at", "id"],
    "idx_agents_lifecycle_spawned": ["lifecycle_state", "spawned_at", "id"],
    "idx_agents_model_spawned": ["model", "spawned_at", "id"],
    "idx_agents_label_spawned": ["label", "spawned_at", "id"],
}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, "agents", columns)
    for name in OLD:
        op.drop_index(name, "agents")


def downgrade() -> None:
    for name, columns in OLD.items():
        op.create_index(name, "agents", columns)
    for name in NEW:
        op.drop_index(name, "agents")
