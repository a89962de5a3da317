"""Time partitions of the PostgreSQL `events` table (spec §2.4): one partition per UTC day of
`stored_at` (when the event store numbered the event, so it is never in the future and never late),
created PARTITIONS_AHEAD days ahead; retention drops whole partitions. On SQLite, retention deletes
rows. Retention never removes the newest event: the global sequence continues after it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from godel_server.event.models import EventRow

PARTITIONS_AHEAD = 7
DAY_RE = re.compile(r"^events_p(\d{8})$")
LEGACY_RE = re.compile(r"^events_upto_(\d{8})$")


def day_partition(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def _bound(day: date) -> str:
    return f"{day:%Y-%m-%d} 00:00:00+00"


def create_day_sql(day: date, parent: str = "events") -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {day_partition(day)} PARTITION OF {parent} "
        f"FOR VALUES FROM ('{_bound(day)}') TO ('{_bound(day + timedelta(days=1))}')"
    )


def create_legacy_sql(upto: date, parent: str = "events") -> str:
    """One partition for everything stored before `upto` (rows of an unpartitioned table)."""
    return (
        f"CREATE TABLE IF NOT EXISTS events_upto_{upto:%Y%m%d} PARTITION OF {parent} "
        f"FOR VALUES FROM (MINVALUE) TO ('{_bound(upto)}')"
    )


def upper_bound(partition: str) -> date | None:
    """The first day a partition no longer covers, from its name (None: not ours)."""
    if m := DAY_RE.match(partition):
        return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date() + timedelta(days=1)
    if m := LEGACY_RE.match(partition):
        return datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).date()
    return None


async def is_partitioned(conn: AsyncConnection | AsyncSession) -> bool:
    found = await conn.scalar(
        text(
            "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid WHERE c.relname = 'events'"
        )
    )
    return bool(found)


async def partitions(conn: AsyncConnection | AsyncSession) -> list[str]:
    rows = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events' ORDER BY c.relname"
        )
    )
    return [r[0] for r in rows]


async def ensure_ahead(
    conn: AsyncConnection | AsyncSession, today: date, ahead: int = PARTITIONS_AHEAD
) -> list[str]:
    """Creates the partitions of today and the next `ahead` days that do not exist yet."""
    existing = set(await partitions(conn))
    created = []
    for offset in range(ahead + 1):
        day = today + timedelta(days=offset)
        if day_partition(day) not in existing:
            await conn.execute(text(create_day_sql(day)))
            created.append(day_partition(day))
    return created


async def _newest_stored_day(conn: AsyncConnection | AsyncSession) -> date | None:
    newest = await conn.scalar(select(EventRow.stored_at).order_by(EventRow.sequence_number.desc()).limit(1))
    return newest.astimezone(UTC).date() if newest else None


async def drop_expired(conn: AsyncConnection | AsyncSession, cutoff: date) -> list[str]:
    """Drops partitions that end on or before `cutoff` and do not hold the newest event."""
    newest = await _newest_stored_day(conn)
    dropped = []
    for name in await partitions(conn):
        upper = upper_bound(name)
        if upper is None or upper > cutoff or (newest is not None and upper > newest):
            continue
        await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        dropped.append(name)
    return dropped


async def delete_expired_rows(session: AsyncSession, cutoff: datetime) -> int:
    """SQLite (and unpartitioned tables): deletes rows stored before `cutoff`, except the newest."""
    newest = select(func.max(EventRow.sequence_number)).scalar_subquery()
    result = await session.execute(
        delete(EventRow).where(EventRow.stored_at < cutoff, EventRow.sequence_number < newest)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
