"""Per-RPC authorization from `resource:action:scope` permissions."""

from __future__ import annotations

import pytest

from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import PermissionDeniedError
from godel_server.runtime.rbac import authorize, required_permission


def caller(role: str) -> Caller:
    return Caller(key_id="k", user_id="u", role=role, permissions=ROLES[role])


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("/godel.v1.AgentService/CreateAgent", ("agent", "create")),
        ("/godel.v1.AgentService/ListAgents", ("agent", "read")),
        ("/godel.v1.AgentService/StreamAgentLogs", ("agent", "read")),
        ("/godel.v1.AgentService/PauseAgent", ("agent", "update")),
        ("/godel.v1.AgentService/DeleteAgent", ("agent", "delete")),
        ("/godel.v1.EventService/PublishEvent", ("event", "create")),
        ("/godel.v1.ClusterService/UnregisterCluster", ("cluster", "delete")),
        ("/grpc.health.v1.Health/Check", None),
    ],
)
def test_methods_map_to_resource_and_action(method: str, expected: tuple[str, str] | None) -> None:
    assert required_permission(method) == expected


def test_roles() -> None:
    authorize(caller("admin"), "/godel.v1.AuthService/CreateApiKey")
    authorize(caller("viewer"), "/godel.v1.AgentService/ListAgents")
    authorize(caller("developer"), "/godel.v1.AgentService/CreateAgent")
    authorize(caller("operator"), "/godel.v1.ClusterService/RegisterCluster")
    with pytest.raises(PermissionDeniedError, match="may not create agent"):
        authorize(caller("viewer"), "/godel.v1.AgentService/CreateAgent")
    with pytest.raises(PermissionDeniedError):
        authorize(caller("developer"), "/godel.v1.AuthService/CreateApiKey")
    with pytest.raises(PermissionDeniedError):
        authorize(caller("developer"), "/godel.v1.ClusterService/RegisterCluster")
