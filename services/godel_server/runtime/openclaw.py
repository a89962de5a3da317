"""A client of the OpenClaw Gateway's WebSocket protocol, as published in the `openclaw` npm package
(docs/gateway/protocol/*.md; protocol 4 in openclaw 2026.9.6, the version Godel is tested against).

JSON text frames: `{type:"req", id, method, params}`, `{type:"res", id, ok, payload|error}` and
`{type:"event", event, payload}`. The Gateway opens with a `connect.challenge` event (a nonce and
its time); the client answers with a `connect` request declaring role "operator", its scopes, the
shared Gateway token (`auth.token`) and a device identity: an Ed25519 key whose public key's SHA-256
is the device id, signing the challenge ("v3" payload). A Gateway pairs a new device on its own
loopback at once; elsewhere its operator approves it once (`openclaw devices approve <id>`).

Some methods answer twice with the same id (`agent`: an acceptance, then the final result); the
client hands out every response of a request in order. Used by the worker's "openclaw" runtime
and by the cluster service's OpenClaw notification channels. The token is sent only in `connect`
and never appears in an error this module raises."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from godel_server.runtime.ids import new_id

PROTOCOL_VERSION = 4
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
ROLE = "operator"
READ, WRITE = "operator.read", "operator.write"
PLATFORM = "linux"
CONNECT_TIMEOUT_SECONDS = 15.0
STARTING_WAIT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30.0
IDENTITY_FILE = "openclaw-device.pem"
MAX_FRAME_BYTES = 32 * 1024 * 1024
EXCERPT = 300


class GatewayError(Exception):
    """The Gateway refused a request or could not be reached; the message names the Gateway and
    what went wrong (never the token). `code` is the Gateway's error code when it sent one."""

    def __init__(
        self, message: str, code: str = "", retryable: bool = False, retry_after: float = 1.0
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after


class GatewayClosed(GatewayError):
    """The connection to the Gateway ended before the answer came."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class DeviceIdentity:
    """The Ed25519 key a client proves its device with (the Gateway pairs devices, not tokens)."""

    key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def device_id(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()

    def sign(self, payload: str) -> str:
        return _b64url(self.key.sign(payload.encode()))

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, home: Path) -> DeviceIdentity:
        """The identity kept in `<home>/openclaw-device.pem` (created, mode 0600, at first use), so a
        restarted process stays the device its Gateway paired."""
        path = home / IDENTITY_FILE
        with contextlib.suppress(FileNotFoundError):
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, Ed25519PrivateKey):
                return cls(key)
        identity = cls.generate()
        pem = identity.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
        return identity


def device_auth_payload(
    identity: DeviceIdentity, scopes: list[str], signed_at_ms: int, token: str, nonce: str
) -> str:
    """The "v3" string a device signs (buildDeviceAuthPayloadV3 of the Gateway client)."""
    fields = [
        "v3",
        identity.device_id,
        CLIENT_ID,
        CLIENT_MODE,
        ROLE,
        ",".join(scopes),
        str(signed_at_ms),
        token,
        nonce,
        PLATFORM,
        "",
    ]
    return "|".join(fields)


def describe_error(error: Any) -> tuple[str, str, bool, float]:
    """(message, code, retryable, retry after seconds) of a response's error object."""
    if not isinstance(error, dict):
        return str(error)[:EXCERPT], "", False, 1.0
    code = str(error.get("code") or "")
    message = str(error.get("message") or "error")[:EXCERPT]
    details = error.get("details")
    if isinstance(details, dict):
        detail_code = details.get("code") or details.get("reason")
        if detail_code:
            message += f" ({detail_code})"
        if details.get("requestId"):
            message += f"; pairing request {details['requestId']}"
    after = error.get("retryAfterMs")
    return (
        message,
        code,
        bool(error.get("retryable")),
        after / 1000 if isinstance(after, int | float) else 1.0,
    )


class Gateway:
    """One authenticated connection: `request()` for one answer, `responses()` for every answer of
    a two-phase method, `events()` for the events the Gateway broadcasts to this connection."""

    def __init__(self, ws: ClientConnection, url: str, hello: dict[str, Any]) -> None:
        self._ws = ws
        self.url = url
        self.hello = hello
        self._pending: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed: GatewayClosed | None = None
        self._reader = asyncio.create_task(self._read(), name="openclaw-gateway-reader")

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                try:
                    frame = json.loads(raw)
                except (TypeError, ValueError):
                    continue
                if not isinstance(frame, dict):
                    continue
                if frame.get("type") == "res":
                    queue = self._pending.get(str(frame.get("id")))
                    if queue is not None:
                        queue.put_nowait(frame)
                elif frame.get("type") == "event":
                    self._events.put_nowait(frame)
            self.closed = GatewayClosed(f"the OpenClaw Gateway at {self.url} closed the connection")
        except ConnectionClosed as exc:
            why = f" ({exc.rcvd.code} {exc.rcvd.reason})".rstrip() if exc.rcvd else ""
            self.closed = GatewayClosed(f"lost the connection to the OpenClaw Gateway at {self.url}{why}")
        finally:
            if self.closed is None:
                self.closed = GatewayClosed(f"stopped reading from the OpenClaw Gateway at {self.url}")
            closed: dict[str, Any] = {"type": "closed"}
            for queue in self._pending.values():
                queue.put_nowait(closed)
            self._events.put_nowait(None)

    async def _send(self, method: str, params: dict[str, Any]) -> str:
        if self.closed is not None:
            raise self.closed
        request_id = new_id()
        self._pending[request_id] = asyncio.Queue()
        frame = {"type": "req", "id": request_id, "method": method, "params": params}
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            self._pending.pop(request_id, None)
            raise GatewayClosed(f"lost the connection to the OpenClaw Gateway at {self.url}") from exc
        return request_id

    async def _answer(self, method: str, request_id: str, timeout: float | None) -> dict[str, Any]:
        queue = self._pending[request_id]
        try:
            frame = await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise GatewayError(
                f"the OpenClaw Gateway at {self.url} did not answer {method} in time"
            ) from None
        if frame.get("type") == "closed":
            assert self.closed is not None
            raise self.closed
        if not frame.get("ok"):
            message, code, retryable, after = describe_error(frame.get("error"))
            raise GatewayError(f"the OpenClaw Gateway refused {method}: {message}", code, retryable, after)
        payload = frame.get("payload")
        return payload if isinstance(payload, dict) else {"value": payload}

    async def request(
        self, method: str, params: dict[str, Any], timeout: float | None = REQUEST_TIMEOUT_SECONDS
    ) -> dict[str, Any]:
        request_id = await self._send(method, params)
        try:
            return await self._answer(method, request_id, timeout)
        finally:
            self._pending.pop(request_id, None)

    @contextlib.asynccontextmanager
    async def responses(self, method: str, params: dict[str, Any]) -> AsyncIterator[Responses]:
        """`async with gw.responses("agent", {...}) as answers: first = await answers.next()`."""
        request_id = await self._send(method, params)
        try:
            yield Responses(self, method, request_id)
        finally:
            self._pending.pop(request_id, None)

    async def next_event(self) -> dict[str, Any] | None:
        """The next event frame, or None once the connection is closed."""
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # every later call sees the end too
        return event

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Responses:
    gateway: Gateway
    method: str
    request_id: str

    async def next(self, timeout: float | None = REQUEST_TIMEOUT_SECONDS) -> dict[str, Any]:
        return await self.gateway._answer(self.method, self.request_id, timeout)


async def _challenge(ws: ClientConnection, url: str) -> dict[str, Any]:
    async for raw in ws:
        try:
            frame = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if (
            isinstance(frame, dict)
            and frame.get("type") == "event"
            and frame.get("event") == "connect.challenge"
        ):
            payload = frame.get("payload")
            if isinstance(payload, dict) and payload.get("nonce") and isinstance(payload.get("ts"), int):
                return payload
            raise GatewayError(f"the OpenClaw Gateway at {url} sent a malformed connect.challenge")
    raise GatewayClosed(f"the OpenClaw Gateway at {url} closed the connection before its challenge")


def connect_params(
    identity: DeviceIdentity, token: str, scopes: list[str], challenge: dict[str, Any], version: str
) -> dict[str, Any]:
    signed_at = int(challenge["ts"])
    nonce = str(challenge["nonce"])
    payload = device_auth_payload(identity, scopes, signed_at, token, nonce)
    return {
        "minProtocol": PROTOCOL_VERSION,
        "maxProtocol": PROTOCOL_VERSION,
        "client": {
            "id": CLIENT_ID,
            "displayName": "Godel",
            "version": version,
            "platform": PLATFORM,
            "mode": CLIENT_MODE,
        },
        "role": ROLE,
        "scopes": scopes,
        "caps": ["tool-events"],
        "auth": {"token": token},
        "userAgent": f"godel/{version}",
        "device": {
            "id": identity.device_id,
            "publicKey": _b64url(identity.public_raw),
            "signature": identity.sign(payload),
            "signedAt": signed_at,
            "nonce": nonce,
        },
    }


async def _handshake(
    url: str, token: str, identity: DeviceIdentity, scopes: list[str], timeout: float, version: str
) -> Gateway:
    """One connection attempt: the authenticated Gateway, or GatewayError (the socket closed)."""
    try:
        async with asyncio.timeout(timeout):
            ws = await connect(url, max_size=MAX_FRAME_BYTES, open_timeout=timeout, compression=None)
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise GatewayError(
            f"cannot reach the OpenClaw Gateway at {url}: {type(exc).__name__}: {exc}"
        ) from None
    gateway: Gateway | None = None
    try:
        async with asyncio.timeout(timeout):
            challenge = await _challenge(ws, url)
            gateway = Gateway(ws, url, {})
            params = connect_params(identity, token, scopes, challenge, version)
            gateway.hello = await gateway.request("connect", params, timeout=timeout)
        return gateway
    except BaseException as exc:
        if gateway is not None:
            await gateway.close()
        else:
            with contextlib.suppress(Exception):
                await ws.close()
        if isinstance(exc, TimeoutError):
            raise GatewayError(
                f"the OpenClaw Gateway at {url} did not complete the handshake in {timeout:g}s"
            ) from None
        if isinstance(exc, ConnectionClosed):
            raise GatewayClosed(
                f"the OpenClaw Gateway at {url} closed the connection during the handshake"
            ) from None
        raise


@contextlib.asynccontextmanager
async def open_gateway(
    url: str,
    token: str,
    identity: DeviceIdentity,
    scopes: list[str] | None = None,
    *,
    timeout: float = CONNECT_TIMEOUT_SECONDS,
    version: str = "0.1.0",
) -> AsyncIterator[Gateway]:
    """Connects, answers the challenge and yields the authenticated Gateway; GatewayError when it
    cannot be reached or refuses the connection. A Gateway still starting (a retryable refusal)
    is asked again for up to STARTING_WAIT_SECONDS."""
    scopes = scopes or [READ, WRITE]
    deadline = asyncio.get_running_loop().time() + STARTING_WAIT_SECONDS
    while True:
        try:
            gateway = await _handshake(url, token, identity, scopes, timeout, version)
            break
        except GatewayError as exc:
            if not exc.retryable or asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(min(max(exc.retry_after, 0.2), 2.0))
    try:
        yield gateway
    finally:
        await gateway.close()
