"""The Kafka topic catalogue: one topic per domain, keyed by aggregate id."""

from __future__ import annotations

TOPIC_PREFIX = "godel."

DOMAIN_TOPICS: dict[str, str] = {
    "agent": "godel.agent.events",
    "session": "godel.agent.events",
    "team": "godel.team.events",
    "workflow": "godel.workflow.events",
    "task": "godel.task.events",
    "budget": "godel.budget.events",
    "cluster": "godel.cluster.events",
    "system": "godel.system.events",
    "safety": "godel.system.events",
    "scaling": "godel.system.events",
}

CUSTOM_TOPIC = "godel.custom.events"

# Event topics: facts, stored by the event service and public to any Kafka client.
ALL_TOPICS: tuple[str, ...] = tuple(sorted({*DOMAIN_TOPICS.values(), CUSTOM_TOPIC}))

# Command topics: work items between replicas of one service, not stored as events.
RUN_TOPIC = "godel.agent.runs"
COMMAND_TOPICS: dict[str, str] = {"run": RUN_TOPIC}

# Clients may not publish into these namespaces: their events and commands come from the services.
RESERVED_NAMESPACES: frozenset[str] = frozenset({*DOMAIN_TOPICS, *COMMAND_TOPICS})

KAFKA_TOPICS: tuple[str, ...] = (*ALL_TOPICS, *sorted(set(COMMAND_TOPICS.values())))


def topic_for(event_type: str) -> str:
    """Topic of an event type: its namespace's domain topic, else the custom-events topic."""
    namespace = event_type.split(":", 1)[0]
    return COMMAND_TOPICS.get(namespace) or DOMAIN_TOPICS.get(namespace, CUSTOM_TOPIC)
