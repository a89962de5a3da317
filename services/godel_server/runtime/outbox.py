"""Transactional outbox: events are written in the same DB transaction as the state change, and a
relay moves them to Kafka afterwards. Nothing acknowledged is lost when Kafka or the service restarts:
a row leaves the outbox only after Kafka has acknowledged it (acks=all), or as a dead letter: a row
Kafka refuses for what it is (larger than a record may be) is quarantined at once, and one that
keeps failing while the rows around it go through is quarantined after SEND_ATTEMPTS tries
(runtime/deadletters.py). While Kafka is unreachable nothing is quarantined: everything waits.

A row keeps the trace context of the transaction that wrote it (`traceparent` among its headers,
runtime/tracing.py); the relay sends it in that context, so the send's producer span (from the
aiokafka instrumentation) is of that trace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from prometheus_client import Counter, Gauge
from sqlalchemy import RowMapping, Select, delete, insert, select
from sqlalchemy import event as orm_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from godel.v1 import event_pb2
from godel_server.runtime import tracing
from godel_server.runtime.db import Database, driver_message, unreachable
from godel_server.runtime.events import to_kafka_record, utcnow
from godel_server.runtime.tables import outbox
from godel_server.runtime.topics import kafka_name

if TYPE_CHECKING:
    from godel_server.runtime.deadletters import DeadLetterStore

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = Counter("godel_outbox_published_total", "Events moved from the outbox to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("godel_outbox_pending", "Events waiting in the outbox")
DELETE_SECONDS = 0.25
OUTBOX_ERRORS = Counter("godel_outbox_errors_total", "Failed attempts to publish outbox rows")
# Tries of a row that fails while others go through, before it is quarantined.
SEND_ATTEMPTS = 5
# Built once: its cache key is memoized on it, so each enqueue finds the compiled statement at once.
OUTBOX_INSERT = insert(outbox)
# Kafka refuses these records for what they are: sending them again cannot work.
REFUSED = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTopicError,
)


class _PartlySent(Exception):
    """Kafka did not acknowledge every row of a PostgreSQL pass (its transaction rolls back)."""


class SendFailed(KafkaError):  # type: ignore[misc]
    """Some rows of a pass could not be sent (they stay in the outbox for the next pass)."""


async def enqueue(session: AsyncSession, events: Sequence[event_pb2.Event]) -> None:
    """Adds events to the outbox inside the caller's transaction. The rows are written when it
    commits, all of its events in one statement (a consumer batch publishes per event it handles:
    one INSERT each was a round trip each), in the order they were enqueued."""
    if not events:
        return
    trace = [[k, v] for k, v in tracing.current_headers().items()]
    rows = _pending(session.sync_session)
    for event in events:
        record = to_kafka_record(event)
        rows.append(
            {
                "event_id": event.id,
                "topic": record.topic,
                "key": record.key,
                "value": record.value,
                "headers": [[k, v.decode()] for k, v in record.headers] + trace,
                "created_at": utcnow(),
            }
        )


_PENDING = "godel.outbox_pending"


def _pending(session: Session) -> list[dict[str, Any]]:
    """The rows enqueued in the session's current transaction (none again in a new one)."""
    transaction = session.get_transaction()
    held = session.info.get(_PENDING)
    if held is None or held[0] is not transaction:
        held = session.info[_PENDING] = (transaction, [])
    rows: list[dict[str, Any]] = held[1]
    return rows


@orm_event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    held = session.info.pop(_PENDING, None)
    if held is not None and held[0] is session.get_transaction() and held[1]:
        # The rows need nothing the session holds: its pending changes are flushed by the commit.
        with session.no_autoflush:
            session.execute(OUTBOX_INSERT, held[1])


def _send_context(row: RowMapping) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """The trace context stored with a row, and the headers of its record. With tracing on, the
    aiokafka instrumentation writes the record's context (its send's span, a child of the stored
    context) itself, so the stored one is left out; off, the row's headers go as they are."""
    stored = tracing.carrier_of((k, v) for k, v in row["headers"])
    replaced = tracing.enabled()
    headers = [(k, v.encode()) for k, v in row["headers"] if not (replaced and k in tracing.TRACE_HEADERS)]
    return stored, headers


