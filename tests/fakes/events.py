"""Events as the services publish them, for tests: typed agent events for the consumers of
godel.agent.events (the team service's task queue, members and budgets), and events of any type for
tests of the event plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Unpack

from godel.v1 import agent_events_pb2, agent_pb2, event_pb2
from godel_server.runtime.events import DATA_FIELDS, Envelope, custom_event, message_class, new_event


def agent_status(status: str) -> agent_pb2.AgentStatus.ValueType:
    """ "running" -> AGENT_STATUS_RUNNING."""
    return agent_pb2.AgentStatus.Value(f"AGENT_STATUS_{status.upper()}")


def spawned(agent: agent_pb2.Agent) -> event_pb2.Event:
    """`agent:spawn` of `agent`."""
    return new_event(
        agent_events_pb2.AgentSpawned(agent=agent),
        partition_key=agent.id,
        component="agent-service",
        agent_id=agent.id,
        team_id=agent.team_id,
    )


def moved(
    event_type: str, agent_id: str, status: str, team_id: str = "", **fields: object
) -> event_pb2.Event:
    """A lifecycle event (`agent:start`, `agent:error`, ...) that left the agent in `status`;
    `fields` are the ones its payload adds to the transition (e.g. final=True for `agent:error`)."""
    transition = agent_pb2.AgentTransition(agent_id=agent_id, to_status=agent_status(status), trigger="x")
    return new_event(
        message_class(event_type)(transition=transition, **fields),
        partition_key=agent_id,
        component="agent-service",
        agent_id=agent_id,
        team_id=team_id,
    )


def of_type(
    event_type: str,
    payload: dict[str, Any] | None = None,
    *,
    partition_key: str = "k",
    component: str = "test",
    **envelope: Unpack[Envelope],
) -> event_pb2.Event:
    """An event of `event_type`: an empty typed payload for a type of the services, else a client
    event with `payload`."""
    if event_type in DATA_FIELDS:
        return new_event(
            message_class(event_type)(), partition_key=partition_key, component=component, **envelope
        )
    return custom_event(
        event_type, payload or {}, partition_key=partition_key, component=component, **envelope
    )


@dataclass
class KafkaRecord:
    """What a consumer reads of one Kafka record (aiokafka's ConsumerRecord, in the fields used)."""

    value: bytes
    topic: str = "godel.agent.events"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"a"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
