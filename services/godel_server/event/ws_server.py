"""The WebSocket endpoint `/events` of the event service (spec §3.2, subprotocol godel-events-v1).

Credentials (an API key or an access token), first found wins: the X-API-Key or
`Authorization: Bearer` headers; a `bearer.<credential>` subprotocol offered next to
`godel-events-v1` (browsers cannot set headers; the server never echoes it); the `?token=` query of
spec §3.2 (kept for compatibility; the gateway's access log drops query strings); the HttpOnly
`godel_token` cookie that login sets, only from an allowed Origin (the WebSocket's own host, or
GODEL_WS_ALLOWED_ORIGINS), since browsers send cookies with cross-site handshakes too. Verified
exactly like gRPC calls and authorized as `event:read`. A refused credential gets an in-band
`error` message and close code 4401 (4403 when the role may not read events); a credential
revoked while the socket is open gets the same within seconds (runtime/revocation.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from http.cookies import SimpleCookie
from ssl import SSLContext
from urllib.parse import parse_qs, urlsplit

from prometheus_client import Gauge
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from godel_server.event import ws_protocol as wire
from godel_server.event.commands import CommandForwarder
from godel_server.event.durable import DurableSubscriptions
from godel_server.event.hub import SubscriptionHub
from godel_server.event.visibility import SUBSCRIBE_METHOD
from godel_server.event.ws_session import Session
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, GodelError, PermissionDeniedError
from godel_server.runtime.interceptors import KeyVerifier, credential_from
from godel_server.runtime.rbac import authorize
from godel_server.runtime.revocation import StreamGuard

log = logging.getLogger(__name__)

PATH = "/events"
CONNECTIONS = Gauge("godel_event_websocket_connections", "Open WebSocket connections on /events")


BEARER_PROTOCOL = "bearer."
COOKIE = "godel_token"


def offered_protocols(request: Request) -> list[str]:
    return [
        p.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol")
        for p in header.split(",")
        if p.strip()
    ]


def credential_of(request: Request, allowed_origins: Sequence[str] = ()) -> str:
    """The credential of a handshake (see the module docstring for the order)."""
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    if found := credential_from(headers):
        return found
    for protocol in offered_protocols(request):
        if protocol.startswith(BEARER_PROTOCOL) and len(protocol) > len(BEARER_PROTOCOL):
            return protocol[len(BEARER_PROTOCOL) :]
    query = parse_qs(urlsplit(request.path).query)
    if token := (query.get("token") or [""])[0].strip():
        return token
    cookie = SimpleCookie()
    with contextlib.suppress(Exception):
        cookie.load(request.headers.get("cookie", ""))
    morsel = cookie.get(COOKIE)
    if morsel and morsel.value.strip():
        origin = request.headers.get("origin", "")
        if not origin_allowed(origin, request.headers.get("host", ""), allowed_origins):
            raise PermissionDeniedError(
                f"the {COOKIE} cookie is accepted only from an allowed origin (got {origin or 'none'}); "
                "send the credential in a header or a subprotocol instead"
            )
        return morsel.value.strip()
    return ""


def origin_allowed(origin: str, host: str, allowed: Sequence[str]) -> bool:
    """A browser's Origin may use the cookie: one of `allowed`, else the WebSocket's own host."""
    origin = origin.strip().rstrip("/")
    if not origin:
        return False
    if allowed:
        return origin in allowed
    return bool(host) and urlsplit(origin).netloc == host


def _select_subprotocol(_conn: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return Subprotocol(wire.PROTOCOL) if wire.PROTOCOL in offered else None


def _not_found(_conn: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path.rstrip("/") == PATH:
        return None
    body = b'{"code":5,"message":"not found: the WebSocket endpoint is /events"}'
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(HTTPStatus.NOT_FOUND.value, "Not Found", headers, body)


class EventSocketServer:
    def __init__(
        self,
        *,
        db: Database,
        hub: SubscriptionHub,
        durable: DurableSubscriptions,
        verifier: KeyVerifier,
        commands: CommandForwarder,
        guard: StreamGuard,
        host: str,
        port: int,
        allowed_origins: Sequence[str] = (),
        ssl: SSLContext | None = None,
    ) -> None:
        self._guard = guard
        self._allowed_origins = tuple(allowed_origins)
        self._db = db
        self._hub = hub
        self._durable = durable
        self._verifier = verifier
        self._commands = commands
        self._host = host
        self._port = port
        self._ssl = ssl
        self._server: Server | None = None
        self._sessions: set[Session] = set()

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=_not_found,
            select_subprotocol=_select_subprotocol,
            ping_interval=30,
            ping_timeout=30,
            max_size=wire.MAX_MESSAGE_BYTES,
            compression=None,
            ssl=self._ssl,
        )
        log.info("websocket serving", extra={"address": f"{self._host}:{self._port}", "path": PATH})

    async def stop(self) -> None:
        """Tells every client in-band that the service is going away, then closes (1001)."""
        for session in list(self._sessions):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    session.send(wire.error("UNAVAILABLE", "the event service is shutting down; reconnect")),
                    1,
                )
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _authenticate(self, ws: ServerConnection) -> Caller | None:
        assert ws.request is not None
        try:
            credential = credential_of(ws.request, self._allowed_origins)
            if not credential:
                raise AuthenticationError(
                    "missing credentials: send an API key or access token as X-API-Key or "
                    "`Authorization: Bearer`, or offer the subprotocol `bearer.<credential>` "
                    f"next to {wire.PROTOCOL}"
                )
            caller = await self._verifier.verify(credential)
            authorize(caller, SUBSCRIBE_METHOD)
        except GodelError as exc:
            code = {
                AuthenticationError: wire.CLOSE_UNAUTHENTICATED,
                PermissionDeniedError: wire.CLOSE_FORBIDDEN,
            }.get(type(exc), 1011)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(wire.error(exc.status.name, exc.message))
                await ws.close(code, exc.status.name.lower())
            return None
        return caller

    async def _handle(self, ws: ServerConnection) -> None:
        caller = await self._authenticate(ws)
        if caller is None:
            return
        session = Session(
            ws, caller, db=self._db, hub=self._hub, durable=self._durable, commands=self._commands
        )
        self._sessions.add(session)
        unwatch = self._guard.watch(caller.credential, session.revoke)
        CONNECTIONS.inc()
        try:
            await session.run()
        finally:
            unwatch()
            CONNECTIONS.dec()
            self._sessions.discard(session)
