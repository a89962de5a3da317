"""WebSocket protocol messages, subscribe options and partition naming, without any server."""

from __future__ import annotations

import json
from datetime import date

import pytest

from godel.v1 import agent_events_pb2, agent_pb2, event_service_pb2
from godel_server.event import partitions
from godel_server.event import ws_protocol as wire
from godel_server.event.commands import CommandFailed, CommandForwarder
from godel_server.event.hub import BLOCK, DROP, SLIDING
from godel_server.event.options import from_grpc, from_payload
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.errors import ValidationError
from godel_server.runtime.events import custom_event, new_event


def test_parse_accepts_spec_messages_and_names_bad_fields() -> None:
    msg = wire.parse(json.dumps({"id": "m1", "type": "ping", "timestamp": 1, "payload": {}}))
    assert (msg.id, msg.type, msg.payload) == ("m1", "ping", {})
    with pytest.raises(wire.ProtocolError) as bad:
        wire.parse(json.dumps({"id": "m2", "type": "launch", "payload": []}))
    assert bad.value.correlation_id == "m2"
    assert {v.field for v in bad.value.violations} == {"type", "payload"}
    with pytest.raises(wire.ProtocolError):
        wire.parse("{not json")
    with pytest.raises(wire.ProtocolError):
        wire.parse("[1, 2]")


def test_event_message_carries_the_payload_as_data_and_the_sequence() -> None:
    transition = agent_pb2.AgentTransition(agent_id="a", to_status=agent_pb2.AGENT_STATUS_COMPLETED)
    data = agent_events_pb2.AgentCompleted(
        transition=transition, agent=agent_pb2.Agent(id="a", result="done")
    )
    event = new_event(data, partition_key="a", component="test")
    event.sequence = 42
    doc = json.loads(wire.event_message(event, "sub-1"))
    assert doc["type"] == "event" and doc["id"] == "evt-42"
    # The typed payload, in protobuf JSON, is `data`; it is not repeated under its oneof name.
    assert doc["payload"]["data"] == {
        "transition": {"agentId": "a", "toStatus": "AGENT_STATUS_COMPLETED"},
        "agent": {"id": "a", "result": "done"},
    }
    assert "agentCompleted" not in doc["payload"] and "payload" not in doc["payload"]
    assert doc["payload"]["sequence"] == 42 and doc["payload"]["type"] == "agent:complete"
    # A client event's free-form payload is `data` as it was published.
    custom = json.loads(
        wire.event_message(custom_event("deploy:done", {"ok": True}, partition_key="k", component="c"), "s")
    )
    assert custom["payload"]["data"] == {"ok": True} and "payload" not in custom["payload"]
    assert doc["metadata"] == {"subscriptionId": "sub-1", "sequence": 42}
    assert isinstance(doc["timestamp"], int)


def test_responses_are_correlated() -> None:
    ok = json.loads(wire.response("m9", {"x": 1}))
    assert ok == {**ok, "id": "m9", "type": "response", "payload": {"success": True, "data": {"x": 1}}}
    assert ok["metadata"] == {"correlationId": "m9"}
    failed = json.loads(wire.failed_response("m9", "NOT_FOUND", "gone"))
    assert failed["payload"] == {"success": False, "error": {"code": "NOT_FOUND", "message": "gone"}}


def test_subscribe_payload_options() -> None:
    opts = from_payload(
        {
            "patterns": ["agent:*", "team:complete"],
            "filters": {"teamId": "t1", "correlationId": "c"},
            "backpressure": "drop",
            "bufferSize": 10,
            "fromSequence": 5,
            "heartbeatSeconds": 2,
            "subscriptionName": "dash.board-1",
        }
    )
    assert opts.filter.types == ("agent:*", "team:complete")
    assert (opts.filter.team_id, opts.filter.correlation_id) == ("t1", "c")
    assert (opts.strategy, opts.buffer_size, opts.from_sequence, opts.heartbeat_seconds) == (DROP, 10, 5, 2.0)
    assert opts.name == "dash.board-1"
    assert from_payload({}).strategy == SLIDING and from_payload({}).from_sequence is None
    with pytest.raises(ValidationError) as bad:
        from_payload(
            {"patterns": ["Bad"], "filters": {"colour": "x"}, "bufferSize": "many", "subscriptionName": "a b"}
        )
    assert {v.field for v in bad.value.violations} == {
        "payload.patterns[0]",
        "payload.filters.colour",
        "payload.bufferSize",
        "payload.subscriptionName",
    }


def test_grpc_options_and_validation() -> None:
    opts = from_grpc(
        event_service_pb2.SubscribeEventsRequest(
            pattern=["workflow:step:*"],
            backpressure=event_service_pb2.BACKPRESSURE_STRATEGY_BLOCK,
            source_component="agent-service",
        )
    )
    assert opts.strategy == BLOCK and opts.filter.source_component == "agent-service"
    with pytest.raises(ValidationError) as bad:
        from_grpc(event_service_pb2.SubscribeEventsRequest(buffer_size=-1, subscription_name="x y"))
    assert {v.field for v in bad.value.violations} == {"buffer_size", "subscription_name"}


def test_partition_names_and_bounds() -> None:
    day = date(2026, 1, 31)
    assert partitions.day_partition(day) == "events_p20260131"
    assert partitions.upper_bound("events_p20260131") == date(2026, 2, 1)
    assert partitions.upper_bound("events_upto_20260131") == date(2026, 1, 31)
    assert partitions.upper_bound("something_else") is None
    assert "FROM ('2026-01-31 00:00:00+00') TO ('2026-02-01 00:00:00+00')" in partitions.create_day_sql(day)


async def test_unknown_or_malformed_commands_are_refused_before_any_call() -> None:
    forwarder = CommandForwarder("127.0.0.1:1", TlsSettings())
    try:
        with pytest.raises(CommandFailed) as unknown:
            await forwarder.run({"command": "agent:explode", "agentId": "x"}, "key", "r1")
        assert unknown.value.code == "INVALID_ARGUMENT"
        assert [v.field for v in unknown.value.violations] == ["payload.command"]
        with pytest.raises(CommandFailed) as bad_id:
            await forwarder.run({"command": "agent:pause", "agentId": "nope"}, "key", "r2")
        assert [v.field for v in bad_id.value.violations] == ["payload.agentId"]
    finally:
        await forwarder.close()
