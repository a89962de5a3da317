"""The agent service's clients of its federation: the peers' gateways (GODEL_FEDERATION_PEERS) and this
cluster's own registry. A call to a peer carries the peer credential and the identity it is made for
(runtime/federation.py); a peer's error comes back as the same Godel error (status, reason, field
violations), its message naming the peer."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from prometheus_client import Counter

from godel.v1 import agent_service_pb2_grpc, cluster_service_pb2_grpc, event_service_pb2_grpc
from godel_server.runtime.config import FederationPeer, TlsSettings
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import FieldViolation, GodelError, UnavailableError, ValidationError
from godel_server.runtime.federation import cluster_channel, forwarding_metadata
from godel_server.runtime.tls import open_channel

FEDERATION_REQUESTS = Counter(
    "godel_federation_requests_total", "Calls to peer clusters", ["peer", "method", "code"]
)
CALL_TIMEOUT = 30.0
STATUS_DETAILS = "grpc-status-details-bin"

Metadata = Sequence[tuple[str, str]]


class RemoteError(GodelError):
    """An error a peer cluster (or this cluster's registry) answered with, as the same status."""

    def __init__(self, status: grpc.StatusCode, code: str, message: str, metadata: dict[str, str]) -> None:
        super().__init__(message, metadata=metadata)
        self.status = status
        self.code = code


def godel_error(exc: grpc.aio.AioRpcError, where: str) -> GodelError:
    """The Godel error a failed call stands for, its message prefixed with `where`."""
    message = f"{where}: {exc.details() or exc.code().name}"
    info = error_details_pb2.ErrorInfo()
    violations: list[FieldViolation] = []
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    detail.Unpack(info)
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and violations:
        return ValidationError(violations, message)
    return RemoteError(exc.code(), info.reason or exc.code().name, message, dict(info.metadata))


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        self.clusters = cluster_service_pb2_grpc.ClusterServiceStub(channel)
        self.events = event_service_pb2_grpc.EventServiceStub(channel)


class PeerClient:
    """One peer cluster, reached through its gateway."""

    def __init__(self, peer: FederationPeer, origin: str) -> None:
        self.name = peer.name
        self.endpoint = peer.endpoint
        self._peer = peer
        self._origin = origin
        self._channel: grpc.aio.Channel | None = None
        self._stubs: _Stubs | None = None

    def _metadata(self, caller: Caller | None, agent_id: str) -> list[tuple[str, str]]:
        credential = self._peer.credential()
        if not credential:
            raise UnavailableError(
                f"no credential for peer cluster {self.name} (credentialFile {self._peer.credential_file})"
            )
        return [("x-api-key", credential), *forwarding_metadata(caller, self._origin, agent_id)]

    def _stub(self, service: str) -> Any:
        if self._stubs is None:
            self._channel = cluster_channel(self.endpoint)
            self._stubs = _Stubs(self._channel)
        return getattr(self._stubs, service)

    async def call(
        self,
        service: str,
        method: str,
        request: Message,
        *,
        caller: Caller | None = None,
        agent_id: str = "",
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        """A unary call of `service` ("agents", "clusters", "events") on the peer, for `caller`
        (None: this cluster on its own behalf)."""
        metadata = self._metadata(caller, agent_id)
        try:
            reply = await getattr(self._stub(service), method)(request, metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            FEDERATION_REQUESTS.labels(self.name, method, exc.code().name).inc()
            raise godel_error(exc, f"peer cluster {self.name}") from None
        FEDERATION_REQUESTS.labels(self.name, method, "OK").inc()
        return reply

    async def stream(
        self, service: str, method: str, request: Message, *, caller: Caller | None = None
    ) -> AsyncGenerator[Any, None]:
        """A server-streaming call on the peer."""
        call = getattr(self._stub(service), method)(request, metadata=self._metadata(caller, ""))
        try:
            async for reply in call:
                yield reply
        except grpc.aio.AioRpcError as exc:
            FEDERATION_REQUESTS.labels(self.name, method, exc.code().name).inc()
            raise godel_error(exc, f"peer cluster {self.name}") from None
        finally:
            call.cancel()
        FEDERATION_REQUESTS.labels(self.name, method, "OK").inc()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


class LocalRegistry:
    """This cluster's own ClusterService (a process of the mesh: TLS when the mesh uses it), called
    with the agent service's API key."""

    def __init__(self, address: str, tls: TlsSettings, key: Any) -> None:
        self._channel = open_channel(address, tls)
        self._stub = cluster_service_pb2_grpc.ClusterServiceStub(self._channel)
        self._key = key

    async def call(self, method: str, request: Message, *, timeout: float = 10.0) -> Any:
        key = self._key()
        if not key:
            raise UnavailableError(
                "the agent service has no API key yet (GODEL_API_KEY or GODEL_API_KEY_FILE)"
            )
        try:
            return await getattr(self._stub, method)(request, metadata=(("x-api-key", key),), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise godel_error(exc, "cluster registry") from None

    async def close(self) -> None:
        await self._channel.close()
