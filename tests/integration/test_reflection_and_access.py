"""gRPC reflection as users run it, and deny-by-default access, on every service port and on
the gateway: grpcurl (reflection v1) lists and describes every service without a protoset, the
Python reflection client (v1alpha) does the same, and a request to a service or method that
the contract does not declare is refused with PERMISSION_DENIED."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from godel_server.__main__ import service_class
from godel_server.runtime.rbac import API_SERVICES
from godel_server.runtime.reflection import REFLECTION_SERVICES
from godel_server.runtime.topology import ROLES
from tests.conftest import RunningMesh

REPO = Path(__file__).resolve().parents[2]
GRPCURL = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"
TARGETS = (*ROLES, "gateway")
ALWAYS = {health_pb2.DESCRIPTOR.services_by_name["Health"].full_name} | {
    s.full_name for s in REFLECTION_SERVICES
}
METHODS = {s.full_name: [m.name for m in s.methods] for s in API_SERVICES}


@pytest.fixture(scope="module")
def grpcurl() -> str:
    """The pinned grpcurl, built from the Go module proxy into .cache/bin on first use."""
    done = subprocess.run(
        [str(REPO / "tools" / "go-tool.sh"), "grpcurl", GRPCURL],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return done.stdout.strip()


def address(godel: RunningMesh, target: str) -> str:
    return godel.mesh.gateway_address if target == "gateway" else godel.mesh.address(target)


def expected_services(target: str) -> set[str]:
    """A port lists what its process serves; the gateway lists every service of the contract."""
    if target == "gateway":
        return set(METHODS) | ALWAYS
    return set(service_class(target).grpc_services) | ALWAYS  # type: ignore[arg-type]


def run(grpcurl: str, *args: str) -> str:
    done = subprocess.run([grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"grpcurl {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_grpcurl_lists_and_describes_every_service(godel: RunningMesh, grpcurl: str, target: str) -> None:
    where = address(godel, target)
    listed = set(run(grpcurl, where, "list").split())
    assert listed == expected_services(target)
    for service in sorted(listed):
        described = run(grpcurl, where, "describe", service)
        assert f"{service} is a service:" in described
        for method in METHODS.get(service, ()):
            assert f"rpc {method} (" in described, (service, method)
    message = run(grpcurl, where, "describe", "godel.v1.CreateAgentRequest")
    assert "godel.v1.CreateAgentRequest is a message:" in message and "string task = " in message


@pytest.mark.parametrize("target", ["agent", "gateway"])
def test_grpcurl_calls_through_reflection_alone(godel: RunningMesh, grpcurl: str, target: str) -> None:
    where = address(godel, target)
    reply = run(grpcurl, "-H", f"x-api-key: {godel.admin_key}", "-d", '{"pageSize": 1}', where,
                "godel.v1.AgentService/ListAgents")  # fmt: skip
    assert reply.strip().startswith("{")
    refused = subprocess.run(
        [grpcurl, "-plaintext", "-d", "{}", where, "godel.v1.AgentService/ListAgents"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr


@pytest.fixture
def channels(godel: RunningMesh) -> Iterator[dict[str, grpc.Channel]]:
    opened = {target: grpc.insecure_channel(address(godel, target)) for target in TARGETS}
    try:
        yield opened
    finally:
        for channel in opened.values():
            channel.close()


@pytest.mark.parametrize("target", TARGETS)
def test_python_reflection_client_v1alpha(channels: dict[str, grpc.Channel], target: str) -> None:
    database = ProtoReflectionDescriptorDatabase(channels[target])
    assert set(database.get_services()) == expected_services(target)
    pool = DescriptorPool(database)
    for name, methods in METHODS.items():  # any process describes the whole contract
        assert [m.name for m in pool.FindServiceByName(name).methods] == methods


@pytest.mark.parametrize("target", TARGETS)
def test_reflection_v1_lists_the_services(channels: dict[str, grpc.Channel], target: str) -> None:
    # v1 has v1alpha's messages under another package name: the same bytes on the wire.
    info = channels[target].stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30))
    assert len(replies) == 1
    assert {s.name for s in replies[0].list_services_response.service} == expected_services(target)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    "path", ["/godel.v1.NoSuchService/Call", "/godel.v1.AgentService/NoSuchRpc", "/x.Y/Z"]
)
def test_undeclared_methods_are_refused_with_permission_denied(
    godel: RunningMesh, channels: dict[str, grpc.Channel], target: str, path: str
) -> None:
    call = channels[target].unary_unary(path)
    with pytest.raises(grpc.RpcError) as refused:
        call(b"", metadata=godel.metadata(), timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    assert "declares no access rule" in (refused.value.details() or "")
    with pytest.raises(grpc.RpcError) as anonymous:
        call(b"", timeout=30)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_worker_key_reaches_only_the_worker_protocol(godel: RunningMesh) -> None:
    worker = godel.create_key("worker")
    with godel.http(worker) as http:
        refused = http.get("/api/v1/agents")
    assert refused.status_code == 403
    assert "may not read agent" in refused.json()["message"]
