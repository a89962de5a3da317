"""Transactional outbox: events are written in the same DB transaction as the state change, and a
relay moves them to Kafka afterwards. Nothing acknowledged is lost when Kafka or the service restarts:
a row leaves the outbox only after Kafka has acknowledged it (acks=all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from sqlalchemy import RowMapping, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.events import to_kafka_record, utcnow
from godel_server.runtime.tables import outbox

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter("godel_outbox_published_total", "Events moved from the outbox to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("godel_outbox_pending", "Events waiting in the outbox")
OUTBOX_ERRORS = Counter("godel_outbox_errors_total", "Failed attempts to publish outbox rows")


async def enqueue(session: AsyncSession, events: Sequence[event_pb2.Event]) -> None:
    """Adds events to the outbox inside the caller's transaction."""
    if not events:
        return
    rows = []
    for event in events:
        record = to_kafka_record(event)
        rows.append(
            {
                "event_id": event.id,
                "topic": record.topic,
                "key": record.key,
                "value": record.value,
                "headers": [[k, v.decode()] for k, v in record.headers],
                "created_at": utcnow(),
            }
        )
    await session.execute(insert(outbox), rows)


class OutboxRelay:
    """Moves outbox rows to Kafka in insertion order; woken by `notify()` or every poll interval."""

    def __init__(
        self, db: Database, producer: AIOKafkaProducer, poll_seconds: float, batch: int = 500
    ) -> None:
        self._db = db
        self._producer = producer
        self._poll = poll_seconds
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = self._poll
        while True:
            try:
                moved = await self.relay_once()
                backoff = self._poll
                if moved:
                    continue
            except (TimeoutError, KafkaError, OSError) as exc:
                OUTBOX_ERRORS.inc()
                log.warning("outbox relay cannot reach kafka; will retry", extra={"error": repr(exc)})
                backoff = min(backoff * 2, 5.0)
            except Exception:
                OUTBOX_ERRORS.inc()
                log.exception("outbox relay failed; will retry")
                backoff = min(backoff * 2, 5.0)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)

    async def relay_once(self) -> int:
        """Sends one batch; returns how many rows left the outbox."""
        query = select(outbox).order_by(outbox.c.id).limit(self._batch)
        if self._db.is_sqlite:
            # One process owns a SQLite file: read, send, then delete, so writers are never held up
            # by a Kafka round trip.
            async with self._db.reader() as session:
                rows = (await session.execute(query)).mappings().all()
            if not rows:
                OUTBOX_PENDING.set(0)
                return 0  # no write transaction: it would queue behind (and delay) the RPCs' writes
            await self._send(rows)
            async with self._db.session() as session:
                return await self._delete(session, rows)
        # PostgreSQL: replicas share the table; SKIP LOCKED gives each relay its own rows.
        async with self._db.session() as session:
            rows = (await session.execute(query.with_for_update(skip_locked=True))).mappings().all()
            if rows:
                await self._send(rows)
            return await self._delete(session, rows)

    async def _send(self, rows: Sequence[RowMapping]) -> None:
        futures = [
            await self._producer.send(
                row["topic"],
                value=row["value"],
                key=row["key"].encode(),
                headers=[(k, v.encode()) for k, v in row["headers"]],
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        for row in rows:
            OUTBOX_PUBLISHED.labels(row["topic"]).inc()

    async def _delete(self, session: AsyncSession, rows: Sequence[RowMapping]) -> int:
        if rows:
            await session.execute(delete(outbox).where(outbox.c.id.in_([row["id"] for row in rows])))
        remaining = await session.scalar(select(func.count()).select_from(outbox))
        OUTBOX_PENDING.set(remaining or 0)
        return len(rows)
