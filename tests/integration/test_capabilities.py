"""What the running mesh really serves: every RPC of every contract service is called with an empty
request on every service port. A method no process registered answers "Method not found"; one left to
the generated base answers UNIMPLEMENTED with Godel's message; anything else (OK, INVALID_ARGUMENT,
NOT_FOUND, ...) means it is implemented. Every RPC is (README.md says so), and `GET /capabilities`
lists each as a feature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

from godel_server.runtime.topology import ROLES
from tests.conftest import RunningMesh
from tests.unit.test_capabilities import contract_services
from tests.waits import poll

NOT_REGISTERED = "not registered"
NOT_BUILT = "not built"
SERVED = "served"
CALL_TIMEOUT = 15.0


def _identity(data: bytes) -> bytes:
    return data


def call_empty(channel: grpc.Channel, method: MethodDescriptor, metadata: list[tuple[str, str]]) -> str:
    """Calls `method` with an empty request (b"" is every empty message) and classifies the answer."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    kwargs: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    try:
        if method.client_streaming:
            replies: Iterator[bytes] = channel.stream_stream(path, **kwargs)(
                iter([b""]), metadata=metadata, timeout=CALL_TIMEOUT
            )
            next(replies, None)
        elif method.server_streaming:
            replies = channel.unary_stream(path, **kwargs)(b"", metadata=metadata, timeout=CALL_TIMEOUT)
            next(replies, None)  # a stream that sends a first message (or ends) is served
        else:
            channel.unary_unary(path, **kwargs)(b"", metadata=metadata, timeout=CALL_TIMEOUT)
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        if code == grpc.StatusCode.UNIMPLEMENTED and "not implemented yet" in details:
            return NOT_BUILT
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return NOT_REGISTERED
        # Empty input is bad input, never a crash; DEADLINE_EXCEEDED is a live stream with nothing to send.
        assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), f"{path}: {code} {details}"
    return SERVED


def contract_methods() -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [m for name in sorted(contract_services()) for m in pool.FindServiceByName(name).methods]


def probe(godel: RunningMesh) -> dict[str, str]:
    """'/godel.v1.X/Method' → SERVED or NOT_BUILT on the port of the role that serves it."""
    found: dict[str, str] = {}
    for role in ROLES:
        with godel.channel(godel.mesh.address(role)) as channel:
            for method in contract_methods():
                answer = call_empty(channel, method, godel.metadata())
                if answer != NOT_REGISTERED:
                    path = f"/{method.containing_service.full_name}/{method.name}"
                    assert path not in found, f"{path} is served on two ports"
                    found[path] = answer
    return found


def test_capabilities_and_readme_say_what_the_services_answer(godel: RunningMesh) -> None:
    answers = probe(godel)
    assert set(answers) == {f"/{m.containing_service.full_name}/{m.name}" for m in contract_methods()}
    not_built = {path for path, answer in answers.items() if answer == NOT_BUILT}
    assert not_built == set(), "README.md says every RPC is implemented"

    with godel.http() as http:
        caps = http.get("/api/v1/capabilities").json()
        assert set(caps["services"]) == contract_services()
        assert set(caps["features"]) == {p.lstrip("/") for p, a in answers.items() if a == SERVED}
        assert "map-reduce" in caps["executionStrategies"]
        # The worker may connect after the mesh is up; answers are cached 10 s.
        caps = poll(
            lambda: http.get("/api/v1/capabilities").json(),
            lambda c: "command" in c.get("runtimes", []),
            60,
            "a runtime of the mesh's worker in the capabilities",
            interval=0.5,
        )
        assert set(caps["runtimes"]) == {"command", "openai", "openclaw"}  # what a Python worker runs
