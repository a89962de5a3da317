"""Credential verification for services other than the cluster service: ask
AuthService.Authenticate over gRPC (API keys and access tokens alike) and cache the answer briefly,
never past the credential's expiry (revocations take effect within GODEL_AUTH_CACHE_SECONDS)."""

from __future__ import annotations

import time
from datetime import UTC

import grpc

from godel.v1 import auth_service_pb2, auth_service_pb2_grpc
from godel_server.runtime.apikeys import hash_key
from godel_server.runtime.config import TlsSettings
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError, UnavailableError
from godel_server.runtime.tls import open_channel

_NEGATIVE_TTL = 5.0


class RemoteKeyVerifier:
    def __init__(self, cluster_addr: str, cache_seconds: float, tls: TlsSettings) -> None:
        self._channel = open_channel(cluster_addr, tls)
        self._stub = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self._ttl = cache_seconds
        # digest -> (until when, the caller or why the credential was refused)
        self._cache: dict[str, tuple[float, Caller | str]] = {}

    async def verify(self, credential: str) -> Caller:
        digest = hash_key(credential)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached and cached[0] > now:
            if isinstance(cached[1], str):
                raise AuthenticationError(cached[1])
            return cached[1]
        try:
            reply = await self._stub.Authenticate(
                auth_service_pb2.AuthenticateRequest(credential=credential), timeout=5.0
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                why = exc.details() or "invalid credential"
                self._cache[digest] = (now + min(_NEGATIVE_TTL, self._ttl), why)
                raise AuthenticationError(why) from None
            raise UnavailableError(
                f"cannot verify credentials: auth service unavailable ({exc.code().name})"
            ) from None
        expires_at = reply.expires_at.ToDatetime(tzinfo=UTC) if reply.HasField("expires_at") else None
        caller = Caller(
            key_id=reply.key_id,
            user_id=reply.user_id,
            role=reply.role,
            permissions=tuple(reply.permissions),
            credential=credential,
            username=reply.username,
            teams=tuple(reply.team_ids),
            session_id=reply.session_id,
            expires_at=expires_at,
            requests_per_second=reply.requests_per_second,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        ttl = self._ttl
        if expires_at is not None:
            ttl = min(ttl, expires_at.timestamp() - time.time())
        self._cache[digest] = (now + ttl, caller)
        return caller

    async def close(self) -> None:
        await self._channel.close()
