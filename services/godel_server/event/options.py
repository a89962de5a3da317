"""What a subscriber asks for, independent of the transport (gRPC, Server-Sent Events, WebSocket):
type patterns, filters, backpressure, heartbeats, replay start and durable name. Validation names
the offending field in the transport's own spelling."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from godel.v1 import event_service_pb2
from godel_server.event.hub import SLIDING
from godel_server.event.store import EventFilter, attribute_filters
from godel_server.runtime.enums import ProtoEnum
from godel_server.runtime.events import EVENT_TYPE_RE
from godel_server.runtime.validation import Violations

DEFAULT_BUFFER = 1000
MAX_BUFFER = 100_000
DEFAULT_HEARTBEAT_SECONDS = 15.0
MAX_PATTERNS = 50
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")

# drop, block, sliding (the hub's strategies); an unset one slides.
BACKPRESSURE = ProtoEnum(event_service_pb2.BackpressureStrategy, str)


@dataclass(frozen=True)
class SubscribeOptions:
    filter: EventFilter
    strategy: str = SLIDING
    buffer_size: int = DEFAULT_BUFFER
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    # Replay stored events with a greater sequence first; None = live only.
    from_sequence: int | None = None
    # Durable subscription name ("" = not durable).
    name: str = ""


def check_patterns(field: str, patterns: Sequence[str], v: Violations) -> None:
    if len(patterns) > MAX_PATTERNS:
        v.add(field, f"at most {MAX_PATTERNS} patterns")
    for i, p in enumerate(patterns):
        if p != "*" and not EVENT_TYPE_RE.match(p):
            v.add(f"{field}[{i}]", "must be a namespaced type like `agent:start` or a pattern like `agent:*`")


def check_name(field: str, name: str, v: Violations) -> None:
    if name and not NAME_RE.match(name):
        v.add(field, "must be 1-100 characters of letters, digits, `.`, `_`, `:` or `-`")


def from_grpc(request: event_service_pb2.SubscribeEventsRequest) -> SubscribeOptions:
    v = Violations()
    check_patterns("pattern", list(request.pattern), v)
    if request.buffer_size < 0 or request.buffer_size > MAX_BUFFER:
        v.add("buffer_size", f"must be between 0 (default {DEFAULT_BUFFER}) and {MAX_BUFFER}")
    if request.heartbeat_seconds < 0:
        v.add("heartbeat_seconds", "must not be negative")
    if request.HasField("from_sequence") and request.from_sequence < 0:
        v.add("from_sequence", "must not be negative")
    check_name("subscription_name", request.subscription_name, v)
    v.raise_if_any()
    return SubscribeOptions(
        filter=EventFilter(
            types=tuple(request.pattern),
            **attribute_filters(request),
        ),
        strategy=BACKPRESSURE.get(request.backpressure) or SLIDING,
        buffer_size=request.buffer_size or DEFAULT_BUFFER,
        heartbeat_seconds=float(request.heartbeat_seconds or DEFAULT_HEARTBEAT_SECONDS),
        from_sequence=request.from_sequence if request.HasField("from_sequence") else None,
        name=request.subscription_name,
    )


FILTER_KEYS = {
    "agentId": "agent_id",
    "teamId": "team_id",
    "workflowId": "workflow_id",
    "correlationId": "correlation_id",
    "traceId": "trace_id",
    "sourceComponent": "source_component",
}


def _string(payload: Mapping[str, Any], key: str, field: str, v: Violations) -> str:
    value = payload.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        v.add(field, "must be a string")
        return ""
    return value


def _integer(payload: Mapping[str, Any], key: str, field: str, v: Violations) -> int | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        v.add(field, "must be an integer")
        return None
    try:
        return int(value)
    except ValueError:
        v.add(field, "must be an integer")
        return None


def from_payload(payload: Mapping[str, Any]) -> SubscribeOptions:
    """Options of a WebSocket `subscribe` message (spec §3.2), fields named `payload.<key>`."""
    v = Violations()
    raw_patterns = payload.get("patterns", payload.get("pattern", []))
    if isinstance(raw_patterns, str):
        raw_patterns = [raw_patterns]
    patterns: list[str] = []
    if not isinstance(raw_patterns, list) or not all(isinstance(p, str) for p in raw_patterns):
        v.add("payload.patterns", "must be a list of strings")
    else:
        patterns = raw_patterns
        check_patterns("payload.patterns", patterns, v)
    raw_filters = payload.get("filters") or {}
    filters: dict[str, str] = {}
    if not isinstance(raw_filters, dict):
        v.add("payload.filters", "must be an object")
    else:
        for key in raw_filters:
            if key not in FILTER_KEYS:
                v.add(f"payload.filters.{key}", f"unknown filter; expected one of {', '.join(FILTER_KEYS)}")
        for key, attr in FILTER_KEYS.items():
            filters[attr] = _string(raw_filters, key, f"payload.filters.{key}", v)
    strategy = SLIDING
    raw_strategy = payload.get("backpressure")
    if raw_strategy is not None:
        named = BACKPRESSURE.parse(raw_strategy) if isinstance(raw_strategy, str) else None
        if named is None:
            v.add("payload.backpressure", f"must be one of {', '.join(BACKPRESSURE.names)}")
        else:
            strategy = named
    buffer_size = _integer(payload, "bufferSize", "payload.bufferSize", v)
    if buffer_size is not None and not 0 <= buffer_size <= MAX_BUFFER:
        v.add("payload.bufferSize", f"must be between 0 (default {DEFAULT_BUFFER}) and {MAX_BUFFER}")
    heartbeat = _integer(payload, "heartbeatSeconds", "payload.heartbeatSeconds", v)
    if heartbeat is not None and heartbeat < 0:
        v.add("payload.heartbeatSeconds", "must not be negative")
    from_sequence = _integer(payload, "fromSequence", "payload.fromSequence", v)
    if from_sequence is not None and from_sequence < 0:
        v.add("payload.fromSequence", "must not be negative")
    name = _string(payload, "subscriptionName", "payload.subscriptionName", v)
    check_name("payload.subscriptionName", name, v)
    v.raise_if_any()
    return SubscribeOptions(
        filter=EventFilter(
            types=tuple(patterns),
            agent_id=filters.get("agent_id", ""),
            team_id=filters.get("team_id", ""),
            workflow_id=filters.get("workflow_id", ""),
            correlation_id=filters.get("correlation_id", ""),
            trace_id=filters.get("trace_id", ""),
            source_component=filters.get("source_component", ""),
        ),
        strategy=strategy,
        buffer_size=buffer_size or DEFAULT_BUFFER,
        heartbeat_seconds=float(heartbeat or DEFAULT_HEARTBEAT_SECONDS),
        from_sequence=from_sequence,
        name=name,
    )
