"""The event store: append with a global gap-free sequence, query with filters, get by id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict

from google.protobuf import json_format
from sqlalchemy import ColumnElement, String, func, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from godel.v1 import event_pb2
from godel_server.event.models import EventRow
from godel_server.event.visibility import Audience
from godel_server.runtime.events import pattern_matches, payload_dict, utcnow
from godel_server.runtime.text import storable_json, storable_text

SEQUENCE_LOCK_KEY = 0x60DE1E7E
# PostgreSQL: the numbering lock, then (in the same round trip, after it is held) the batch's ids
# stored already, and a row with no id and the last stored sequence (migration 0006_locked_scan).
LOCKED_SCAN = text("SELECT event_id, sequence FROM godel_events_locked_scan(:key, :ids)")


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


def storable_event(event: event_pb2.Event) -> event_pb2.Event:
    """The event with NUL and lone surrogates in its text replaced by U+FFFD (runtime/text.py), so
    what is stored, served and fanned out is the same; the event itself when its text is clean."""
    if b"\x00" not in event.SerializeToString():  # no NUL byte, so no NUL in any string
        return event
    document = json_format.MessageToDict(event)
    clean = storable_json(document)
    if clean == document:
        return event
    return json_format.ParseDict(clean, event_pb2.Event())


def _text_columns(event: event_pb2.Event) -> dict[str, str | None]:
    """The stored row's text columns of an event, made storable (runtime/text.py: an event from
    Kafka may hold anything)."""
    m = event.metadata

    def clean(value: str) -> str | None:
        return storable_text(value) or None

    return {
        "id": event.id,
        "event_type": storable_text(event.type),
        "source_component": clean(event.source.component),
        "source_instance": clean(event.source.instance),
        "source_version": clean(event.source.version),
        "correlation_id": clean(m.correlation_id),
        "causation_id": clean(m.causation_id),
        "trace_id": clean(m.trace_id),
        "agent_id": clean(m.agent_id),
        "team_id": clean(m.team_id),
        "workflow_id": clean(m.workflow_id),
        "user_id": clean(m.user_id),
        "owner_user_id": clean(m.owner_user_id),
        "owner_team_id": clean(m.owner_team_id),
        "partition_key": clean(event.partition_key),
    }


def event_columns(event: event_pb2.Event, sequence: int, now: datetime) -> dict[str, Any]:
    """The stored row of an event; its text made storable."""
    return {
        **_text_columns(event),
        "sequence_number": sequence,
        "timestamp": event.timestamp.ToDatetime(tzinfo=UTC) if event.HasField("timestamp") else now,
        "payload": payload_dict(event),
        "data": event.SerializeToString(),
        "stored_at": now,
    }


# The longest value of each text column, from the model.
_TEXT_LIMITS: dict[str, int] = {
    name: column.type.length
    for name, column in EventRow.__table__.columns.items()
    if isinstance(column.type, String) and column.type.length
}


def storage_problem(event: event_pb2.Event) -> str | None:
    """Why the store cannot keep an event (a value longer than its column), or None."""
    for name, value in _text_columns(event).items():
        length = _TEXT_LIMITS.get(name)
        if value is not None and length and len(value) > length:
            return f"{name}: {len(value)} characters, the store keeps at most {length}"
    if not event.type:
        return "type: the event has no type"
    return None


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
        ids = [e.id for e in events]
        if self._session.get_bind().dialect.name == "postgresql":
            # One numbering writer at a time, even with several event-service replicas: the
            # partitioned table's key (sequence_number, stored_at) cannot enforce it alone.
            found = (await self._session.execute(LOCKED_SCAN, {"key": SEQUENCE_LOCK_KEY, "ids": ids})).all()
        else:
            # One round trip for both: the batch's events stored already, and the last stored event
            # (whose sequence is the highest, so the batch is numbered after it).
            last = select(func.max(EventRow.sequence_number)).scalar_subquery()
            found = (
                await self._session.execute(
                    select(EventRow.id, EventRow.sequence_number).where(
                        or_(EventRow.id.in_(ids), EventRow.sequence_number == last)
                    )
                )
            ).all()
        wanted = set(ids)
        known = {event_id for event_id, _ in found if event_id in wanted}
        sequence = max((number for _, number in found), default=0)
        stored: list[event_pb2.Event] = []
        rows: list[dict[str, Any]] = []
        now = utcnow()
        for event in events:
            if event.id in known:
                continue
            known.add(event.id)
            event = storable_event(event)
            sequence += 1
            event.sequence = sequence
            rows.append(event_columns(event, sequence, now))
            stored.append(event)
        if rows:
            await self._session.execute(insert(EventRow), rows)
        return stored

    async def get(self, event_id: str, *, audience: Audience) -> event_pb2.Event | None:
        """The event with this id, None when there is none or `audience` may not see it."""
        row = await self._session.scalar(select(EventRow).where(EventRow.id == event_id, audience.where()))
        return row_to_event(row) if row else None

    async def query(
        self,
        flt: EventFilter,
        *,
        audience: Audience,
        limit: int,
        after_sequence: int = 0,
        before_sequence: int | None = None,
        descending: bool = False,
    ) -> list[event_pb2.Event]:
        """The events that match `flt` and that `audience` may see, in sequence order."""
        stmt = select(EventRow).where(audience.where())
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
