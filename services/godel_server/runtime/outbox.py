"""Transactional outbox: events are written in the same DB transaction as the state change, and a
relay moves them to Kafka afterwards. Nothing acknowledged is lost when Kafka or the service restarts:
a row leaves the outbox only after Kafka has acknowledged it (acks=all)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge
from sqlalchemy import RowMapping, Select, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.events import to_kafka_record, utcnow
from godel_server.runtime.tables import outbox

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter("godel_outbox_published_total", "Events moved from the outbox to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("godel_outbox_pending", "Events waiting in the outbox")
DELETE_SECONDS = 0.25
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
        self,
        db: Database,
        producer: AIOKafkaProducer,
        poll_seconds: float,
        batch: int = 500,
        delete_seconds: float = DELETE_SECONDS,
    ) -> None:
        self._db = db
        self._producer = producer
        self._poll = poll_seconds
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # SQLite: rows Kafka has acknowledged, deleted in batches (see _relay_sqlite).
        self._delete_seconds = delete_seconds
        self._sent_ids: set[int] = set()
        self._last_delete = 0.0

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

    async def relay_once(self, *, final: bool = False) -> int:
        """Sends one batch; returns how many rows were sent. `final` (at shutdown) also deletes
        every sent row at once."""
        query = select(outbox).order_by(outbox.c.id).limit(self._batch)
        if self._db.is_sqlite:
            return await self._relay_sqlite(query, final)
        # PostgreSQL: replicas share the table; SKIP LOCKED gives each relay its own rows.
        async with self._db.session() as session:
            rows = (await session.execute(query.with_for_update(skip_locked=True))).mappings().all()
            if rows:
                await self._send(rows)
            return await self._delete(session, rows)

    async def _relay_sqlite(self, query: Select[Any], final: bool) -> int:
        """One process owns a SQLite file, whose writers queue one at a time: read and send without
        holding the write lock, remember the rows Kafka has acknowledged, and delete them at
        most every `delete_seconds` (a restart before that sends them again; consumers dedupe by
        event id). Under load this halves the write transactions per event."""
        # Ids, not a watermark: SQLite reuses the ids of deleted rows at the end of the table.
        if self._sent_ids:
            query = query.where(outbox.c.id.not_in(self._sent_ids))
        async with self._db.reader() as session:
            rows = (await session.execute(query)).mappings().all()
        if rows:
            await self._send(rows)
            self._sent_ids.update(row["id"] for row in rows)
        due = final or time.monotonic() - self._last_delete >= self._delete_seconds
        if self._sent_ids and due:
            sent = list(self._sent_ids)
            async with self._db.session() as session:
                await session.execute(delete(outbox).where(outbox.c.id.in_(sent)))
            self._sent_ids.difference_update(sent)
            self._last_delete = time.monotonic()
        OUTBOX_PENDING.set(0 if len(rows) < self._batch else self._batch)
        return len(rows)

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
        OUTBOX_PENDING.set(0 if len(rows) < self._batch else self._batch)
        return len(rows)
