"""``client.dead_letters``: one declaration of the three dead-letter RPCs, bound to each service
that keeps dead letters and checked against that service's contract."""

from __future__ import annotations

import pytest

from godel.v1 import auth_service_pb2
from godel_client import AsyncGodelClient, GodelClient
from godel_client.dead_letters import SERVICES, ServiceDeadLetters
from godel_client.methods import Sync

STUBS = {
    "agent": "AgentServiceStub",
    "team": "TeamServiceStub",
    "event": "EventServiceStub",
    "cluster": "SystemServiceStub",
}


def test_each_service_is_asked_for_its_own_dead_letters() -> None:
    assert set(SERVICES) == set(STUBS)
    with GodelClient("127.0.0.1:1", "godel_sk_x") as client:
        for service, stub in STUBS.items():
            assert type(client.dead_letters.of(service)._stub).__name__ == stub
        with pytest.raises(ValueError, match="service must be one of agent, team, event, cluster"):
            client.dead_letters.of("workflow")


async def test_the_async_client_has_them_too() -> None:
    async with AsyncGodelClient("127.0.0.1:1", "godel_sk_x") as client:
        assert type(client.dead_letters.of("cluster")._stub).__name__ == "SystemServiceStub"


def test_a_service_without_the_rpcs_cannot_be_declared() -> None:
    with pytest.raises(TypeError, match=r"godel\.v1\.AuthService has no RPC ListDeadLetters"):

        class _Auth(ServiceDeadLetters[Sync]):
            SERVICE = auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"]
