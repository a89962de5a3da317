"""The server interceptor on a real in-process gRPC server: every handler shape (unary and
streaming requests and responses, each as a coroutine and as an async generator) answers, and is
authenticated and authorized the same way; unknown methods are refused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from sqlalchemy.exc import InternalError, OperationalError

from godel_server.runtime import rbac
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError
from godel_server.runtime.interceptors import RPC_HANDLED, GodelServerInterceptor
from tests.waits import wait_for_async

SERVICE = "godel.test.Shapes"
KEYS = {"admin-key": "admin", "viewer-key": "viewer"}


class Verifier:
    async def verify(self, credential: str) -> Caller:
        if credential not in KEYS:
            raise AuthenticationError("invalid API key")
        role = KEYS[credential]
        return Caller(key_id=credential, user_id="u", role=role, permissions=ROLES[role])


async def _collect(requests: Any) -> list[bytes]:
    return [request async for request in requests]


# Each behavior answers b"<its name>:<the request bytes joined>".
async def unary_coroutine(request: bytes, context: Any) -> bytes:
    return b"unary_coroutine:" + request


async def server_stream_generator(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for part in (b"server_stream_generator:", request):
        yield part


async def server_stream_coroutine(request: bytes, context: Any) -> None:
    for part in (b"server_stream_coroutine:", request):
        await context.write(part)


async def client_stream_coroutine(requests: Any, context: Any) -> bytes:
    return b"client_stream_coroutine:" + b"".join(await _collect(requests))


async def bidi_generator(requests: Any, context: Any) -> AsyncIterator[bytes]:
    yield b"bidi_generator:"
    async for request in requests:
        yield request


async def bidi_coroutine(requests: Any, context: Any) -> None:
    await context.write(b"bidi_coroutine:")
    async for request in requests:
        await context.write(request)


async def stubborn_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    """Outlives its client's cancel by one item: the write of that item finds the call over, as
    one does when the client goes away between the start of a write and the task's cancel."""
    try:
        while True:
            yield b"item"
            await asyncio.sleep(0.01)
    except asyncio.CancelledError:
        yield b"one more"


SHAPES: dict[str, tuple[Callable[..., grpc.RpcMethodHandler], Any]] = {
    "UnaryCoroutine": (grpc.unary_unary_rpc_method_handler, unary_coroutine),
    "ServerStreamGenerator": (grpc.unary_stream_rpc_method_handler, server_stream_generator),
    "ServerStreamCoroutine": (grpc.unary_stream_rpc_method_handler, server_stream_coroutine),
    "ClientStreamCoroutine": (grpc.stream_unary_rpc_method_handler, client_stream_coroutine),
    "BidiGenerator": (grpc.stream_stream_rpc_method_handler, bidi_generator),
    "BidiCoroutine": (grpc.stream_stream_rpc_method_handler, bidi_coroutine),
}


def failing(error: Exception) -> Callable[[bytes, Any], Any]:
    async def behavior(request: bytes, context: Any) -> bytes:
        raise error

    return behavior