class OutboxRelay:
    """Moves outbox rows to Kafka in insertion order; woken by `notify()` or every poll interval."""

    def __init__(
        self,
        db: Database,
        producer: AIOKafkaProducer,
        poll_seconds: float,
        batch: int = 500,
        delete_seconds: float = DELETE_SECONDS,
        dead_letters: DeadLetterStore | None = None,
    ) -> None:
        # Without a dead-letter store (some tests) a row that cannot be sent stays and is retried.
        self._dead_letters = dead_letters
        # Failed sends per outbox row id, while the row stays in the outbox.
        self._failures: dict[int, int] = {}
        self._db = db
        self._producer = producer
        self._poll = poll_seconds
        self._batch = batch
        # One PostgreSQL pass's rows, read and taken out (built once: its cache key is memoized).
        self._take = (
            delete(outbox)
            .where(
                outbox.c.id.in_(
                    select(outbox.c.id).order_by(outbox.c.id).limit(batch).with_for_update(skip_locked=True)
                )
            )
            .returning(*outbox.c)
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # SQLite: rows Kafka has acknowledged, deleted in batches (see _relay_sqlite).
        self._delete_seconds = delete_seconds
        self._sent_ids: set[int] = set()
        # None: the first pass is always due (time.monotonic() counts from boot, not from zero).
        self._last_delete: float | None = None

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
            # Cleared before the pass, not after: a commit during the pass (whose rows it may not
            # have read) leaves the relay awake for another. So a pass that read less than a batch
            # left nothing behind, and the relay sleeps instead of reading the outbox again to find
            # it empty (a transaction of three round trips per burst of events, on PostgreSQL).
            self._wake.clear()
            try:
                moved = await self.relay_once()
            except Exception as exc:
                _report_failure(exc)
                backoff = min(backoff * 2, 5.0)
                self._wake.clear()  # backing off: a commit meanwhile does not cut the wait short
            else:
                backoff = self._poll
                if moved >= self._batch:
                    continue  # a full batch: more rows may wait, read again at once
            await self._sleep(backoff)

    async def _sleep(self, seconds: float) -> None:
        """Until notified, or `seconds` at most."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def relay_once(self, *, final: bool = False) -> int:
        """Sends one batch; returns how many rows were sent. `final` (at shutdown) also deletes
        every sent row at once."""
        if self._db.is_sqlite:
            return await self._relay_sqlite(select(outbox).order_by(outbox.c.id).limit(self._batch), final)
        return await self._relay_postgres()

    async def _relay_postgres(self) -> int:
        """PostgreSQL: replicas share the table; SKIP LOCKED gives each relay its own rows. A pass
        takes its rows out in the statement that reads them (DELETE ... RETURNING) and commits
        once Kafka has acknowledged them all: a round trip less than a read and then a delete.
        When some were not acknowledged the transaction rolls back (they all stay), and those
        sent or quarantined leave in a transaction of their own (a relay that reads them in
        between sends them again: consumers dedupe by event id)."""
        try:
            async with self._db.session() as session:
                rows = sorted(
                    (await session.execute(self._take)).mappings().all(), key=lambda row: int(row["id"])
                )
                sent, failed = await self._send(rows)
                if failed:
                    raise _PartlySent
        except _PartlySent:
            async with self._db.session() as session:
                poisoned = await self._quarantine(session, rows, failed, bool(sent))
                moved = await self._delete(session, [*sent, *poisoned])
            self._finish_pass(rows, failed, poisoned)
            return moved
        OUTBOX_PENDING.set(0 if len(rows) < self._batch else self._batch)
        self._finish_pass(rows, failed, [])
        return len(rows)

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
        sent, failed = await self._send(rows)
        self._sent_ids.update(row["id"] for row in sent)
        poisoned: list[RowMapping] = []
        if failed:
            async with self._db.session() as session:
                poisoned = await self._quarantine(session, rows, failed, bool(sent))
                if poisoned:
                    await session.execute(delete(outbox).where(outbox.c.id.in_([r["id"] for r in poisoned])))
        now = time.monotonic()
        due = final or self._last_delete is None or now - self._last_delete >= self._delete_seconds
        if self._sent_ids and due:
            done = list(self._sent_ids)
            async with self._db.session() as session:
                await session.execute(delete(outbox).where(outbox.c.id.in_(done)))
            self._sent_ids.difference_update(done)
            self._last_delete = now
        OUTBOX_PENDING.set(0 if len(rows) < self._batch else self._batch)
        self._finish_pass(rows, failed, poisoned)
        return len(sent) + len(poisoned)

    async def _send(self, rows: Sequence[RowMapping]) -> tuple[list[RowMapping], dict[int, BaseException]]:
        """Sends every row; returns the rows Kafka acknowledged and the error of each other one."""
        failed: dict[int, BaseException] = {}
        pending: list[tuple[RowMapping, asyncio.Future[Any]]] = []
        for row in rows:
            stored, headers = _send_context(row)
            try:
                # The send (a producer span, tracing on) is of the trace that wrote the row.
                with tracing.continued(stored):
                    future = await self._producer.send(
                        kafka_name(row["topic"]), value=row["value"], key=row["key"].encode(), headers=headers
                    )
            except (KafkaError, OSError, TimeoutError) as exc:
                failed[row["id"]] = exc
            else:
                pending.append((row, future))
        outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        sent: list[RowMapping] = []
        for (row, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                failed[row["id"]] = outcome
            else:
                sent.append(row)
                OUTBOX_PUBLISHED.labels(row["topic"]).inc()
        return sent, failed

    async def _quarantine(
        self,
        session: AsyncSession,
        rows: Sequence[RowMapping],
        failed: dict[int, BaseException],
        kafka_answers: bool,
    ) -> list[RowMapping]:
        """Moves to the dead letters the failed rows that cannot be sent: refused for what they are,
        or failing SEND_ATTEMPTS times while Kafka took other rows."""
        poisoned: list[RowMapping] = []
        if self._dead_letters is None:
            return poisoned
        for row in rows:
            exc = failed.get(row["id"])
            if exc is None:
                continue
            attempts = self._failures.get(row["id"], 0) + 1
            if not isinstance(exc, REFUSED) and (attempts < SEND_ATTEMPTS or not kafka_answers):
                continue
            await self._dead_letters.quarantine_outbox_row(session, row, exc, attempts)
            poisoned.append(row)
        return poisoned

    def _finish_pass(
        self, rows: Sequence[RowMapping], failed: dict[int, BaseException], poisoned: Sequence[RowMapping]
    ) -> None:
        """Counts the failures of rows that stay; raises SendFailed (the relay backs off) if any."""
        gone = {row["id"] for row in poisoned}
        for row in rows:
            if row["id"] in failed and row["id"] not in gone:
                self._failures[row["id"]] = self._failures.get(row["id"], 0) + 1
            else:
                self._failures.pop(row["id"], None)
        if poisoned:
            self.notify()  # their system:poison events wait in the outbox
        stuck = [exc for key, exc in failed.items() if key not in gone]
        if stuck:
            raise SendFailed(f"{len(stuck)} outbox rows not sent: {stuck[0]!r}") from stuck[0]

    async def _delete(self, session: AsyncSession, rows: Sequence[RowMapping]) -> int:
        if rows:
            await session.execute(delete(outbox).where(outbox.c.id.in_([row["id"] for row in rows])))
        OUTBOX_PENDING.set(0 if len(rows) < self._batch else self._batch)
        return len(rows)


def _report_failure(exc: Exception) -> None:
    OUTBOX_ERRORS.inc()
    if isinstance(exc, (TimeoutError, KafkaError, OSError)):
        log.warning("outbox relay could not send; will retry", extra={"error": repr(exc)})
    elif unreachable(exc):  # nothing to debug: the database went away
        log.warning("outbox relay lost the database; will retry", extra={"error": driver_message(exc)})
    else:
        log.exception("outbox relay failed; will retry", exc_info=exc)
