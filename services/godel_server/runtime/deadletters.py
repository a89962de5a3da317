"""Dead letters: a record the outbox relay cannot send to Kafka, or a consumer cannot handle or
store, after bounded attempts. Quarantining it moves it to the service's `dead_letters` table,
publishes `system:poison` (through the outbox, like every event) and counts it in
`godel_dead_letters_total{source}`, in one transaction, so the relay or the consumer goes on with
the next record instead of retrying the same one forever. An operator lists them, retries them
(sent or handled again, removed when that works) or deletes them: ListDeadLetters,
RetryDeadLetter and DeleteDeadLetter on each service (`godel dead-letters`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from sqlalchemy import RowMapping, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2, system_events_pb2
from godel_server.runtime import outbox
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.events import event_type_of, new_event, utcnow
from godel_server.runtime.ownership import NO_OWNER, Owner
from godel_server.runtime.tables import dead_letters
from godel_server.runtime.text import storable_text
from godel_server.runtime.topics import kafka_name

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "godel_dead_letters_total", "Records quarantined after bounded attempts (see system:poison)", ["source"]
)
OUTBOX = "outbox"
POISON_EVENT = event_type_of(system_events_pb2.RecordQuarantined())
MAX_ERROR = 2000
RETRY_SEND_SECONDS = 15.0


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    event_id: str | None
    event_type: str | None
    topic: str
    key: str | None
    kafka_partition: int | None
    kafka_offset: int | None
    value: bytes
    headers: list[list[str]]
    error: str
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Record:
    """What is quarantined: a record's bytes and where it was going or came from."""

    source: str
    topic: str
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()
    key: str | None = None
    kafka_partition: int | None = None
    kafka_offset: int | None = None


