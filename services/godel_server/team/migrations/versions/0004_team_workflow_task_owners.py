"""teams, workflows, tasks: their owner (user_id, user_team_id) and request ids unique per user

Each object records the user who created it and the user team it is shared with; the `own` and
`team` scopes of permissions compare them with the caller's. Request ids were unique across all
callers (one caller could fetch another's object by reusing its request id); now per user. Rows
made before have no owner: only permissions of scope all reach them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("teams", "workflows", "tasks")
# The unique constraints 0002 created on request_id have no names of their own: PostgreSQL named
# them <table>_request_id_key; on SQLite the batch copy names them through this convention.
CONVENTION = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
            batch.add_column(sa.Column("user_id", sa.String(100)))
            batch.add_column(sa.Column("user_team_id", sa.String(36)))
            batch.drop_constraint(f"{table}_request_id_key", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_user_request", ["user_id", "request_id"])
            batch.create_index(f"idx_{table}_user", ["user_id"])
            batch.create_index(f"idx_{table}_user_team", ["user_team_id"])


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
            batch.drop_index(f"idx_{table}_user_team")
            batch.drop_index(f"idx_{table}_user")
            batch.drop_constraint(f"uq_{table}_user_request", type_="unique")
            batch.create_unique_constraint(f"{table}_request_id_key", ["request_id"])
            batch.drop_column("user_team_id")
            batch.drop_column("user_id")
