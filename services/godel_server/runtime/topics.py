"""The Kafka topic catalogue: one topic per domain, keyed by aggregate id.

The names here are the catalogue's. On the broker every topic and consumer group of an installation
carries its GODEL_KAFKA_TOPIC_PREFIX (empty by default), so several installations (the clusters of a
federation on one machine, say) can share one broker: `kafka_name` is applied where Godel meets
Kafka (the outbox relay, the consumers, topic creation), nowhere else."""

from __future__ import annotations

import re

TOPIC_PREFIX = "godel."
# Characters Kafka allows in topic names; a prefix is at most MAX_PREFIX_LEN of them.
KAFKA_NAME_RE = re.compile(r"^[A-Za-z0-9._-]*$")
MAX_PREFIX_LEN = 100

_prefix = ""

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


def set_kafka_prefix(prefix: str) -> None:
    """Sets this process's GODEL_KAFKA_TOPIC_PREFIX (the service host does, once, at start)."""
    global _prefix
    if not valid_prefix(prefix):
        raise ValueError(f"a Kafka name prefix is at most {MAX_PREFIX_LEN} of [A-Za-z0-9._-], got {prefix!r}")
    _prefix = prefix


def valid_prefix(prefix: str) -> bool:
    return len(prefix) <= MAX_PREFIX_LEN and KAFKA_NAME_RE.match(prefix) is not None


def kafka_name(name: str) -> str:
    """The broker's name of a catalogue topic or a consumer group: the installation's prefix + name."""
    return _prefix + name
