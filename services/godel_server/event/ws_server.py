"""The WebSocket endpoint `/events` of the event service (spec §3.2, subprotocol godel-events-v1).
Credentials: `?token=<API key>` in the query string (browsers cannot set headers), or the
X-API-Key / `Authorization: Bearer` headers, or a `godel_token` cookie; verified exactly like gRPC
calls and authorized as `event:read`. A refused credential gets an in-band `error` message and
close code 4401 (4403 when the role may not read events)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from http import HTTPStatus
from http.cookies import SimpleCookie
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
from godel_server.event.ws_session import Session
from godel_server.runtime.context import Caller
from godel_server.runtime.db import Database
from godel_server.runtime.errors import AuthenticationError, GodelError, PermissionDeniedError
from godel_server.runtime.interceptors import KeyVerifier, credential_from
from godel_server.runtime.rbac import authorize

log = logging.getLogger(__name__)

PATH = "/events"
SUBSCRIBE_METHOD = "/godel.v1.EventService/SubscribeEvents"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CONNECTIONS = Gauge("godel_event_websocket_connections", "Open WebSocket connections on /events")


def credential_of(request: Request) -> str:
    """The API key of a handshake: `?token=`, then the headers gRPC accepts, then a cookie."""
    query = parse_qs(urlsplit(request.path).query)
    if token := (query.get("token") or [""])[0].strip():
        return token
    headers = {k.lower(): v for k, v in request.headers.raw_items()}
    if found := credential_from(headers):
        return found
    cookie = SimpleCookie()
    with contextlib.suppress(Exception):
        cookie.load(request.headers.get("cookie", ""))
    morsel = cookie.get("godel_token")
    return morsel.value.strip() if morsel else ""


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
        host: str,
        port: int,
    ) -> None:
        self._db = db
        self._hub = hub
        self._durable = durable
        self._verifier = verifier
        self._commands = commands
        self._host = host
        self._port = port
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
        credential = credential_of(ws.request)
        try:
            if not credential:
                raise AuthenticationError(
                    "missing credentials: connect to /events?token=<API key> "
                    "(or send X-API-Key / Authorization: Bearer)"
                )
            caller = await self._verifier.verify(credential)
            authorize(caller, SUBSCRIBE_METHOD)
        except GodelError as exc:
            code = {AuthenticationError: CLOSE_UNAUTHENTICATED, PermissionDeniedError: CLOSE_FORBIDDEN}.get(
                type(exc), 1011
            )
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
        CONNECTIONS.inc()
        try:
            await session.run()
        finally:
            CONNECTIONS.dec()
            self._sessions.discard(session)
