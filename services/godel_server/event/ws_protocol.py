"""Messages of the WebSocket protocol (spec §3.2): JSON objects `{id, type, timestamp, payload,
metadata?}`. Parsing of client messages and building of server messages; no I/O here."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from godel.v1 import event_pb2
from godel_server.runtime.errors import FieldViolation
from godel_server.runtime.events import payload_dict

PROTOCOL = "godel-events-v1"
CLIENT_TYPES = ("subscribe", "unsubscribe", "command", "ping", "pong")
MAX_MESSAGE_BYTES = 256 * 1024
# Close codes: the credential is missing, refused or revoked; the role may not read events.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class ProtocolError(Exception):
    """A client message that cannot be handled; answered with an in-band `error` message."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        correlation_id: str = "",
        violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.correlation_id = correlation_id
        self.violations = list(violations)


@dataclass(frozen=True)
class ClientMessage:
    id: str
    type: str
    payload: dict[str, Any]


def parse(text: str | bytes) -> ClientMessage:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("INVALID_ARGUMENT", "message is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("INVALID_ARGUMENT", "message must be a JSON object")
    raw_id = doc.get("id", "")
    msg_id = raw_id if isinstance(raw_id, str) else ""
    violations: list[FieldViolation] = []
    if not isinstance(raw_id, str) or not raw_id or len(raw_id) > 200:
        violations.append(FieldViolation("id", "must be a non-empty string of at most 200 characters"))
    kind = doc.get("type")
    if kind not in CLIENT_TYPES:
        violations.append(FieldViolation("type", f"must be one of {', '.join(CLIENT_TYPES)}"))
    payload = doc.get("payload", {})
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        violations.append(FieldViolation("payload", "must be an object"))
    if violations:
        raise ProtocolError(
            "INVALID_ARGUMENT", "invalid message", correlation_id=msg_id, violations=violations
        )
    assert isinstance(kind, str) and isinstance(payload, dict)
    return ClientMessage(id=msg_id, type=kind, payload=payload)


def _now_ms() -> int:
    return int(time.time() * 1000)


def message(
    kind: str,
    payload: Mapping[str, Any],
    *,
    msg_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> str:
    doc: dict[str, Any] = {
        "id": msg_id or f"srv-{uuid.uuid4().hex[:16]}",
        "type": kind,
        "timestamp": _now_ms(),
        "payload": dict(payload),
    }
    if metadata:
        doc["metadata"] = dict(metadata)
    return json.dumps(doc, separators=(",", ":"))


def event_message(event: event_pb2.Event, subscription_id: str) -> str:
    """An `event` message: the stored event as JSON, its payload under `data` as in spec §3.2. For an
    event of a Godel service, `data` is its typed payload (the message its `type` names, e.g.
    AgentSpawned for `agent:spawn`) in protobuf JSON; for a client event, the object it was published
    with."""
    body = json_format.MessageToDict(event)
    body.pop("payload", None)
    if field := event.WhichOneof("data"):
        body.pop(event.DESCRIPTOR.fields_by_name[field].json_name, None)
    body["data"] = payload_dict(event)
    body["sequence"] = event.sequence
    return message(
        "event",
        body,
        msg_id=f"evt-{event.sequence}",
        metadata={"subscriptionId": subscription_id, "sequence": event.sequence},
    )


def response(correlation_id: str, data: Mapping[str, Any]) -> str:
    return message(
        "response",
        {"success": True, "data": dict(data)},
        msg_id=correlation_id,
        metadata={"correlationId": correlation_id},
    )


def failed_response(
    correlation_id: str, code: str, text: str, violations: Sequence[FieldViolation] = ()
) -> str:
    error: dict[str, Any] = {"code": code, "message": text}
    if violations:
        error["details"] = [{"field": v.field, "description": v.description} for v in violations]
    return message(
        "response",
        {"success": False, "error": error},
        msg_id=correlation_id,
        metadata={"correlationId": correlation_id},
    )


def error(
    code: str, text: str, *, correlation_id: str = "", violations: Sequence[FieldViolation] = ()
) -> str:
    payload: dict[str, Any] = {"code": code, "message": text}
    if violations:
        payload["details"] = [{"field": v.field, "description": v.description} for v in violations]
    return message("error", payload, metadata={"correlationId": correlation_id} if correlation_id else None)


def heartbeat(last_sequence: int, subscription_id: str) -> str:
    """Server keep-alive: a `ping` the client may answer with `pong`."""
    return message("ping", {"lastSequence": last_sequence}, metadata={"subscriptionId": subscription_id})
