"""Limits per caller and revocation of open streams, on a real in-process gRPC server: a stream
ends with UNAUTHENTICATED once the guard finds its credential revoked; over a rate the call gets
RESOURCE_EXHAUSTED with RetryInfo and retry-after; a user's open streams are capped. Also the
WebSocket handshake's credential sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from websockets.datastructures import Headers
from websockets.http11 import Request

from godel_server.event.ws_server import credential_of, origin_allowed
from godel_server.runtime import rbac
from godel_server.runtime.apikeys import ROLES
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError, PermissionDeniedError, QuotaExceededError
from godel_server.runtime.interceptors import CallerPolicy, GodelServerInterceptor
from godel_server.runtime.limits import CallerLimits, UserSlots
from godel_server.runtime.revocation import StreamGuard

SERVICE = "godel.test.Policy"


class Keys:
    """A verifier whose keys can be revoked."""

    def __init__(self) -> None:
        self.valid = {"k1": "u1", "k2": "u2", "k3": "u1"}

    async def verify(self, credential: str) -> Caller:
        if credential not in self.valid:
            raise AuthenticationError("API key revoked")
        return Caller(
            key_id=credential,
            user_id=self.valid[credential],
            role="admin",
            permissions=ROLES["admin"],
            credential=credential,
        )


async def forever(request: bytes, context: Any) -> AsyncIterator[bytes]:
    while True:
        yield b"tick"
        await asyncio.sleep(0.05)


async def echo(request: bytes, context: Any) -> bytes:
    return request


@pytest.fixture
async def mesh(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[grpc.aio.Channel, Keys, StreamGuard]]:
    for name in ("Forever", "Echo"):
        monkeypatch.setitem(
            rbac.RULES,
            f"/{SERVICE}/{name}",
            rbac.Rule(public=False, resource="agent", action="read", scope="own"),
        )
    keys = Keys()
    guard = StreamGuard(keys, interval=0.1)
    policy = CallerPolicy(
        guard=guard, limits=CallerLimits(per_key=5, per_user=0), streams=UserSlots(2, "open streams")
    )
    server = grpc.aio.server(interceptors=[GodelServerInterceptor(keys, policy)])
    handlers = {
        "Forever": grpc.unary_stream_rpc_method_handler(forever),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    guard.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, keys, guard
    finally:
        await guard.stop()
        await channel.close()
        await server.stop(None)


def _open(channel: grpc.aio.Channel, key: str) -> Any:
    return channel.unary_stream(f"/{SERVICE}/Forever")(b"", metadata=(("x-api-key", key),))


async def test_a_revoked_credential_ends_its_streams_only(
    mesh: tuple[grpc.aio.Channel, Keys, StreamGuard],
) -> None:
    channel, keys, guard = mesh
    doomed, other = _open(channel, "k1"), _open(channel, "k2")
    assert await doomed.read() == b"tick" and await other.read() == b"tick"
    assert guard.open_streams() == 2
    del keys.valid["k1"]
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        while True:
            await asyncio.wait_for(doomed.read(), 5)
    assert ended.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert ended.value.details() == "API key revoked: this stream is closed"
    assert await other.read() == b"tick"  # another credential's stream goes on
    other.cancel()
    for _ in range(100):
        if guard.open_streams() == 0:
            break
        await asyncio.sleep(0.02)
    assert guard.open_streams() == 0


async def test_a_users_open_streams_are_capped(mesh: tuple[grpc.aio.Channel, Keys, StreamGuard]) -> None:
    channel, _, _ = mesh
    first, second = _open(channel, "k1"), _open(channel, "k3")  # the same user u1, two keys
    assert await first.read() == b"tick" and await second.read() == b"tick"
    third = _open(channel, "k1")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await third.read()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "user u1 has 2 open streams open, the most allowed at once (2)" in (refused.value.details() or "")
    first.cancel()
    for _ in range(100):  # the server sees the cancel and frees the slot
        fourth = _open(channel, "k1")
        try:
            assert await fourth.read() == b"tick"
            break
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            await asyncio.sleep(0.02)
    else:
        pytest.fail("the slot of a cancelled stream was never freed")
    second.cancel()
    fourth.cancel()


async def test_over_its_rate_a_key_waits_and_another_key_does_not(
    mesh: tuple[grpc.aio.Channel, Keys, StreamGuard],
) -> None:
    channel, _, _ = mesh
    echo_call = channel.unary_unary(f"/{SERVICE}/Echo")
    for _ in range(5):
        await echo_call(b"x", metadata=(("x-api-key", "k1"),))
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await echo_call(b"x", metadata=(("x-api-key", "k1"),))
    assert limited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate limit of this credential exceeded (5 requests per second)" in (limited.value.details() or "")
    trailers = dict(limited.value.trailing_metadata() or ())
    assert trailers["retry-after"] == "1"
    status = rpc_status.from_call(limited.value)
    assert status is not None
    infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(infos) == 1
    assert await echo_call(b"y", metadata=(("x-api-key", "k2"),)) == b"y"


def test_user_slots_release_once() -> None:
    slots = UserSlots(1, "subscriptions")
    release = slots.acquire("u")
    with pytest.raises(QuotaExceededError):
        slots.acquire("u")
    release()
    release()  # twice: still one slot back
    assert slots.held("u") == 0
    slots.acquire("u")
    assert UserSlots(0, "x").acquire("u") is not None  # no cap


def _handshake(path: str = "/events", **headers: str) -> Request:
    return Request(path, Headers(list(headers.items())))


def test_websocket_credentials_come_from_headers_subprotocols_query_or_a_same_origin_cookie() -> None:
    assert credential_of(_handshake(**{"X-API-Key": "k"})) == "k"
    assert credential_of(_handshake(Authorization="Bearer t")) == "t"
    assert credential_of(_handshake(**{"Sec-WebSocket-Protocol": "godel-events-v1, bearer.abc"})) == "abc"
    assert credential_of(_handshake("/events?token=q")) == "q"
    cookie = {"Cookie": "godel_token=c", "Host": "gw:7373"}
    assert credential_of(_handshake(**cookie, Origin="http://gw:7373")) == "c"
    assert credential_of(_handshake(**cookie, Origin="https://app.example"), ["https://app.example"]) == "c"
    for origin in ({"Origin": "http://evil.example"}, {}):
        with pytest.raises(PermissionDeniedError, match="allowed origin"):
            credential_of(_handshake(**cookie, **origin))
    assert credential_of(_handshake()) == ""
    assert not origin_allowed("", "gw:7373", [])
    assert origin_allowed("http://gw:7373/", "gw:7373", [])
