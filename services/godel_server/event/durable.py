"""Durable subscriptions: a user's named filter whose cursor (the sequence of the last event handed
to the subscriber) is kept in the event database, so a reconnecting client, or any client after an
event-service restart, resumes right after it.

The cursor moves as events are written to the transport and is saved at least every
FLUSH_SECONDS and when the stream ends. After a crash of the event service the subscriber may
therefore see up to FLUSH_SECONDS of events again, and a client that hangs up while an event is
being written may get it again on resume (at-least-once; dedupe by sequence). An explicit
`from_sequence` on resume moves the cursor (rewind or skip)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

from sqlalchemy import delete, select, update

from godel.v1 import event_service_pb2
from godel_server.event.models import SubscriptionRow
from godel_server.event.options import SubscribeOptions
from godel_server.event.store import EventFilter, attribute_filters
from godel_server.runtime.db import Database
from godel_server.runtime.errors import FailedPreconditionError, NotFoundError
from godel_server.runtime.events import set_times, utcnow

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5


class SubscriptionNotFoundError(NotFoundError):
    code = "EVENT_SUBSCRIPTION_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__("event subscription", name)


def _filter_of(row: SubscriptionRow) -> EventFilter:
    return EventFilter(types=tuple(row.patterns), **attribute_filters(row))


def _is_empty(flt: EventFilter) -> bool:
    return flt == EventFilter()


@dataclass
class Cursor:
    """The position of one connected durable subscription."""

    owner: str
    name: str
    position: int
    saved: int

    def advance(self, sequence: int) -> None:
        self.position = max(self.position, sequence)


class DurableSubscriptions:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._open: dict[tuple[str, str], Cursor] = {}
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._flusher = asyncio.create_task(self._flush_loop(), name="durable-subscriptions")

    async def stop(self) -> None:
        if self._flusher:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def open(
        self, owner: str, options: SubscribeOptions, newest: int, *, field: str
    ) -> tuple[SubscribeOptions, Cursor]:
        """Creates or resumes `options.name` for `owner`; returns the options to stream with (the
        stored filter, replay from the cursor) and the cursor to advance. `field` names the name
        field in errors."""
        key = (owner, options.name)
        if key in self._open:
            raise FailedPreconditionError(
                f"{field}: durable subscription {options.name!r} already has a connected subscriber",
                metadata={"field": field},
            )
        now = utcnow()
        async with self._db.session() as session:
            row = await session.get(SubscriptionRow, {"owner": owner, "name": options.name})
            if row is None:
                start = newest if options.from_sequence is None else options.from_sequence
                flt = options.filter
                session.add(
                    SubscriptionRow(
                        owner=owner,
                        name=options.name,
                        patterns=list(flt.types),
                        **attribute_filters(flt),
                        last_sequence=start,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                flt = _filter_of(row)
                if not _is_empty(options.filter) and options.filter != flt:
                    raise FailedPreconditionError(
                        f"{field}: durable subscription {options.name!r} exists with other patterns or "
                        "filters; resume it without filters, or delete it first",
                        metadata={"field": field},
                    )
                start = row.last_sequence if options.from_sequence is None else options.from_sequence
                if start != row.last_sequence:
                    row.last_sequence = start
                    row.updated_at = now
        cursor = Cursor(owner, options.name, start, start)
        self._open[key] = cursor
        return replace(options, filter=flt, from_sequence=start), cursor

    async def close(self, cursor: Cursor) -> None:
        """Saves the cursor, then forgets it: until the save is committed, readers see the
        subscription connected with its live position. The save outlives the cancellation of the
        stream's task (a client that disconnects cancels it): forgetting it first would show a
        stale cursor, and a reconnect in between would resume from it."""
        key = (cursor.owner, cursor.name)
        saving = asyncio.ensure_future(self._save([cursor]))

        def forget(done: asyncio.Future[None]) -> None:
            self._open.pop(key, None)
            if not done.cancelled() and (error := done.exception()) is not None:
                log.error(
                    "saving a durable subscription cursor failed", exc_info=error, extra={"name": cursor.name}
                )

        saving.add_done_callback(forget)
        with contextlib.suppress(Exception):  # logged by forget()
            await asyncio.shield(saving)

    async def flush(self) -> None:
        await self._save(list(self._open.values()))

    async def _save(self, cursors: list[Cursor]) -> None:
        dirty = [c for c in cursors if c.position != c.saved]
        if not dirty:
            return
        now = utcnow()
        async with self._db.session() as session:
            for c in dirty:
                await session.execute(
                    update(SubscriptionRow)
                    .where(SubscriptionRow.owner == c.owner, SubscriptionRow.name == c.name)
                    .values(last_sequence=c.position, updated_at=now)
                )
        for c in dirty:
            c.saved = c.position

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                log.exception("saving durable subscription cursors failed")

    # -- management RPCs ---------------------------------------------------------------------

    def _message(self, row: SubscriptionRow, cursor: Cursor | None) -> event_service_pb2.EventSubscription:
        """`cursor` is the live cursor as it was before `row` was read: a close saves, then
        forgets, so a cursor gone before the read means the row holds its last position, while one
        that goes during the read would leave a row read before the save."""
        msg = event_service_pb2.EventSubscription(
            name=row.name,
            pattern=row.patterns,
            agent_id=row.agent_id,
            team_id=row.team_id,
            workflow_id=row.workflow_id,
            correlation_id=row.correlation_id,
            trace_id=row.trace_id,
            source_component=row.source_component,
            last_sequence=cursor.position if cursor else row.last_sequence,
            connected=cursor is not None,
        )
        set_times(msg, create_time=row.created_at, update_time=row.updated_at)
        return msg

    async def list(self, owner: str) -> list[event_service_pb2.EventSubscription]:
        live = dict(self._open)
        async with self._db.reader() as session:
            rows = (
                await session.scalars(
                    select(SubscriptionRow)
                    .where(SubscriptionRow.owner == owner)
                    .order_by(SubscriptionRow.name)
                )
            ).all()
        return [self._message(r, live.get((r.owner, r.name))) for r in rows]

    async def get(self, owner: str, name: str) -> event_service_pb2.EventSubscription:
        cursor = self._open.get((owner, name))
        async with self._db.reader() as session:
            row = await session.get(SubscriptionRow, {"owner": owner, "name": name})
        if row is None:
            raise SubscriptionNotFoundError(name)
        return self._message(row, cursor)

    async def delete(self, owner: str, name: str) -> None:
        if (owner, name) in self._open:
            raise FailedPreconditionError(
                f"durable subscription {name!r} has a connected subscriber; disconnect it first"
            )
        async with self._db.session() as session:
            result = await session.execute(
                delete(SubscriptionRow).where(SubscriptionRow.owner == owner, SubscriptionRow.name == name)
            )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise SubscriptionNotFoundError(name)
