"""Live delivery from the store, so that several event-service replicas serve subscribers alike:
each replica's hub is fed with the stored events in sequence order, whichever replica stored them
(the ingest consumer group splits the topics' partitions between the replicas). The sequence is
gap-free and its numbers commit in order (store.py numbers under one lock), so reading after the
last sequence published misses nothing and repeats nothing. A replica's own commits are delivered
at once, from memory when they follow the last event published (nothing can be missing before
them: no read of the store), else by a read of the store; the other replicas' are read within
GODEL_EVENT_FANOUT_POLL_SECONDS."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from godel.v1 import event_pb2
from godel_server.event.hub import SubscriptionHub
from godel_server.event.store import EventFilter, EventStore
from godel_server.event.visibility import EVERY_EVENT
from godel_server.runtime.db import Database

log = logging.getLogger(__name__)

PAGE = 500
ANY = EventFilter()
RETRY_SECONDS = 1.0


class StoreFanout:
    def __init__(self, db: Database, hub: SubscriptionHub, poll_seconds: float) -> None:
        self._db = db
        self._hub = hub
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Events were stored: deliver them now."""
        self._wake.set()

    def stored(self, events: list[event_pb2.Event]) -> None:
        """Events this replica has just committed, in sequence order: published at once when the
        first follows the last event published (a batch is numbered without gaps), else the store
        is read from the last event published (another replica stored some in between)."""
        if not events:
            return
        if events[0].sequence == self._hub.last_published + 1:
            self._hub.publish(events)
        else:
            self.poke()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-fanout")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def catch_up(self) -> int:
        """Publishes to the hub every stored event after the last one it published; how many."""
        published = 0
        while True:
            async with self._db.reader() as session:
                # Every event: the hub checks each subscriber's audience as it offers them.
                events = await EventStore(session).query(
                    ANY, audience=EVERY_EVENT, limit=PAGE, after_sequence=self._hub.last_published
                )
            # Those published from memory while the store was read are not published again.
            fresh = [e for e in events if e.sequence > self._hub.last_published]
            self._hub.publish(fresh)
            published += len(fresh)
            if len(events) < PAGE:
                return published

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as exc:
                log.warning("live fan-out could not read the store; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(RETRY_SECONDS)
