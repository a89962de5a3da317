"""Building `godel.v1.Event` envelopes and their Kafka representation, and the one decoder of their
typed payloads. Which payload message goes with which event type is read from the contract: the
`godel.v1.event_type` option of each message in the `Event.data` oneof."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypedDict, Unpack

from google.protobuf import json_format, message_factory, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from godel.v1 import event_options_pb2, event_pb2
from godel_server import __version__
from godel_server.runtime.context import correlation_id_var, trace_id_var
from godel_server.runtime.ids import new_id
from godel_server.runtime.ownership import NO_OWNER, Owner
from godel_server.runtime.topics import topic_for

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z0-9_*-][a-z0-9_-]*)+$|^[a-z][a-z0-9_-]*:\*$")


def utcnow() -> datetime:
    return datetime.now(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stamp(ts: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Sets `ts` to `value` (naive: UTC), as Timestamp.FromDatetime does, at a third of its cost
    (it goes through a time tuple and calendar.timegm; a list of agents sets thousands)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    since = value - EPOCH  # days may be negative; seconds and microseconds never are
    ts.seconds = since.days * 86400 + since.seconds
    ts.nanos = since.microseconds * 1000


@lru_cache(maxsize=4)
def _whole_seconds(seconds: int) -> str:
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def rfc3339(ts: timestamp_pb2.Timestamp) -> str:
    """`ts` as Timestamp.ToJsonString writes it (UTC, "Z", 0, 3, 6 or 9 fraction digits), at a
    quarter of its cost (an event's CloudEvents `ce_time` header; events come many per second)."""
    seconds, nanos = ts.seconds, ts.nanos
    text = _whole_seconds(seconds)
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1_000 == 0:
        return f"{text}.{nanos // 1_000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    stamp(ts, value)
    return ts


def set_times(message: Message, **times: datetime | None) -> None:
    """Sets the Timestamp fields named by the keywords; None leaves a field unset."""
    for name, value in times.items():
        if value is not None:
            stamp(getattr(message, name), value)


def set_structs(message: Message, **values: Mapping[str, Any] | None) -> None:
    """Sets the Struct fields named by the keywords; empty or None leaves a field unset."""
    for name, value in values.items():
        if value:
            getattr(message, name).CopyFrom(to_struct(value))


def to_struct(data: Mapping[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if data:
        s.update(dict(data))
    return s


def struct_to_dict(s: struct_pb2.Struct | None) -> dict[str, Any]:
    if s is None:
        return {}
    return json_format.MessageToDict(s)


def _data_fields() -> dict[str, FieldDescriptor]:
    """Event type -> its field in the `Event.data` oneof, from each message's `event_type` option."""
    fields: dict[str, FieldDescriptor] = {}
    for field in event_pb2.Event.DESCRIPTOR.oneofs_by_name["data"].fields:
        message = field.message_type
        event_type = message.GetOptions().Extensions[event_options_pb2.event_type] if message else ""
        if not event_type or event_type in fields:
            raise RuntimeError(f"Event.{field.name}: its message needs a unique godel.v1.event_type option")
        fields[event_type] = field
    return fields


DATA_FIELDS: Mapping[str, FieldDescriptor] = _data_fields()
_FIELD_OF_MESSAGE: Mapping[str, str] = {
    f.message_type.full_name: f.name for f in DATA_FIELDS.values() if f.message_type
}


def message_class(event_type: str) -> type[Message]:
    """The payload message class of a typed event type (KeyError for any other type)."""
    descriptor = DATA_FIELDS[event_type].message_type
    assert descriptor is not None
    return message_factory.GetMessageClass(descriptor)


def event_type_of(data: Message) -> str:
    """The event type a payload message is published as (its `godel.v1.event_type` option)."""
    return str(data.DESCRIPTOR.GetOptions().Extensions[event_options_pb2.event_type])


def event_data(event: event_pb2.Event) -> Message | None:
    """The typed payload of an event of a Godel service, the message its type names. None for client
    events (free-form `payload`), for events stored before payloads were typed, and for an event
    whose data does not match its type."""
    name = event.WhichOneof("data")
    field = DATA_FIELDS.get(event.type)
    if name is None or field is None or field.name != name:
        return None
    data: Message = getattr(event, name)
    return data


def payload_dict(event: event_pb2.Event) -> dict[str, Any]:
    """The event's payload as a JSON object: its typed data, else its free-form payload."""
    data = event_data(event)
    if data is not None:
        return json_format.MessageToDict(data)
    return struct_to_dict(event.payload) if event.HasField("payload") else {}


class Envelope(TypedDict, total=False):
    """The optional envelope fields of an event: its emitter instance, ids, causation, and the
    owner of what it is about (runtime/ownership.py; reads of events are filtered by it)."""

    instance: str
    agent_id: str
    team_id: str
    workflow_id: str
    user_id: str
    causation_id: str
    event_id: str | None
    owner: Owner


def new_event(
    data: Message, *, partition_key: str, component: str, **envelope: Unpack[Envelope]
) -> event_pb2.Event:
    """An event of a Godel service: its type is the one `data` is published as (e.g. AgentSpawned ->
    `agent:spawn`), stamped with the current request's correlation and trace ids."""
    field = _FIELD_OF_MESSAGE.get(data.DESCRIPTOR.full_name)
    if field is None:
        raise TypeError(f"{data.DESCRIPTOR.full_name} is not a payload of Event.data")
    event = _envelope(event_type_of(data), partition_key, component, envelope)
    getattr(event, field).CopyFrom(data)
    return event


def custom_event(
    event_type: str,
    payload: Mapping[str, Any] | struct_pb2.Struct,
    *,
    partition_key: str,
    component: str,
    **envelope: Unpack[Envelope],
) -> event_pb2.Event:
    """An event with a free-form payload (client events of PublishEvent). A type that has a typed
    payload cannot be sent this way: each type has one shape."""
    if event_type in DATA_FIELDS:
        raise ValueError(f"{event_type} has a typed payload: build it with new_event")
    event = _envelope(event_type, partition_key, component, envelope)
    event.payload.CopyFrom(payload if isinstance(payload, struct_pb2.Struct) else to_struct(payload))
    return event


def _envelope(event_type: str, partition_key: str, component: str, envelope: Envelope) -> event_pb2.Event:
    owner = envelope.get("owner", NO_OWNER)
    event = event_pb2.Event(
        id=envelope.get("event_id") or new_id(),
        type=event_type,
        source=event_pb2.EventSource(
            component=component, instance=envelope.get("instance", ""), version=__version__
        ),
        metadata=event_pb2.EventMetadata(
            correlation_id=correlation_id_var.get(),
            causation_id=envelope.get("causation_id", ""),
            user_id=envelope.get("user_id", ""),
            agent_id=envelope.get("agent_id", ""),
            team_id=envelope.get("team_id", ""),
            workflow_id=envelope.get("workflow_id", ""),
            trace_id=trace_id_var.get(),
            owner_user_id=owner.user_id or "",
            owner_team_id=(owner.team_id or "") if owner.user_id else "",
        ),
        partition_key=partition_key,
    )
    event.timestamp.seconds, event.timestamp.nanos = divmod(time.time_ns(), 1_000_000_000)
    return event


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]


def to_kafka_record(event: event_pb2.Event) -> KafkaRecord:
    """Protobuf binary value, aggregate-id key, type and trace context (CloudEvents ce_*) in headers."""
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.id.encode()),
        ("ce_type", event.type.encode()),
        ("ce_source", f"godel/{event.source.component}".encode()),
        ("ce_time", rfc3339(event.timestamp).encode()),
        ("content-type", b"application/protobuf; messageType=godel.v1.Event"),
    ]
    if event.metadata.trace_id:
        headers.append(("trace_id", event.metadata.trace_id.encode()))
    if event.metadata.correlation_id:
        headers.append(("correlation_id", event.metadata.correlation_id.encode()))
    return KafkaRecord(
        topic=topic_for(event.type),
        key=event.partition_key or event.id,
        value=event.SerializeToString(),
        headers=headers,
    )


def pattern_matches(pattern: str, event_type: str) -> bool:
    """`agent:*` matches `agent:start` and `agent:step:x`; `*` alone matches everything."""
    if pattern in ("*", ""):
        return True
    if pattern.endswith(":*"):
        return event_type.startswith(pattern[:-1])
    if "*" in pattern:
        regex = "^" + re.escape(pattern).replace(r"\*", "[^:]+") + "$"
        return re.match(regex, event_type) is not None
    return pattern == event_type
