"""Access rules come from the contract: every RPC declares `(godel.v1.access)`, authorization is
derived from it, and whatever declares nothing is refused."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2

from godel.v1 import access_pb2
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import PermissionDeniedError
from godel_server.runtime.rbac import (
    API_SERVICES,
    RULES,
    api_methods,
    authorize,
    declared_rule,
    grants,
    is_public,
    method_path,
    rule_of,
)
from tests.contract import contract_methods

SCOPE_ORDER = ("own", "team", "all")


def caller(role: str) -> Caller:
    return Caller(key_id="k", user_id="u", role=role, permissions=ROLES[role])


def allowed(role: str, method: str) -> bool:
    try:
        authorize(caller(role), method)
    except PermissionDeniedError:
        return False
    return True


def test_every_rpc_of_the_contract_declares_its_access() -> None:
    missing = [path for path, m in contract_methods() if not m.options.HasExtension(access_pb2.access)]
    assert not missing, f"RPCs without option (godel.v1.access): {missing}"


def test_the_services_load_every_service_of_the_contract() -> None:
    in_contract = {path.split("/")[1] for path, _ in contract_methods()}
    assert {s.full_name for s in API_SERVICES} == in_contract
    assert len(in_contract) >= 11


def test_every_declared_rule_is_well_formed_and_loaded() -> None:
    for method in api_methods():
        rule = declared_rule(method)  # raises ValueError when malformed
        assert rule is not None and RULES[method_path(method)] == rule


def test_an_rpc_without_the_option_has_no_rule() -> None:
    check = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name["Check"]
    assert declared_rule(check) is None


@pytest.mark.parametrize(
    "method",
    [
        "/godel.v1.AgentService/NoSuchRpc",
        "/godel.v2.AgentService/ListAgents",
        "/unknown.Service/Call",
        "godel.v1.AgentService/ListAgents",  # not a gRPC path
        "",
    ],
)
def test_methods_without_a_rule_are_refused_even_to_admin(method: str) -> None:
    with pytest.raises(PermissionDeniedError, match="declares no access rule"):
        authorize(caller("admin"), method)


def test_public_methods_are_exactly_those_the_contract_marks() -> None:
    public_api = sorted(path for path, rule in RULES.items() if rule.public and "godel.v1" in path)
    assert public_api == [
        "/godel.v1.AuthService/Authenticate",
        "/godel.v1.AuthService/Login",
        "/godel.v1.AuthService/Logout",
        "/godel.v1.AuthService/RefreshToken",
        "/godel.v1.SystemService/GetCapabilities",
        "/godel.v1.SystemService/GetHealth",
        "/godel.v1.SystemService/GetLiveness",
        "/godel.v1.SystemService/GetOpenApi",
        "/godel.v1.SystemService/GetReadiness",
    ]
    # gRPC health and reflection (both versions) are public by their own descriptors.
    for method in (
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ):
        assert is_public(method)
    assert not is_public("/grpc.health.v1.Health/Nope")
    assert not is_public("/godel.v1.SystemService/GetDetailedHealth")


@pytest.mark.parametrize(
    ("method", "rule"),
    [
        ("/godel.v1.AgentService/CreateAgent", "agent:create:own"),
        ("/godel.v1.AgentService/ListAgents", "agent:read:own"),
        ("/godel.v1.AgentService/StreamAgentLogs", "agent:read:own"),
        ("/godel.v1.AgentService/KillAgent", "agent:update:own"),
        ("/godel.v1.AgentService/DeleteAgent", "agent:delete:own"),
        ("/godel.v1.EventService/PublishEvent", "event:create:own"),
        ("/godel.v1.EventService/DeleteEventSubscription", "subscription:delete:own"),
        ("/godel.v1.AuthService/RevokeApiKey", "key:update:all"),
        ("/godel.v1.ClusterService/UnregisterCluster", "cluster:delete:all"),
        ("/godel.v1.WorkerService/Connect", "worker:update:all"),
        ("/godel.v1.SystemService/GetHealth", "public"),
    ],
)
def test_rules_read_from_the_protos(method: str, rule: str) -> None:
    assert str(RULES[method]) == rule


def test_roles() -> None:
    assert allowed("admin", "/godel.v1.AuthService/CreateApiKey")
    assert allowed("viewer", "/godel.v1.AgentService/ListAgents")
    assert allowed("developer", "/godel.v1.AgentService/CreateAgent")
    assert allowed("developer", "/godel.v1.AgentService/KillAgent")
    assert allowed("operator", "/godel.v1.ClusterService/RegisterCluster")
    assert allowed("viewer", "/godel.v1.EventService/DeleteEventSubscription")  # its own cursor
    assert not allowed("viewer", "/godel.v1.AgentService/CreateAgent")
    assert not allowed("viewer", "/godel.v1.EventService/PublishEvent")
    assert not allowed("developer", "/godel.v1.AuthService/CreateApiKey")
    assert not allowed("developer", "/godel.v1.ClusterService/RegisterCluster")
    assert not allowed("developer", "/godel.v1.TeamService/CreateTeam")
    assert not allowed("operator", "/godel.v1.AuthService/ListApiKeys")
    with pytest.raises(PermissionDeniedError, match="may not create agent"):
        authorize(caller("viewer"), "/godel.v1.AgentService/CreateAgent")


def test_only_workers_connect_as_workers_and_they_do_nothing_else() -> None:
    connect = "/godel.v1.WorkerService/Connect"
    assert [role for role in ROLES if role != "admin" and allowed(role, connect)] == ["worker"]
    assert [path for path in RULES if not RULES[path].public and allowed("worker", path)] == [connect]


def test_every_resource_is_named_alike_in_the_protos_and_the_roles() -> None:
    in_protos = {rule.resource for rule in RULES.values() if not rule.public}
    in_roles = {p.split(":")[0] for permissions in ROLES.values() for p in permissions} - {"*"}
    assert in_roles <= in_protos, "a role names a resource that no RPC has"
    # API keys, users and user teams: admin only (`*:*:all`)
    assert in_protos - in_roles == {"key", "user"}


def test_no_role_is_granted_an_rpc_at_a_scope_narrower_than_the_rpc_needs() -> None:
    # A permission narrower than the RPC's scope would never allow it: a role that names one
    # promises what authorize() refuses.
    for role, permissions in ROLES.items():
        for path, rule in RULES.items():
            for permission in permissions:
                if not rule.public and grants(permission, rule.resource, rule.action):
                    scope = permission.split(":")[2]
                    assert SCOPE_ORDER.index(scope) >= SCOPE_ORDER.index(rule.scope), (role, permission, path)


OWN = access_pb2.ACCESS_SCOPE_OWN


@pytest.mark.parametrize(
    ("access", "problem"),
    [
        (access_pb2.Access(resource="agent", action="kill", scope=OWN), "access.action must be one of"),
        (access_pb2.Access(resource="agent", action="read"), "access.scope must be set"),
        (access_pb2.Access(action="read", scope=OWN), "access.resource must be a lower-case name"),
        (access_pb2.Access(resource="Agent", action="read", scope=OWN), "lower-case name"),
        (access_pb2.Access(public=True, resource="agent"), "a public RPC names no resource"),
        (access_pb2.Access(), "access.resource must be"),
    ],
)
def test_a_malformed_option_is_an_error(access: access_pb2.Access, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rule_of(access, "godel.v1.X.Y")
