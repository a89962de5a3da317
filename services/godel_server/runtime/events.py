"""Building `godel.v1.Event` envelopes and their Kafka representation."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from godel.v1 import event_pb2
from godel_server import __version__
from godel_server.runtime.context import correlation_id_var, trace_id_var
from godel_server.runtime.topics import topic_for

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_-]*(:[a-z0-9_*-][a-z0-9_-]*)+$|^[a-z][a-z0-9_-]*:\*$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts.FromDatetime(value)
    return ts


def set_times(message: Message, **times: datetime | None) -> None:
    """Sets the Timestamp fields named by the keywords; None leaves a field unset."""
    for name, value in times.items():
        ts = to_timestamp(value)
        if ts is not None:
            getattr(message, name).CopyFrom(ts)


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


def new_event(
    event_type: str,
    payload: Mapping[str, Any],
    *,
    partition_key: str,
    component: str,
    instance: str = "",
    agent_id: str = "",
    team_id: str = "",
    workflow_id: str = "",
    user_id: str = "",
    causation_id: str = "",
    event_id: str | None = None,
) -> event_pb2.Event:
    """An event stamped with the current request's correlation and trace ids."""
    event = event_pb2.Event(
        id=event_id or str(uuid.uuid4()),
        type=event_type,
        source=event_pb2.EventSource(component=component, instance=instance, version=__version__),
        payload=to_struct(payload),
        metadata=event_pb2.EventMetadata(
            correlation_id=correlation_id_var.get(),
            causation_id=causation_id,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            workflow_id=workflow_id,
            trace_id=trace_id_var.get(),
        ),
        partition_key=partition_key,
    )
    event.timestamp.GetCurrentTime()
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
        ("ce_time", event.timestamp.ToJsonString().encode()),
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
