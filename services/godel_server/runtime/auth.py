"""Key verification for services other than the cluster service: ask AuthService.Authenticate over
gRPC and cache the answer briefly (revocations take effect within GODEL_AUTH_CACHE_SECONDS)."""

from __future__ import annotations

import time

import grpc

from godel.v1 import auth_service_pb2, auth_service_pb2_grpc
from godel_server.runtime.apikeys import hash_key
from godel_server.runtime.context import Caller
from godel_server.runtime.errors import AuthenticationError, UnavailableError

_NEGATIVE_TTL = 5.0


class RemoteKeyVerifier:
    def __init__(self, cluster_addr: str, cache_seconds: float) -> None:
        self._channel = grpc.aio.insecure_channel(cluster_addr)
        self._stub = auth_service_pb2_grpc.AuthServiceStub(self._channel)
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def verify(self, credential: str) -> Caller:
        digest = hash_key(credential)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached and cached[0] > now:
            if cached[1] is None:
                raise AuthenticationError("invalid API key")
            return cached[1]
        try:
            reply = await self._stub.Authenticate(
                auth_service_pb2.AuthenticateRequest(credential=credential), timeout=5.0
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                self._cache[digest] = (now + _NEGATIVE_TTL, None)
                raise AuthenticationError(exc.details() or "invalid API key") from None
            raise UnavailableError(
                f"cannot verify credentials: auth service unavailable ({exc.code().name})"
            ) from None
        caller = Caller(
            key_id=reply.key_id,
            user_id=reply.user_id,
            role=reply.role,
            permissions=tuple(reply.permissions),
            credential=credential,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._ttl, caller)
        return caller

    async def close(self) -> None:
        await self._channel.close()
