"""gRPC server interceptors: request context, API-key authentication, and the one place where
exceptions become statuses (GodelError -> status + ErrorInfo/BadRequest; anything else -> INTERNAL
with no stack trace for the client)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from godel_server.runtime.context import Caller, caller_var, correlation_id_var, request_id_var, trace_id_var
from godel_server.runtime.errors import ERROR_DOMAIN, AuthenticationError, GodelError, ValidationError
from godel_server.runtime.rbac import authorize

log = logging.getLogger(__name__)

RPC_HANDLED = Counter("godel_grpc_server_handled_total", "RPCs completed", ["method", "code"])
RPC_SECONDS = Histogram(
    "godel_grpc_server_handling_seconds",
    "RPC latency (unary: whole call; streams: until the stream ends)",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Methods callable without credentials (spec §3.1: health, capabilities, openapi).
PUBLIC_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/godel.v1.SystemService/GetHealth",
    "/godel.v1.SystemService/GetLiveness",
    "/godel.v1.SystemService/GetReadiness",
    "/godel.v1.SystemService/GetCapabilities",
    "/godel.v1.SystemService/GetOpenApi",
    "/godel.v1.AuthService/Authenticate",
)


class KeyVerifier(Protocol):
    async def verify(self, credential: str) -> Caller: ...


def status_for(exc: GodelError) -> status_pb2.Status:
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.code, domain=ERROR_DOMAIN, metadata=exc.metadata))
    details.append(info)
    if isinstance(exc, ValidationError):
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in exc.violations
                ]
            )
        )
        details.append(bad)
    return status_pb2.Status(code=exc.status.value[0], message=exc.message, details=details)


def _internal_status(request_id: str) -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (request id {request_id or 'unknown'})"
    )


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in details.invocation_metadata or ():
        if isinstance(value, str):
            result[key.lower()] = value
    return result


def credential_from(metadata: dict[str, str]) -> str:
    if key := metadata.get("x-api-key", "").strip():
        return key
    auth = metadata.get("authorization", "").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return ""


Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]


class GodelServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sets the request context, authenticates, maps errors and records metrics for every RPC."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        metadata = _metadata(handler_call_details)
        public = method.startswith(PUBLIC_METHOD_PREFIXES)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, metadata, public),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, metadata, public),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:
            # Bidi handlers are coroutines that read and write through their context (worker protocol).
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_unary(handler.stream_stream, method, metadata, public),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, method: str, metadata: dict[str, str], public: bool) -> None:
        request_id = metadata.get("x-request-id") or str(uuid.uuid4())
        request_id_var.set(request_id)
        correlation_id_var.set(metadata.get("x-correlation-id") or request_id)
        trace_id_var.set(_trace_id(metadata))
        caller_var.set(None)
        credential = credential_from(metadata)
        if credential:
            try:
                caller = await self._verifier.verify(credential)
            except AuthenticationError:
                if not public:
                    raise
                return
            caller_var.set(caller)
            if not public:
                authorize(caller, method)
        elif not public:
            raise AuthenticationError(
                "missing credentials: send an API key in the X-API-Key header "
                "or `Authorization: Bearer <key>`"
            )

    async def _fail(self, context: grpc.aio.ServicerContext, method: str, exc: BaseException) -> None:
        if isinstance(exc, GodelError):
            status = status_for(exc)
            level = (
                logging.ERROR
                if exc.status in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                else logging.INFO
            )
            log.log(
                level, "rpc rejected", extra={"method": method, "code": exc.status.name, "error": exc.message}
            )
        elif isinstance(exc, NotImplementedError):
            status = status_pb2.Status(
                code=code_pb2.UNIMPLEMENTED,
                message=f"{method.lstrip('/')} is not implemented yet in this Godel release",
            )
        else:
            log.exception("unhandled error in rpc", extra={"method": method})
            status = _internal_status(request_id_var.get())
        RPC_HANDLED.labels(method, code_pb2.Code.Name(status.code)).inc()
        await context.abort_with_status(rpc_status.to_status(status))

    def _wrap_unary(
        self, behavior: Behavior, method: str, metadata: dict[str, str], public: bool
    ) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                await self._enter(method, metadata, public)
                response = behavior(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._fail(context, method, exc)
                raise
            finally:
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
            RPC_HANDLED.labels(method, "OK").inc()
            return response

        return wrapped

    def _wrap_stream(
        self, behavior: Behavior, method: str, metadata: dict[str, str], public: bool
    ) -> Behavior:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                await self._enter(method, metadata, public)
                async for item in behavior(request, context):
                    yield item
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._fail(context, method, exc)
                raise
            finally:
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
            RPC_HANDLED.labels(method, "OK").inc()

        return wrapped


def _trace_id(metadata: dict[str, str]) -> str:
    traceparent = metadata.get("traceparent", "")
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return metadata.get("x-b3-traceid", "")
