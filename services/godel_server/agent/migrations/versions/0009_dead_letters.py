"""dead_letters (quarantined records) and the index that prunes processed_events

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from godel_server.runtime.runtime_tables_migration import create_dead_letters, drop_dead_letters

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters()


def downgrade() -> None:
    drop_dead_letters()