class Reprocessor(Protocol):
    """A consumer that can handle one quarantined record again (runtime/consumer.py)."""

    group_id: str

    async def reprocess(self, value: bytes, also: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Handles the record in one transaction with `also`; raises when it fails again."""


def short(value: str | None, limit: int) -> str | None:
    """A value for a listing column: storable and short enough, else None (the record keeps it)."""
    if not value:
        return None
    clean = storable_text(value)
    return clean if len(clean) <= limit else None


def describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return storable_text(text)[:MAX_ERROR]


def _event_of(value: bytes) -> event_pb2.Event | None:
    event = event_pb2.Event()
    try:
        event.ParseFromString(value)
    except Exception:
        return None
    return event


class DeadLetterStore:
    """The dead letters of one service database."""

    def __init__(
        self,
        db: Database,
        *,
        component: str,
        instance: str,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self._db = db
        self._component = component
        # The role whose database this is ("agent-service" -> "agent").
        self.service = component.removesuffix("-service")
        self._instance = instance
        self._producer = producer
        self._consumers: dict[str, Reprocessor] = {}
        # Wakes the outbox relay once a quarantine committed its system:poison event.
        self.notify: Callable[[], None] = lambda: None

    def add_consumer(self, consumer: Reprocessor) -> None:
        self._consumers[consumer.group_id] = consumer

    async def quarantine(self, session: AsyncSession, record: Record, error: str, attempts: int) -> int:
        """Writes the dead letter and its system:poison event in the caller's transaction."""
        event = _event_of(record.value)
        event_id = short(event.id if event else _header(record.headers, "ce_id"), 36)
        event_type = short(event.type if event else _header(record.headers, "ce_type"), 100)
        now = utcnow()
        error = storable_text(error)[:MAX_ERROR]
        result = await session.execute(
            insert(dead_letters).returning(dead_letters.c.id),
            {
                "source": record.source,
                "event_id": event_id,
                "event_type": event_type,
                "topic": storable_text(record.topic)[:200],
                "key": short(record.key, 200),
                "kafka_partition": record.kafka_partition,
                "kafka_offset": record.kafka_offset,
                "value": record.value,
                "headers": [
                    [storable_text(k), storable_text(v.decode(errors="replace"))] for k, v in record.headers
                ],
                "error": error,
                "attempts": attempts,
                "created_at": now,
                "updated_at": now,
            },
        )
        dead_letter_id = int(result.scalar_one())
        if event_type != POISON_EVENT:  # a poison event that cannot be sent is not announced again
            agent_id = short(event.metadata.agent_id, 36) if event else None
            # Whoever may read the quarantined event may read that it was quarantined.
            owner = (
                Owner(short(event.metadata.owner_user_id, 100), short(event.metadata.owner_team_id, 36))
                if event
                else NO_OWNER
            )
            await outbox.enqueue(
                session,
                [
                    new_event(
                        system_events_pb2.RecordQuarantined(
                            service=self.service,
                            source=record.source,
                            dead_letter_id=dead_letter_id,
                            event_id=event_id or "",
                            event_type=event_type or "",
                            topic=storable_text(record.topic)[:200],
                            error=error,
                            attempts=attempts,
                            size_bytes=len(record.value),
                        ),
                        partition_key=event_id or f"dead-letter-{dead_letter_id}",
                        component=self._component,
                        instance=self._instance,
                        agent_id=agent_id or "",
                        owner=owner,
                    )
                ],
            )
        DEAD_LETTERS.labels(record.source).inc()
        log.error(
            "record quarantined",
            extra={
                "source": record.source,
                "deadLetterId": dead_letter_id,
                "eventId": event_id,
                "eventType": event_type,
                "topic": record.topic,
                "error": error,
            },
        )
        return dead_letter_id

    async def quarantine_outbox_row(
        self, session: AsyncSession, row: RowMapping, exc: BaseException, attempts: int
    ) -> int:
        """An outbox row the relay cannot send (the caller deletes it from the outbox)."""
        record = Record(
            source=OUTBOX,
            topic=kafka_name(row["topic"]),  # the broker's name, as a consumer's records have it
            value=row["value"],
            headers=[(k, v.encode()) for k, v in row["headers"]],
            key=row["key"],
        )
        return await self.quarantine(session, record, describe(exc), attempts)

    async def list(self, *, source: str = "", after_id: int = 0, limit: int = 50) -> list[DeadLetter]:
        query = select(dead_letters).where(dead_letters.c.id > after_id)
        if source:
            query = query.where(dead_letters.c.source == source)
        async with self._db.reader() as session:
            rows = (await session.execute(query.order_by(dead_letters.c.id).limit(limit))).mappings().all()
        return [DeadLetter(**row) for row in rows]

    async def get(self, dead_letter_id: int) -> DeadLetter:
        async with self._db.reader() as session:
            row = (
                (await session.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFoundError("dead letter", str(dead_letter_id))
        return DeadLetter(**row)

    async def delete(self, dead_letter_id: int) -> None:
        async with self._db.session() as session:
            result = await session.execute(delete(dead_letters).where(dead_letters.c.id == dead_letter_id))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFoundError("dead letter", str(dead_letter_id))

    async def retry(self, dead_letter_id: int) -> None:
        """Sends (outbox) or handles (consumer) the record again and removes it; when that fails,
        FAILED_PRECONDITION with the error, and the dead letter stays with one more attempt."""
        letter = await self.get(dead_letter_id)
        try:
            if letter.source == OUTBOX:
                await self._send(letter)
                await self.delete(dead_letter_id)
            else:
                await self._reprocess(letter)
        except (NotFoundError, FailedPreconditionError):
            raise
        except Exception as exc:
            error = describe(exc)
            async with self._db.session() as session:
                await session.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == dead_letter_id)
                    .values(error=error, attempts=dead_letters.c.attempts + 1, updated_at=utcnow())
                )
            raise FailedPreconditionError(
                f"dead letter {dead_letter_id} failed again: {error}",
                metadata={"deadLetterId": str(dead_letter_id)},
            ) from None

    async def _send(self, letter: DeadLetter) -> None:
        if self._producer is None:
            raise FailedPreconditionError("this process has no Kafka producer to send dead letters with")
        await asyncio.wait_for(
            self._producer.send_and_wait(
                letter.topic,
                value=letter.value,
                key=(letter.key or "").encode() or None,
                headers=[(k, v.encode()) for k, v in letter.headers],
            ),
            RETRY_SEND_SECONDS,
        )

    async def _reprocess(self, letter: DeadLetter) -> None:
        consumer = self._consumers.get(letter.source)
        if consumer is None:
            raise FailedPreconditionError(
                f"consumer group {letter.source!r} does not run in this process",
                metadata={"source": letter.source},
            )

        async def remove(session: AsyncSession) -> None:
            await session.execute(delete(dead_letters).where(dead_letters.c.id == letter.id))

        await consumer.reprocess(letter.value, remove)


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None
