"""dead_letters (quarantined records) and the index that prunes processed_events

Revision ID: 0004_dead_letters
Revises: 0003
"""

from __future__ import annotations

from godel_server.runtime.runtime_tables_migration import create_dead_letters, drop_dead_letters

revision = "0004_dead_letters"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters()


def downgrade() -> None:
    drop_dead_letters()
