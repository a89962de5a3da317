"""Typed event payloads: the event type <-> payload message mapping comes from the contract (the
`godel.v1.event_type` option of each message in `Event.data`), and the one decoder reads it."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2

from godel.v1 import agent_events_pb2, agent_pb2, budget_events_pb2, event_options_pb2, event_pb2
from godel_server.agent.lifecycle import EVENTS
from godel_server.agent.models import AgentRow
from godel_server.agent.state import transition_data
from godel_server.runtime.events import (
    DATA_FIELDS,
    custom_event,
    event_data,
    event_type_of,
    message_class,
    new_event,
    payload_dict,
)
from godel_server.runtime.topics import CUSTOM_TOPIC, RESERVED_NAMESPACES, topic_for


def test_every_payload_message_names_one_event_type_of_a_service_namespace() -> None:
    oneof = event_pb2.Event.DESCRIPTOR.oneofs_by_name["data"]
    assert len(DATA_FIELDS) == len(oneof.fields) > 40
    for event_type, field in DATA_FIELDS.items():
        assert field.containing_oneof is oneof and field.message_type is not None
        assert field.message_type.GetOptions().Extensions[event_options_pb2.event_type] == event_type
        # Service events go to their domain's topic, and clients cannot publish into it.
        assert event_type.split(":", 1)[0] in RESERVED_NAMESPACES
        assert topic_for(event_type) != CUSTOM_TOPIC
        assert message_class(event_type).DESCRIPTOR is field.message_type


def test_new_event_takes_its_type_from_the_message() -> None:
    spawned = agent_events_pb2.AgentSpawned(agent=agent_pb2.Agent(id="a-1", task="t"))
    event = new_event(spawned, partition_key="a-1", component="agent-service", agent_id="a-1")
    assert event.type == "agent:spawn" == event_type_of(spawned)
    assert event.WhichOneof("data") == "agent_spawned" and not event.HasField("payload")
    assert event_data(event) == spawned
    assert payload_dict(event) == {"agent": {"id": "a-1", "task": "t"}}
    with pytest.raises(TypeError, match="not a payload"):
        new_event(agent_pb2.Agent(id="a-1"), partition_key="a-1", component="agent-service")


def test_one_shape_per_type_client_events_stay_free_form() -> None:
    with pytest.raises(ValueError, match="typed payload"):
        custom_event("budget:warning", {"agentId": "a"}, partition_key="a", component="x")
    event = custom_event("deploy:done", {"ok": True}, partition_key="k", component="ci")
    assert event.type == "deploy:done" and event.WhichOneof("data") is None
    assert event_data(event) is None and payload_dict(event) == {"ok": True}


def test_the_decoder_ignores_old_and_mismatched_payloads() -> None:
    # An event stored before payloads were typed: a service type with a Struct payload.
    old = event_pb2.Event(id="e", type="agent:delete", payload=struct_pb2.Struct())
    old.payload.update({"agentId": "a", "status": "running"})
    assert event_data(old) is None and payload_dict(old) == {"agentId": "a", "status": "running"}
    # Data that is not the message its type names is not trusted.
    wrong = event_pb2.Event(type="budget:exceeded", budget_warning=budget_events_pb2.BudgetWarning())
    assert event_data(wrong) is None


def test_every_lifecycle_transition_event_carries_its_transition() -> None:
    row = AgentRow(
        id="a-1",
        task="t",
        model="m",
        status="completed",
        lifecycle_state="completed",
        session_id="s-1",
        budget_consumed=0.25,
        version=3,
        config={},
        commits=["abc"],
        meta={},
    )
    transition = agent_pb2.AgentTransition(agent_id="a-1", to_status=agent_pb2.AGENT_STATUS_COMPLETED)
    for event_type in sorted(set(EVENTS.values())):
        data = transition_data(event_type, row, transition, paused_seconds=1.5)
        assert event_type_of(data) == event_type
        field = data.DESCRIPTOR.fields_by_name["transition"]  # every one of them has it
        assert getattr(data, field.name) == transition
    resumed = transition_data("agent:resume", row, transition, paused_seconds=1.5)
    assert resumed == agent_events_pb2.AgentResumed(
        transition=transition, session_id="s-1", paused_seconds=1.5
    )
    completed = transition_data("agent:complete", row, transition, paused_seconds=0)
    assert isinstance(completed, agent_events_pb2.AgentCompleted) and list(completed.agent.commits) == ["abc"]
    failed = transition_data("agent:error", row, transition, paused_seconds=0)
    assert failed == agent_events_pb2.AgentFailed(transition=transition, final=False, budget_consumed=0.25)
