"""Consumer base: reads Godel events from Kafka, handles each one exactly once per consumer group
(dedupe by event id in the same DB transaction as the handler's writes), and commits offsets only
after the batch has been processed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.runtime.db import Database
from godel_server.runtime.events import utcnow
from godel_server.runtime.tables import processed_events

log = logging.getLogger(__name__)

CONSUMED = Counter("godel_events_consumed_total", "Events handled by a consumer group", ["group"])
DUPLICATES = Counter("godel_events_duplicate_total", "Redelivered events skipped by id", ["group"])
UNDECODABLE = Counter(
    "godel_events_undecodable_total", "Kafka records that are not godel.v1.Event", ["group"]
)


class EventConsumer(ABC):
    """Subclasses implement `handle_batch` (inside one DB transaction); what it returns is handed to
    `after_commit` once the transaction has committed."""

    group_id: str = "godel"
    # Extra AIOKafkaConsumer settings of a subclass (e.g. a shorter session timeout).
    kafka_options: dict[str, int] = {}

    def __init__(self, db: Database, bootstrap: str, topics: Sequence[str], *, client_id: str) -> None:
        self._db = db
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._client_id = client_id
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()

    @abstractmethod
    async def handle_batch(
        self, session: AsyncSession, events: list[event_pb2.Event]
    ) -> list[event_pb2.Event]:
        """Applies new (never seen before by this group) events inside the caller's transaction."""

    async def after_commit(self, events: list[event_pb2.Event]) -> None:  # noqa: B027
        """Runs with handle_batch's result after the transaction committed (e.g. live fan-out)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"consumer-{self.group_id}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
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
            try:
                await consumer.start()
                self.ready.set()
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    records = [r for recs in batches.values() for r in recs]
                    if not records:
                        continue
                    await self._process(records)
                    await consumer.commit()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning(
                    "consumer lost kafka; reconnecting", extra={"error": repr(exc), "group": self.group_id}
                )
            except Exception:
                log.exception(
                    "consumer batch failed; reprocessing from last commit", extra={"group": self.group_id}
                )
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(1.0)

    async def _process(self, records: list[object]) -> None:
        events: list[event_pb2.Event] = []
        seen: set[str] = set()
        for record in records:
            event = event_pb2.Event()
            try:
                event.ParseFromString(record.value)  # type: ignore[attr-defined]
            except Exception:
                UNDECODABLE.labels(self.group_id).inc()
                log.error("skipping undecodable record", extra={"offset": getattr(record, "offset", None)})
                continue
            if not event.id or event.id in seen:
                continue
            seen.add(event.id)
            events.append(event)
        if not events:
            return
        async with self._db.session() as session:
            done = set(
                (
                    await session.scalars(
                        select(processed_events.c.event_id).where(
                            processed_events.c.consumer == self.group_id,
                            processed_events.c.event_id.in_([e.id for e in events]),
                        )
                    )
                ).all()
            )
            fresh = [e for e in events if e.id not in done]
            DUPLICATES.labels(self.group_id).inc(len(events) - len(fresh))
            if not fresh:
                return
            await session.execute(
                processed_events.insert(),
                [{"consumer": self.group_id, "event_id": e.id, "processed_at": utcnow()} for e in fresh],
            )
            handled = await self.handle_batch(session, fresh)
        CONSUMED.labels(self.group_id).inc(len(fresh))
        await self.after_commit(handled)
