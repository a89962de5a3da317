"""runtime tables (outbox, processed_events); team, workflow and task tables come with orchestration

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from godel_server.runtime.runtime_tables_migration import create_runtime_tables, drop_runtime_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_runtime_tables()


def downgrade() -> None:
    drop_runtime_tables()
