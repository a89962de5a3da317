"""Background upkeep of the event store: partitions ahead (PostgreSQL) and retention
(GODEL_EVENT_RETENTION_DAYS). Runs once before ingest starts, then every INTERVAL_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from godel_server.event import partitions
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600.0


class EventMaintenance:
    def __init__(self, db: Database, retention_days: int) -> None:
        self._db = db
        self._retention_days = retention_days
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> dict[str, list[str] | int]:
        now = utcnow()
        report: dict[str, list[str] | int] = {}
        async with self._db.session() as session:
            partitioned = not self._db.is_sqlite and await partitions.is_partitioned(session)
            if partitioned:
                report["created"] = await partitions.ensure_ahead(session, now.date())
            if self._retention_days:
                cutoff = now - timedelta(days=self._retention_days)
                if partitioned:
                    report["dropped"] = await partitions.drop_expired(session, cutoff.date())
                else:
                    report["deleted"] = await partitions.delete_expired_rows(session, cutoff)
        if any(report.values()):
            log.info("event store maintenance", extra={"report": report})
        return report

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="event-maintenance")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(INTERVAL_SECONDS)
            try:
                await self.run_once()
            except Exception:
                log.exception("event store maintenance failed; retrying at the next interval")
