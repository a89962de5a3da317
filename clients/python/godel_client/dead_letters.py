"""``client.dead_letters``: records a service quarantined (its outbox relay could not send them or
one of its consumers could not handle them). Each service keeps its own and serves the same three
RPCs for them (the cluster service's on SystemService), so each call names the service: "agent",
"team", "event" or "cluster"."""

from __future__ import annotations

from typing import Any, Generic

from godel.v1 import (
    agent_service_pb2,
    dead_letter_pb2,
    event_service_pb2,
    system_service_pb2,
    team_service_pb2,
)
from godel_client.methods import Mode, SubClient, paged, unary
from godel_client.service import AsyncConnection, Connection


def _list(source: str = "", page_size: int = 0) -> dead_letter_pb2.ListDeadLettersRequest:
    """The service's dead letters, oldest first; ``source``: only "outbox" or one consumer group."""
    return dead_letter_pb2.ListDeadLettersRequest(source=source, page_size=page_size)


def _retry(id: int) -> dead_letter_pb2.RetryDeadLetterRequest:
    """Sends or handles it again; raises FailedPreconditionError (it stays) when that fails."""
    return dead_letter_pb2.RetryDeadLetterRequest(id=id)


def _delete(id: int) -> dead_letter_pb2.DeleteDeadLetterRequest:
    """Discards it."""
    return dead_letter_pb2.DeleteDeadLetterRequest(id=id)


class ServiceDeadLetters(SubClient[Mode]):
    """The dead letters of one service. Subclasses name only their ``SERVICE``; the methods are
    checked against it again when each subclass is made (every service declares the same RPCs)."""

    SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"]

    list = paged(
        "ListDeadLetters", _list, dead_letter_pb2.ListDeadLettersResponse, lambda page: page.dead_letters
    )
    retry = unary("RetryDeadLetter", _retry, dead_letter_pb2.RetryDeadLetterResponse)
    delete = unary("DeleteDeadLetter", _delete, dead_letter_pb2.DeleteDeadLetterResponse)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("list", "retry", "delete"):
            ServiceDeadLetters.__dict__[name].__set_name__(cls, name)


class _Team(ServiceDeadLetters[Mode]):
    SERVICE = team_service_pb2.DESCRIPTOR.services_by_name["TeamService"]


class _Event(ServiceDeadLetters[Mode]):
    SERVICE = event_service_pb2.DESCRIPTOR.services_by_name["EventService"]


class _Cluster(ServiceDeadLetters[Mode]):
    SERVICE = system_service_pb2.DESCRIPTOR.services_by_name["SystemService"]


SERVICES = ("agent", "team", "event", "cluster")


class DeadLetters(Generic[Mode]):
    """List, retry and delete the dead letters of each service (operators and admins):
    ``client.dead_letters.of("event").list()``."""

    def __init__(self, connection: Connection | AsyncConnection) -> None:
        self._services: dict[str, ServiceDeadLetters[Mode]] = {
            "agent": ServiceDeadLetters(connection),
            "team": _Team(connection),
            "event": _Event(connection),
            "cluster": _Cluster(connection),
        }

    def of(self, service: str) -> ServiceDeadLetters[Mode]:
        if service not in self._services:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}, got {service!r}")
        return self._services[service]
