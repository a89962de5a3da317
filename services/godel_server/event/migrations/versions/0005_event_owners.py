"""events.owner_user_id and owner_team_id: who owns what an event is about (or who published it)

Reads of events are filtered by them (event/visibility.py). Events stored before have no owner:
those about an agent, team or workflow are read with scope `all` only, the others (cluster, alert,
autonomic, system) by every event reader. On PostgreSQL the columns and indexes are added to the
partitioned table, so every partition has them.

Revision ID: 0005_event_owners
Revises: 0004_dead_letters
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_event_owners"
down_revision = "0004_dead_letters"
branch_labels = None
depends_on = None

INDEXES = (("idx_events_owner_user_id", "owner_user_id"), ("idx_events_owner_team_id", "owner_team_id"))


def upgrade() -> None:
    op.add_column("events", sa.Column("owner_user_id", sa.String(100)))
    op.add_column("events", sa.Column("owner_team_id", sa.String(36)))
    for name, column in INDEXES:
        op.create_index(name, "events", [column])


def downgrade() -> None:
    for name, _column in INDEXES:
        op.drop_index(name, "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("owner_team_id")
        batch.drop_column("owner_user_id")