# What the database driver raises: unreachable, a connection that broke under the statement, and
# a plain error of the driver (a bug, not an outage).
DB_ERRORS = {
    "DatabaseDown": OperationalError("SELECT 1", None, ConnectionRefusedError("connection refused")),
    "ConnectionBroke": InternalError(
        "SELECT 1", None, Exception("cannot switch to state 15"), connection_invalidated=True
    ),
    "DriverBug": InternalError("SELECT 1", None, Exception("cannot switch to state 15")),
}
# Not call shapes that every test drives: one never ends by itself, the others fail.
HANDLERS = {
    **SHAPES,
    "StubbornStream": (grpc.unary_stream_rpc_method_handler, stubborn_stream),
    **{name: (grpc.unary_unary_rpc_method_handler, failing(error)) for name, error in DB_ERRORS.items()},
}


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[grpc.aio.Channel]:
    # The test service's rules, as if its RPCs declared `{resource: "agent", action: "create"}`
    # (admin may, viewer may not).
    for name in HANDLERS:
        monkeypatch.setitem(
            rbac.RULES,
            f"/{SERVICE}/{name}",
            rbac.Rule(public=False, resource="agent", action="create", scope="own"),
        )
    server = grpc.aio.server(interceptors=[GodelServerInterceptor(Verifier())])
    handlers = {name: factory(behavior) for name, (factory, behavior) in HANDLERS.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(None)


async def call(channel: grpc.aio.Channel, name: str, key: str | None, parts: tuple[bytes, ...] = ()) -> bytes:
    """Calls one shape with the requests `parts` (joined for a unary request). Refused calls send
    none: a client that still writes to a stream the server has closed gets INTERNAL itself."""
    metadata = (("x-api-key", key),) if key else ()
    path = f"/{SERVICE}/{name}"
    factory = SHAPES[name][0]
    requests = iter(parts)
    if factory is grpc.unary_unary_rpc_method_handler:
        return await channel.unary_unary(path)(b"".join(parts), metadata=metadata)  # type: ignore[no-any-return]
    if factory is grpc.unary_stream_rpc_method_handler:
        return b"".join([r async for r in channel.unary_stream(path)(b"".join(parts), metadata=metadata)])
    if factory is grpc.stream_unary_rpc_method_handler:
        return await channel.stream_unary(path)(requests, metadata=metadata)  # type: ignore[no-any-return]
    return b"".join([r async for r in channel.stream_stream(path)(requests, metadata=metadata)])


@pytest.mark.parametrize("name", SHAPES)
async def test_every_shape_answers_an_authorized_caller(server: grpc.aio.Channel, name: str) -> None:
    behavior = SHAPES[name][1].__name__.encode()
    assert await call(server, name, "admin-key", (b"a", b"b")) == behavior + b":ab"


@pytest.mark.parametrize("name", SHAPES)
async def test_every_shape_needs_credentials(server: grpc.aio.Channel, name: str) -> None:
    for key in (None, "wrong-key"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(server, name, key)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("name", SHAPES)
async def test_every_shape_checks_the_role(server: grpc.aio.Channel, name: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(server, name, "viewer-key")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not create agent" in (refused.value.details() or "")


@pytest.mark.parametrize("name", SHAPES)
async def test_each_call_is_judged_by_its_own_credentials(server: grpc.aio.Channel, name: str) -> None:
    """A method is wrapped once, at its first call; every later call still brings its own caller."""
    behavior = SHAPES[name][1].__name__.encode()
    for key, refusal in (
        ("admin-key", None),
        ("viewer-key", grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
        ("admin-key", None),
    ):
        if refusal is None:
            assert await call(server, name, key, (b"x",)) == behavior + b":x"
            continue
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(server, name, key)
        assert refused.value.code() == refusal


@pytest.mark.parametrize(
    "path", ["/godel.test.Shapes/NoSuchMethod", "/no.such.Service/Call", "/godel.v1.AgentService/Nope"]
)
async def test_unknown_methods_are_refused(server: grpc.aio.Channel, path: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.unary_unary(path)(b"", metadata=(("x-api-key", "admin-key"),))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "declares no access rule" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await server.stream_unary(path)(iter(()))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_contract_rpc_served_elsewhere_is_unimplemented(server: grpc.aio.Channel) -> None:
    # The contract allows it (admin), but this server does not serve it.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await server.unary_unary("/godel.v1.TeamService/ListTeams")(
            b"", metadata=(("x-api-key", "admin-key"),)
        )
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "godel.v1.TeamService/ListTeams is not served on this port" in (refused.value.details() or "")


async def test_a_client_that_goes_away_mid_write_is_no_server_error(
    server: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    """The write that finds the call over is a client that went away: logged at info and counted
    as CANCELLED, not an "unhandled error" with its stack trace and an INTERNAL in the metrics
    (which the error-rate alert reads)."""
    path = f"/{SERVICE}/StubbornStream"
    cancelled = RPC_HANDLED.labels(path, "CANCELLED")
    internal = RPC_HANDLED.labels(path, "INTERNAL")
    before = (cancelled._value.get(), internal._value.get())
    call = server.unary_stream(path)(b"", metadata=(("x-api-key", "admin-key"),))
    with caplog.at_level(logging.INFO, logger="godel_server.runtime.interceptors"):
        assert await call.read() == b"item"
        call.cancel()
        await wait_for_async(
            lambda: cancelled._value.get() > before[0] or internal._value.get() > before[1],
            10,
            "the server to end the call",
        )
    assert (cancelled._value.get(), internal._value.get()) == (before[0] + 1, before[1])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "the client went away during the call" in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("DatabaseDown", grpc.StatusCode.UNAVAILABLE),
        ("ConnectionBroke", grpc.StatusCode.UNAVAILABLE),
        ("DriverBug", grpc.StatusCode.INTERNAL),
    ],
)
async def test_an_unreachable_database_is_unavailable_not_a_server_error(
    server: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, name: str, code: grpc.StatusCode
) -> None:
    """A client may try again after UNAVAILABLE (the database is down or restarting); anything else
    the driver raises stays an internal error, logged with its stack trace."""
    path = f"/{SERVICE}/{name}"
    counted = RPC_HANDLED.labels(path, code.name)
    before = counted._value.get()
    with (
        caplog.at_level(logging.INFO, logger="godel_server.runtime.interceptors"),
        pytest.raises(grpc.aio.AioRpcError) as failed,
    ):
        await server.unary_unary(path)(b"", metadata=(("x-api-key", "admin-key"),))
    assert failed.value.code() == code
    assert counted._value.get() == before + 1
    messages = [r.getMessage() for r in caplog.records]
    if code == grpc.StatusCode.UNAVAILABLE:
        assert failed.value.details() == "the database is unreachable; try again shortly"
        assert "the database is unreachable" in messages and "unhandled error in rpc" not in messages
        assert "SELECT 1" not in caplog.text  # the statement (and its parameters) stay out of logs
    else:
        assert "internal error (request id" in (failed.value.details() or "")
        assert "unhandled error in rpc" in messages
