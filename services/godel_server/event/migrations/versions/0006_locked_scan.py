"""PostgreSQL: godel_events_locked_scan(lock_key, ids), the event store's numbering lock and its scan
in one round trip

Appending a batch took the sequence lock (pg_advisory_xact_lock) and then, in a second statement,
read which of the batch's ids are stored and the last sequence. The scan must not run before the
lock is held: it would miss what the previous holder committed and number after a stale last
sequence. A VOLATILE function's statements each take a fresh snapshot (at READ COMMITTED), so the
function's scan, run after its own lock, sees every batch committed before the lock was granted.
SQLite has one writer at a time and keeps the two statements.

Revision ID: 0006_locked_scan
Revises: 0005_event_owners
"""

from __future__ import annotations

from alembic import op

revision = "0006_locked_scan"
down_revision = "0005_event_owners"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION godel_events_locked_scan(lock_key BIGINT, ids VARCHAR[])
RETURNS TABLE (event_id VARCHAR, sequence BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY
        SELECT e.id, e.sequence_number FROM events e
        WHERE e.id = ANY(ids)
           OR e.sequence_number = (SELECT max(m.sequence_number) FROM events m);
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS godel_events_locked_scan(BIGINT, VARCHAR[])")
