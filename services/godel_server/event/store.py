"""The event store: append with a global gap-free sequence, query with filters, get by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from google.protobuf import json_format
from sqlalchemy import ColumnElement, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.event.models import EventRow
from godel_server.runtime.events import pattern_matches, utcnow

SEQUENCE_LOCK_KEY = 0x60DE1E7E


# Filters on an event's attributes; requests, stored subscriptions and EventFilter share the names.
class Attributes(TypedDict):
    agent_id: str
    team_id: str
    workflow_id: str
    correlation_id: str
    trace_id: str
    source_component: str


def attribute_filters(source: Any) -> Attributes:
    """The attribute filters of anything with those field names (a request, a stored row, a filter)."""
    return Attributes(
        agent_id=source.agent_id or "",
        team_id=source.team_id or "",
        workflow_id=source.workflow_id or "",
        correlation_id=source.correlation_id or "",
        trace_id=source.trace_id or "",
        source_component=source.source_component or "",
    )


@dataclass(frozen=True)
class EventFilter:
    """Type patterns, attribute filters (Attributes) and a time range; empty = any."""

    types: tuple[str, ...] = ()
    agent_id: str = ""
    team_id: str = ""
    workflow_id: str = ""
    correlation_id: str = ""
    trace_id: str = ""
    source_component: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None

    def matches(self, event: event_pb2.Event) -> bool:
        if self.types and not any(pattern_matches(p, event.type) for p in self.types):
            return False
        m = event.metadata
        return (
            (not self.agent_id or m.agent_id == self.agent_id)
            and (not self.team_id or m.team_id == self.team_id)
            and (not self.workflow_id or m.workflow_id == self.workflow_id)
            and (not self.correlation_id or m.correlation_id == self.correlation_id)
            and (not self.trace_id or m.trace_id == self.trace_id)
            and (not self.source_component or event.source.component == self.source_component)
        )


def _type_clause(pattern: str) -> ColumnElement[bool]:
    if pattern in ("*", ""):
        return EventRow.event_type.is_not(None)
    if pattern.endswith(":*") and "*" not in pattern[:-2]:
        prefix = pattern[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return EventRow.event_type.like(prefix + "%", escape="\\")
    if "*" in pattern:
        like = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
        return EventRow.event_type.like(like, escape="\\")
    return EventRow.event_type == pattern


def row_to_event(row: EventRow) -> event_pb2.Event:
    event = event_pb2.Event()
    event.ParseFromString(row.data)
    event.sequence = row.sequence_number
    return event


class EventStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def last_sequence(self) -> int:
        return int(
            await self._session.scalar(select(func.coalesce(func.max(EventRow.sequence_number), 0))) or 0
        )

    async def append(self, events: Sequence[event_pb2.Event]) -> list[event_pb2.Event]:
        """Stores events not stored yet (by id), numbering them after the current last sequence.
        Returns the stored events with `sequence` set."""
        if self._session.get_bind().dialect.name == "postgresql":
            # One numbering writer at a time, even with several event-service replicas: the
            # partitioned table's key (sequence_number, stored_at) cannot enforce it alone.
            await self._session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEQUENCE_LOCK_KEY})
        ids = [e.id for e in events]
        known = set((await self._session.scalars(select(EventRow.id).where(EventRow.id.in_(ids)))).all())
        sequence = await self.last_sequence()
        stored: list[event_pb2.Event] = []
        now = utcnow()
        for event in events:
            if event.id in known:
                continue
            known.add(event.id)
            sequence += 1
            event.sequence = sequence
            m = event.metadata
            self._session.add(
                EventRow(
                    sequence_number=sequence,
                    id=event.id,
                    event_type=event.type,
                    timestamp=event.timestamp.ToDatetime(tzinfo=UTC) if event.HasField("timestamp") else now,
                    payload=json_format.MessageToDict(event.payload),
                    source_component=event.source.component or None,
                    source_instance=event.source.instance or None,
                    source_version=event.source.version or None,
                    correlation_id=m.correlation_id or None,
                    causation_id=m.causation_id or None,
                    trace_id=m.trace_id or None,
                    agent_id=m.agent_id or None,
                    team_id=m.team_id or None,
                    workflow_id=m.workflow_id or None,
                    user_id=m.user_id or None,
                    partition_key=event.partition_key or None,
                    data=event.SerializeToString(),
                    stored_at=now,
                )
            )
            stored.append(event)
        await self._session.flush()
        return stored

    async def get(self, event_id: str) -> event_pb2.Event | None:
        row = await self._session.scalar(select(EventRow).where(EventRow.id == event_id))
        return row_to_event(row) if row else None

    async def query(
        self,
        flt: EventFilter,
        *,
        limit: int,
        after_sequence: int = 0,
        before_sequence: int | None = None,
        descending: bool = False,
    ) -> list[event_pb2.Event]:
        stmt = select(EventRow)
        if flt.types:
            stmt = stmt.where(or_(*(_type_clause(p) for p in flt.types)))
        for column, value in (
            (EventRow.agent_id, flt.agent_id),
            (EventRow.team_id, flt.team_id),
            (EventRow.workflow_id, flt.workflow_id),
            (EventRow.correlation_id, flt.correlation_id),
            (EventRow.trace_id, flt.trace_id),
            (EventRow.source_component, flt.source_component),
        ):
            if value:
                stmt = stmt.where(column == value)
        if flt.start_time:
            stmt = stmt.where(EventRow.timestamp >= flt.start_time)
        if flt.end_time:
            stmt = stmt.where(EventRow.timestamp < flt.end_time)
        if after_sequence:
            stmt = stmt.where(EventRow.sequence_number > after_sequence)
        if before_sequence is not None:
            stmt = stmt.where(EventRow.sequence_number < before_sequence)
        order = EventRow.sequence_number.desc() if descending else EventRow.sequence_number.asc()
        rows = (await self._session.scalars(stmt.order_by(order).limit(limit))).all()
        return [row_to_event(r) for r in rows]
