"""Consumer base: reads Godel events from Kafka, handles each one exactly once per consumer group
(dedupe by event id in the same DB transaction as the handler's writes: in the dedupe log, or by
the handler itself when it `stores_each_id_once`), and commits the offsets of processed batches
only: at most every COMMIT_SECONDS while batches keep coming, at once when none came. (A commit per
batch was a Kafka round trip per batch, the largest cost of a one-event batch after its
transaction; what a restart reads again of the last interval is deduped.) A record it cannot
handle does not stop the group: a batch that fails BATCH_ATTEMPTS times is handled one record at a
time, and a record that still fails after RECORD_ATTEMPTS (or that is no event, or one the service
cannot store) is quarantined as a dead letter (runtime/deadletters.py) and the group goes on. A
database or Kafka that is down is no reason to quarantine: the consumer reconnects and retries from
its last commit. The dedupe log keeps DEDUPE_RETENTION of history (Kafka redelivers only
uncommitted records).

Each event is handled in a consumer `process` span that continues the trace of its record
(`traceparent` header, runtime/tracing.py); `trace_headers(event)` hands it on (e.g. to the run a
request starts). This span is Godel's own: the aiokafka instrumentation's `receive` spans of a
`getmany` end when it returns, before the batch is handled, so what handling does (statements,
events published, calls) could not be of the record's trace through them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import Counter
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime import tracing
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.db import Database, driver_message, unreachable
from godel_server.runtime.deadletters import DeadLetterStore, Record, describe
from godel_server.runtime.events import utcnow
from godel_server.runtime.kafka import client_options
from godel_server.runtime.tables import processed_events
from godel_server.runtime.text import storable_text
from godel_server.runtime.topics import kafka_name

log = logging.getLogger(__name__)

CONSUMED = Counter("godel_events_consumed_total", "Events handled by a consumer group", ["group"])
DUPLICATES = Counter("godel_events_duplicate_total", "Redelivered events skipped by id", ["group"])
UNDECODABLE = Counter(
    "godel_events_undecodable_total", "Kafka records that are not godel.v1.Event", ["group"]
)
BATCH_ATTEMPTS = 3
RECORD_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 0.2
DEDUPE_RETENTION = timedelta(days=7)
PRUNE_SECONDS = 3600.0
EVENT_ID_LEN = 36  # processed_events.event_id
COMMIT_SECONDS = 1.0
# A stopping consumer commits what it processed, unless Kafka takes longer than this to answer.
STOP_COMMIT_SECONDS = 2.0

Also = Callable[[AsyncSession], Awaitable[None]]


def unavailable(exc: BaseException) -> bool:
    """The database or Kafka is down: retrying later will work, quarantining would be wrong."""
    return isinstance(exc, KafkaError) or unreachable(exc)


class EventConsumer(ABC):
    """Subclasses implement `handle_batch` (inside one DB transaction); what it returns is handed to
    `after_commit` once the transaction has committed."""

    group_id: str = "godel"
    # True when handle_batch itself skips the events it has handled and returns the others (the
    # event store keeps each id once): the dedupe log would only repeat that, a statement per batch.
    stores_each_id_once: bool = False
    # Extra AIOKafkaConsumer settings of a subclass (e.g. a shorter session timeout).
    kafka_options: dict[str, int] = {}

    def __init__(
        self,
        db: Database,
        kafka: KafkaSettings,
        topics: Sequence[str],
        *,
        client_id: str,
        dead_letters: DeadLetterStore,
    ) -> None:
        self._db = db
        self._kafka = kafka
        self._topics = list(topics)
        self._client_id = client_id
        self._dead_letters = dead_letters
        dead_letters.add_consumer(self)
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()
        # The consumer span of each event of the batch being handled (tracing on).
        self._spans: dict[str, tracing.Span] = {}

    @abstractmethod
    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        """Applies new (never seen before by this group) events inside the caller's transaction."""

    async def after_commit(self, events: list[event_pb2.Event]) -> None:  # noqa: B027
        """Runs with handle_batch's result after the transaction committed (e.g. live fan-out)."""

    def rolled_back(self, events: list[event_pb2.Event]) -> None:  # noqa: B027
        """The transaction handling `events` did not commit: undo what handle_batch changed outside
        the database."""

    def wants(self, event: event_pb2.Event) -> bool:
        """False for an event this group has no use for: it is neither handled nor recorded (no
        transaction at all), and its offset is committed with the batch's."""
        return True

    def poison_reason(self, event: event_pb2.Event) -> str | None:
        """Why this group can never handle the event (it is quarantined without attempts), or None."""
        if not event.id:
            return "the event has no id"
        if len(event.id) > EVENT_ID_LEN or storable_text(event.id) != event.id:
            return f"id: must be at most {EVENT_ID_LEN} characters of storable text"
        return None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")
        self._pruner = asyncio.create_task(self._prune_loop(), name=f"prune-{self.group_id}")

    async def stop(self) -> None:
        for task in (self._task, self._pruner):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *(kafka_name(t) for t in self._topics),
            **client_options(self._kafka),
            group_id=kafka_name(self.group_id),
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=500,
            metadata_max_age_ms=5000,
            **self.kafka_options,
        )

    async def _run(self) -> None:
        while True:
            consumer = self._new_consumer()
            self._consumer = consumer
            # The next offset of each partition's processed records, not committed yet.
            processed: dict[TopicPartition, int] = {}
            try:
                await consumer.start()
                self.ready.set()
                committed_at: float | None = None  # None: the first batch commits at once
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    records = [r for recs in batches.values() for r in recs]
                    if records:
                        await self._process(records)
                        for tp, recs in batches.items():
                            if recs:
                                processed[tp] = recs[-1].offset + 1
                    now = time.monotonic()
                    due = not records or committed_at is None or now - committed_at >= COMMIT_SECONDS
                    if processed and due:
                        await self._commit(consumer, processed)
                        committed_at = now
            except asyncio.CancelledError:
                if processed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self._commit(consumer, processed), STOP_COMMIT_SECONDS)
                raise
            except (KafkaError, OSError) as exc:
                log.warning(
                    "consumer lost kafka; reconnecting", extra={"error": repr(exc), "group": self.group_id}
                )
            except Exception as exc:
                if not unreachable(exc):
                    log.exception(
                        "consumer batch failed; reprocessing from last commit", extra={"group": self.group_id}
                    )
                else:  # nothing to debug here: the database went away
                    log.warning(
                        "consumer lost the database; reprocessing from last commit",
                        extra={"group": self.group_id, "error": driver_message(exc)},
                    )
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(1.0)

    async def _commit(self, consumer: AIOKafkaConsumer, processed: dict[TopicPartition, int]) -> None:
        """Commits (and forgets) the processed offsets of the partitions the consumer still has; the
        others went to another member, which reads them again from their last commit (deduped)."""
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in processed.items() if tp in assigned}
        processed.clear()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:  # the group rebalanced meanwhile
            log.info(
                "offsets not committed: the group rebalanced",
                extra={"group": self.group_id, "error": repr(exc)},
            )

    async def _process(self, records: list[Any]) -> None:
        batch: list[tuple[Any, event_pb2.Event]] = []
        seen: set[str] = set()
        for record in records:
            event = event_pb2.Event()
            try:
                event.ParseFromString(record.value)
            except Exception as exc:
                UNDECODABLE.labels(self.group_id).inc()
                await self._quarantine(record, None, f"not a godel.v1.Event: {describe(exc)}", 1)
                continue
            problem = self.poison_reason(event)
            if problem is not None:
                await self._quarantine(record, event, problem, 1)
                continue
            if event.id in seen or not self.wants(event):
                continue
            seen.add(event.id)
            batch.append((record, event))
        if not batch:
            return
        self._spans = self._consume_spans(batch)
        failure: BaseException | None = None
        try:
            # One event: what handling it does (events it publishes, calls) joins its trace.
            with tracing.current(next(iter(self._spans.values())) if len(self._spans) == 1 else None):
                await self._process_batch(batch)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            for span in self._spans.values():
                tracing.end(span, failure)
            self._spans = {}

    def _consume_spans(self, batch: list[tuple[Any, event_pb2.Event]]) -> dict[str, tracing.Span]:
        spans: dict[str, tracing.Span] = {}
        for record, event in batch:
            span = tracing.start(
                f"{record.topic} process",
                parent=tracing.carrier_of(record.headers),
                kind=tracing.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": kafka_name(self.group_id),
                    "messaging.message.id": event.id,
                    "godel.event.type": event.type,
                },
            )
            if span is not None:
                spans[event.id] = span
        return spans

    def trace_headers(self, event: event_pb2.Event) -> dict[str, str]:
        """The trace context of the event being handled ({} when tracing is off)."""
        return tracing.headers_of(self._spans.get(event.id))

    async def _process_batch(self, batch: list[tuple[Any, event_pb2.Event]]) -> None:
        events = [e for _, e in batch]
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                handled = await self._handle(events)
            except Exception as exc:
                if unavailable(exc):
                    raise
                log.warning(
                    "consumer batch failed; trying again",
                    extra={"group": self.group_id, "attempt": attempt, "error": describe(exc)},
                )
                await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
            else:
                await self.after_commit(handled)
                return
        for record, event in batch:  # one at a time: the others go on, the bad one is quarantined
            await self._one(record, event)

    async def _one(self, record: Any, event: event_pb2.Event) -> None:
        error = ""
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                handled = await self._handle([event])
            except Exception as exc:
                if unavailable(exc):
                    raise
                error = describe(exc)
                await asyncio.sleep(RETRY_PAUSE_SECONDS * attempt)
            else:
                await self.after_commit(handled)
                return
        await self._quarantine(record, event, error, BATCH_ATTEMPTS + RECORD_ATTEMPTS)

    async def _handle(
        self, events: list[event_pb2.Event], *, also: Also | None = None, again: bool = False
    ) -> list[event_pb2.Event]:
        """One transaction: the events this group has not handled yet are recorded and handled
        (`again`: also those it handled, for a retried dead letter), with `also`."""
        try:
            return await self._handle_once(events, also=also, again=again)
        except BaseException:
            self.rolled_back(events)
            raise

    async def _handle_once(
        self, events: list[event_pb2.Event], *, also: Also | None, again: bool
    ) -> list[event_pb2.Event]:
        async with self._db.session() as session:
            if again:
                await session.execute(
                    delete(processed_events).where(
                        processed_events.c.consumer == self.group_id,
                        processed_events.c.event_id.in_([e.id for e in events]),
                    )
                )
            handled: list[event_pb2.Event] = []
            if self.stores_each_id_once:
                fresh = handled = await self.handle_batch(session, events)
            else:
                fresh = await self._record(session, events)
                if fresh:
                    handled = await self.handle_batch(session, fresh)
            DUPLICATES.labels(self.group_id).inc(len(events) - len(fresh))
            if also is not None:
                await also(session)
        CONSUMED.labels(self.group_id).inc(len(fresh))
        return handled

    async def _record(self, session: AsyncSession, events: list[event_pb2.Event]) -> list[event_pb2.Event]:
        """Records the events as handled by this group; returns those it had not handled yet. One
        statement: an id the group has already is left alone (and a concurrent replica recording
        the same id waits for the other's transaction, then leaves it alone too)."""
        now = utcnow()
        rows = [{"consumer": self.group_id, "event_id": e.id, "processed_at": now} for e in events]
        dialect = sqlite if self._db.is_sqlite else postgresql
        statement = (
            dialect.insert(processed_events)
            .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(processed_events.c.event_id)
        )
        new = set((await session.scalars(statement, rows)).all())
        return [e for e in events if e.id in new]

    async def _quarantine(
        self, record: Any, event: event_pb2.Event | None, error: str, attempts: int
    ) -> None:
        """Moves the record to the dead letters; the group will not see it again (its id counts as
        handled), so its offset can be committed."""
        key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else None
        quarantined = Record(
            source=self.group_id,
            topic=record.topic,
            value=record.value or b"",
            headers=list(record.headers or ()),
            key=key,
            kafka_partition=record.partition,
            kafka_offset=record.offset,
        )
        async with self._db.session() as session:
            if event is not None and self.poison_reason(event) is None:
                known = await session.scalar(
                    select(processed_events.c.event_id).where(
                        processed_events.c.consumer == self.group_id, processed_events.c.event_id == event.id
                    )
                )
                if known is None:
                    await session.execute(
                        processed_events.insert(),
                        {"consumer": self.group_id, "event_id": event.id, "processed_at": utcnow()},
                    )
            await self._dead_letters.quarantine(session, quarantined, error, attempts)
        self._dead_letters.notify()

    async def reprocess(self, value: bytes, also: Also) -> None:
        """Handles a dead letter of this group again, in one transaction with `also`; raises (a
        ValueError for a record that is still no storable event) when it fails."""
        event = event_pb2.Event()
        event.ParseFromString(value)
        problem = self.poison_reason(event)
        if problem is not None:
            raise ValueError(problem)
        handled = await self._handle([event], also=also, again=True)
        await self.after_commit(handled)

    async def prune(self, older_than: timedelta = DEDUPE_RETENTION) -> int:
        """Forgets the event ids this group handled longer ago than `older_than`."""
        async with self._db.session() as session:
            result = await session.execute(
                delete(processed_events).where(
                    processed_events.c.consumer == self.group_id,
                    processed_events.c.processed_at < utcnow() - older_than,
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _prune_loop(self) -> None:
        while True:
            try:
                pruned = await self.prune()
                if pruned:
                    log.info("dedupe log pruned", extra={"group": self.group_id, "rows": pruned})
            except Exception as exc:
                log.warning(
                    "pruning the dedupe log failed", extra={"group": self.group_id, "error": repr(exc)}
                )
            await asyncio.sleep(PRUNE_SECONDS)
