"""The raw layer under the sub-clients: one channel to a mesh, the generated stub of every service,
and the three ways to call them (a unary call, a paged listing, a followed server stream), each
turning a failure into a :class:`godel_client.errors.GodelError`.

:class:`Connection` does this over a blocking ``grpc`` channel, :class:`AsyncConnection` over a
``grpc.aio`` one; what they decide (credentials, channel options and retries, when a dropped stream
is resumed and from where, when a login session's access token is refreshed) is shared, so that the
two behave alike. The friendly methods are
declared once for both in one module per service (``agents.py``, ``teams.py``, ...; see
:mod:`godel_client.methods`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeAlias, TypedDict, TypeVar, Unpack

import grpc
import grpc.aio
from google.protobuf import struct_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from godel.v1 import (
    agent_service_pb2_grpc,
    alert_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    autonomic_service_pb2_grpc,
    budget_service_pb2_grpc,
    cluster_service_pb2_grpc,
    event_service_pb2_grpc,
    intent_service_pb2_grpc,
    system_service_pb2_grpc,
    task_service_pb2_grpc,
    team_service_pb2_grpc,
    workflow_service_pb2_grpc,
)
from godel_client.credentials import Target, resolve
from godel_client.errors import (
    AuthError,
    ConfigError,
    GodelError,
    from_rpc_error,
    make_error,
    status_from_number,
)
from godel_client.retries import service_config
from godel_client.sessions import LoginSession

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
USER_AGENT = "godel-client-python"
RECONNECT_FOR_SECONDS = 30.0  # how long a dropped stream keeps trying to resume
RECONNECT_BACKOFF_SECONDS = (0.1, 5.0)  # first and largest wait between two resume attempts

Metadata: TypeAlias = tuple[tuple[str, str | bytes], ...]
_Response = TypeVar("_Response")
_Item = TypeVar("_Item")


@dataclass(frozen=True)
class ServiceStubs:
    """The generated stub of every public Godel service, all on one channel (blocking or asyncio)."""

    agents: agent_service_pb2_grpc.AgentServiceStub
    alerts: alert_service_pb2_grpc.AlertServiceStub
    auth: auth_service_pb2_grpc.AuthServiceStub
    autonomic: autonomic_service_pb2_grpc.AutonomicServiceStub
    budgets: budget_service_pb2_grpc.BudgetServiceStub
    clusters: cluster_service_pb2_grpc.ClusterServiceStub
    events: event_service_pb2_grpc.EventServiceStub
    intent: intent_service_pb2_grpc.IntentServiceStub
    system: system_service_pb2_grpc.SystemServiceStub
    tasks: task_service_pb2_grpc.TaskServiceStub
    teams: team_service_pb2_grpc.TeamServiceStub
    workflows: workflow_service_pb2_grpc.WorkflowServiceStub

    @classmethod
    def on(cls, channel: grpc.Channel | grpc.aio.Channel) -> ServiceStubs:
        return cls(
            agents=agent_service_pb2_grpc.AgentServiceStub(channel),
            alerts=alert_service_pb2_grpc.AlertServiceStub(channel),
            auth=auth_service_pb2_grpc.AuthServiceStub(channel),
            autonomic=autonomic_service_pb2_grpc.AutonomicServiceStub(channel),
            budgets=budget_service_pb2_grpc.BudgetServiceStub(channel),
            clusters=cluster_service_pb2_grpc.ClusterServiceStub(channel),
            events=event_service_pb2_grpc.EventServiceStub(channel),
            intent=intent_service_pb2_grpc.IntentServiceStub(channel),
            system=system_service_pb2_grpc.SystemServiceStub(channel),
            tasks=task_service_pb2_grpc.TaskServiceStub(channel),
            teams=team_service_pb2_grpc.TeamServiceStub(channel),
            workflows=workflow_service_pb2_grpc.WorkflowServiceStub(channel),
        )

    def of(self, service: ServiceDescriptor) -> Any:
        """The stub of ``service`` (generated stubs are named ``<Service>Stub``)."""
        for field in fields(self):
            stub = getattr(self, field.name)
            if type(stub).__name__ == f"{service.name}Stub":
                return stub
        raise LookupError(f"no stub for {service.full_name}")


class Cursor(Protocol):
    """Where a resumable stream has got to: it sees every message, and gives the request that
    continues after the last one seen (e.g. ``from_sequence`` = the last event's sequence)."""

    def seen(self, message: Any) -> None: ...

    def request(self) -> Message: ...


def auth_metadata(token: str | None, api_key: str | None) -> Metadata:
    """The credential as call metadata: a token as ``authorization: Bearer``, a key as ``x-api-key``."""
    if token:
        return ((AUTHORIZATION_HEADER, f"Bearer {token}"),)
    if api_key:
        return ((API_KEY_HEADER, api_key),)
    return ()


def channel_options(max_attempts: int, extra: Iterable[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    return [
        ("grpc.primary_user_agent", USER_AGENT),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(max_attempts)),
        *extra,
    ]


class _Stream:
    """What following one server stream decides, for both connections: which messages end it or
    are handed on, and whether (and after what wait) a dropped stream is resumed, from where."""

    def __init__(
        self,
        request: Message,
        pick: Callable[[Any], Any],
        cursor: Cursor | None,
        address: str,
        reconnect_for: float,
    ) -> None:
        self.request = request
        self._pick = pick
        self._cursor = cursor
        self._address = address
        self._reconnect_for = reconnect_for
        self._failing_since: float | None = None
        self._failures = 0
        self._renewed = False

    def message(self, message: Any) -> tuple[bool, Any]:
        """``(ended, item)`` of one message: an in-band end ends the stream (raising the error it
        carries); ``item`` is None for a message that is not handed on (a heartbeat)."""
        end = _in_band_end(message)
        if end is not None:
            if end.code != 0:
                status = status_from_number(end.code)
                raise make_error(status, end.message, address=self._address, from_server=True)
            return True, None
        self._failing_since, self._failures, self._renewed = None, 0, False
        if self._cursor is not None:
            self._cursor.seen(message)
        return False, self._pick(message)

    def renews(self, error: GodelError | None) -> bool:
        """Whether the stream is reopened (where it got to) after its login session's token is
        refreshed: the server refused the token, e.g. closed the stream as the token expired. Once
        until the next message, so that a refused refreshed token ends the stream."""
        if not isinstance(error, AuthError) or self._cursor is None or self._renewed:
            return False
        self._renewed = True
        self.request = self._cursor.request()
        return True

    def dropped(self, error: GodelError | None) -> float | None:
        """The stream stopped without its in-band end: ``error`` None means the server ended it
        cleanly, and it is over (None). A stream cut on the way is resumed with ``self.request``
        after the seconds returned (jittered exponential backoff); any other error, or one that
        persists for longer than ``reconnect_for`` seconds, is raised."""
        if error is None:
            return None
        if self._cursor is None or not _resumable(error):
            raise error
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._failing_since > self._reconnect_for:
            raise error
        self.request = self._cursor.request()
        first, largest = RECONNECT_BACKOFF_SECONDS
        self._failures += 1
        return random.uniform(0, min(largest, first * 2 ** (self._failures - 1)))


def _resumable(error: GodelError) -> bool:
    """A stream cut on the way (the service, the gateway or the network went away; an HTTP/2 stream
    reset), not refused by a service."""
    if error.status is grpc.StatusCode.UNAVAILABLE:
        return True
    return error.status is grpc.StatusCode.INTERNAL and "RST_STREAM" in error.message


def _in_band_end(message: Any) -> Any:
    """The ``end`` member of a stream message, when it has one and it is set."""
    if "end" in message.DESCRIPTOR.fields_by_name and message.HasField("end"):
        return message.end
    return None


class Settings(TypedDict, total=False):
    """How a client connects, besides the address and the API key (see :class:`GodelClient`)."""

    token: str | None
    profile: str | None
    timeout: float
    max_attempts: int
    reconnect_for: float
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    credentials: grpc.ChannelCredentials | None
    env: Mapping[str, str] | None


def _channel_credentials(target: Target, settings: Settings) -> grpc.ChannelCredentials | None:
    """``credentials`` as given, else the TLS the target resolved to (None: a plaintext channel)."""
    given = settings.get("credentials")
    if given is None:
        return target.tls.credentials() if target.tls is not None else None
    if any(settings.get(key) for key in ("tls_ca", "tls_cert", "tls_key")):
        raise ConfigError("give either credentials or tls_ca/tls_cert/tls_key, not both")
    return given


class _Connection:
    """What both connections hold: the address, the credential and its metadata (a login session's
    access token as it is refreshed), the deadline of unary calls, the channel options, and the
    channel credentials (None: plaintext)."""

    def __init__(
        self, address: str | None = None, api_key: str | None = None, **settings: Unpack[Settings]
    ) -> None:
        self.target = resolve(
            address,
            api_key=api_key,
            token=settings.get("token"),
            tls_ca=settings.get("tls_ca"),
            tls_cert=settings.get("tls_cert"),
            tls_key=settings.get("tls_key"),
            profile=settings.get("profile"),
            env=settings.get("env"),
        )
        self.address = self.target.address
        self.api_key = self.target.api_key
        self.login = LoginSession(self.target.session) if self.target.session is not None else None
        self.timeout = settings.get("timeout", 10.0)
        self.reconnect_for = settings.get("reconnect_for", RECONNECT_FOR_SECONDS)
        self.options = channel_options(settings.get("max_attempts", 5))
        self.credentials = _channel_credentials(self.target, settings)

    @property
    def token(self) -> str | None:
        """The token sent (a login session's current access token)."""
        return self.login.access_token if self.login is not None else self.target.token

    @property
    def metadata(self) -> Metadata:
        return auth_metadata(self.token, self.api_key)

    def error(self, error: grpc.RpcError) -> GodelError:
        return from_rpc_error(error, self.address)

    def _renews(self, error: GodelError) -> bool:
        """Whether a call refused with ``error`` is made again after a refresh: the access token of
        a login session was refused (it expired early, or the server's clock is ahead)."""
        return self.login is not None and isinstance(error, AuthError)

    def _refresh_request(self, refresh_token: str) -> auth_service_pb2.RefreshTokenRequest:
        return auth_service_pb2.RefreshTokenRequest(refresh_token=refresh_token)

    def _stream(self, request: Message, pick: Callable[[Any], Any], cursor: Cursor | None) -> _Stream:
        return _Stream(request, pick, cursor, self.address, self.reconnect_for)


class Connection(_Connection):
    """A blocking channel to a Godel mesh (its Envoy gateway speaks plain gRPC, or gRPC over TLS)
    and the raw stubs (``stubs``). The channel is a secure one for an ``https://`` address or TLS
    files (``tls_ca``, ``tls_cert``/``tls_key``; see :mod:`godel_client.credentials`), or with
    ``credentials`` (``grpc.ssl_channel_credentials(...)``) given as they are; else plaintext."""

    def __init__(
        self, address: str | None = None, api_key: str | None = None, **settings: Unpack[Settings]
    ) -> None:
        super().__init__(address, api_key, **settings)
        if self.credentials is None:
            self.channel = grpc.insecure_channel(self.address, options=self.options)
        else:
            self.channel = grpc.secure_channel(self.address, self.credentials, options=self.options)
        self.stubs = ServiceStubs.on(self.channel)

    def close(self) -> None:
        self.channel.close()

    def refresh(self, *, force: bool = False) -> None:
        """Exchanges the login session's refresh token for a new pair when its access token is due
        (``force``: in any case), under the session store's lock (see godel_client.sessions)."""
        login = self.login
        if login is None:
            return
        with login.store.locked():
            refresh_token = login.claim(force=force)
            if refresh_token is None:
                return
            try:
                response = self.stubs.auth.RefreshToken(
                    self._refresh_request(refresh_token), timeout=self.timeout
                )
            except grpc.RpcError as exc:
                raise login.ended(self.error(exc)) from None
            login.renewed(response)

    def _fresh_metadata(self) -> Metadata:
        if self.login is not None and self.login.due():
            self.refresh()
        return self.metadata

    def unary(self, method: Callable[..., _Response], request: Any, *, anonymous: bool = False) -> _Response:
        """One unary call with the deadline and the credential (``anonymous``: none, for calls
        that carry their own, like Login). A login session's access token is refreshed when it is
        due, and once more when the server refuses it (then the call is made again)."""
        try:
            return method(request, timeout=self.timeout, metadata=() if anonymous else self._fresh_metadata())
        except grpc.RpcError as exc:
            error = self.error(exc)
        if anonymous or not self._renews(error):
            raise error
        self.refresh(force=True)
        try:
            return method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self.error(exc) from None

    def pages(
        self, method: Callable[..., _Response], request: Any, items: Callable[[_Response], Iterable[_Item]]
    ) -> Iterator[_Item]:
        """The items of every page, following ``next_page_token`` as the iterator is consumed."""
        while True:
            page = self.unary(method, request)
            yield from items(page)
            token: str = getattr(page, "next_page_token", "")
            if not token or token == request.page_token:
                return
            request.page_token = token

    def follow(
        self,
        method: Callable[..., Any],
        request: Message,
        pick: Callable[[Any], _Item | None],
        cursor: Cursor | None = None,
    ) -> Iterator[_Item]:
        """The items ``pick`` takes from the messages of a server stream (no deadline: it lives as
        long as the caller reads), until its in-band end; an end with an error raises it. With a
        ``cursor`` a stream cut by the transport is reopened from where it got to. Closing the
        iterator cancels the call."""
        stream = self._stream(request, pick, cursor)
        while True:
            call = method(stream.request, metadata=self._fresh_metadata())
            error: GodelError | None = None
            try:
                for message in call:
                    ended, item = stream.message(message)
                    if ended:
                        return
                    if item is not None:
                        yield item
            except grpc.RpcError as exc:
                error = self.error(exc)
            finally:
                call.cancel()
            if error is not None and self._renews(error) and stream.renews(error):
                self.refresh(force=True)
                continue
            wait = stream.dropped(error)
            if wait is None:
                return
            time.sleep(wait)


class AsyncConnection(_Connection):
    """An asyncio channel (``grpc.aio``) to a Godel mesh; see :class:`Connection`."""

    def __init__(
        self, address: str | None = None, api_key: str | None = None, **settings: Unpack[Settings]
    ) -> None:
        super().__init__(address, api_key, **settings)
        if self.credentials is None:
            self.channel = grpc.aio.insecure_channel(self.address, options=self.options)
        else:
            self.channel = grpc.aio.secure_channel(self.address, self.credentials, options=self.options)
        self.stubs = ServiceStubs.on(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def refresh(self, *, force: bool = False) -> None:
        """See :meth:`Connection.refresh`; the store's lock is awaited, not blocked on."""
        login = self.login
        if login is None:
            return
        async with login.store.locked_async():
            refresh_token = login.claim(force=force)
            if refresh_token is None:
                return
            try:
                response = await self.stubs.auth.RefreshToken(
                    self._refresh_request(refresh_token), timeout=self.timeout
                )
            except grpc.RpcError as exc:
                raise login.ended(self.error(exc)) from None
            login.renewed(response)

    async def _fresh_metadata(self) -> Metadata:
        if self.login is not None and self.login.due():
            await self.refresh()
        return self.metadata

    async def unary(self, method: Callable[..., Any], request: Any, *, anonymous: bool = False) -> Any:
        try:
            metadata = () if anonymous else await self._fresh_metadata()
            return await method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            error = self.error(exc)
        if anonymous or not self._renews(error):
            raise error
        await self.refresh(force=True)
        try:
            return await method(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise self.error(exc) from None

    async def pages(
        self, method: Callable[..., Any], request: Any, items: Callable[[Any], Iterable[_Item]]
    ) -> AsyncIterator[_Item]:
        while True:
            page = await self.unary(method, request)
            for item in items(page):
                yield item
            token: str = getattr(page, "next_page_token", "")
            if not token or token == request.page_token:
                return
            request.page_token = token

    async def follow(
        self,
        method: Callable[..., Any],
        request: Message,
        pick: Callable[[Any], _Item | None],
        cursor: Cursor | None = None,
    ) -> AsyncIterator[_Item]:
        stream = self._stream(request, pick, cursor)
        while True:
            call = method(stream.request, metadata=await self._fresh_metadata())
            error: GodelError | None = None
            try:
                async for message in call:
                    ended, item = stream.message(message)
                    if ended:
                        return
                    if item is not None:
                        yield item
            except grpc.RpcError as exc:
                error = self.error(exc)
            finally:
                call.cancel()
            if error is not None and self._renews(error) and stream.renews(error):
                await self.refresh(force=True)
                continue
            wait = stream.dropped(error)
            if wait is None:
                return
            await asyncio.sleep(wait)


def to_struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    """A JSON-like mapping as a ``google.protobuf.Struct`` (None for none or an empty one)."""
    if not values:
        return None
    document = struct_pb2.Struct()
    document.update(dict(values))
    return document
