"""team_replicas (leases of the team-service replicas) and the replica that drives each team and
workflow

A team or workflow is driven by one replica at a time: the one that made its last decision, or
the live one that took it over when that replica's lease lapsed (team/replicas.py). Rows made
before have none: the first replica to start claims them.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("teams", "workflows")


def upgrade() -> None:
    op.create_table(
        "team_replicas",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    )
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("replica", sa.String(255)))
            batch.create_index(f"idx_{table}_replica", ["replica"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"idx_{table}_replica")
            batch.drop_column("replica")
    op.drop_table("team_replicas")
