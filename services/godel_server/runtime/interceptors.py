"""gRPC server interceptors: request context, authentication (API keys and access tokens),
authorization from the contract, request bounds (from the contract, runtime/bounds.py), limits per
caller, and the one place where exceptions become statuses (GodelError -> status +
ErrorInfo/BadRequest/RetryInfo; anything else -> INTERNAL with no stack trace for the client).
Streams stay under watch: when the credential that opened one is revoked or expires, the stream
ends with UNAUTHENTICATED (runtime/revocation.py)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc._cython import cygrpc
from prometheus_client import Counter, Histogram

from godel_server.runtime import tracing
from godel_server.runtime.bounds import check as check_bounds
from godel_server.runtime.context import (
    Caller,
    caller_var,
    correlation_id_var,
    method_var,
    request_id_var,
    trace_id_var,
)
from godel_server.runtime.db import driver_message, unreachable
from godel_server.runtime.errors import (
    ERROR_DOMAIN,
    AuthenticationError,
    GodelError,
    RateLimitedError,
    UnavailableError,
    UnimplementedError,
    ValidationError,
)
from godel_server.runtime.federation import forwarded_caller, is_forwarded
from godel_server.runtime.ids import new_id
from godel_server.runtime.limits import CallerLimits, UserSlots, retry_after_header
from godel_server.runtime.rbac import authorize, is_public, rule_for
from godel_server.runtime.revocation import StreamGuard

log = logging.getLogger(__name__)

# Spec §9.1's API metrics (prometheus_client adds `_total` to the counter: godel_api_requests_total):
# every gRPC call a service answers, from a client through the gateway or from another service.
RPC_HANDLED = Counter("godel_api_requests", "API requests (gRPC calls) answered", ["method", "code"])
RPC_SECONDS = Histogram(
    "godel_api_request_duration_seconds",
    "RPC latency (unary: whole call; streams: until the stream ends)",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
    if isinstance(exc, RateLimitedError):
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=exc.status.value[0], message=exc.message, details=details)


def _trailers(status: status_pb2.Status, exc: BaseException | None) -> tuple[tuple[str, str | bytes], ...]:
    """The status details trailer, and `retry-after` (an HTTP header through the gateway) when
    the caller should wait."""
    trailers: list[tuple[str, str | bytes]] = [("grpc-status-details-bin", status.SerializeToString())]
    if isinstance(exc, RateLimitedError):
        trailers.append(("retry-after", retry_after_header(exc.retry_after)))
    return tuple(trailers)


def _internal_status(request_id: str) -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (request id {request_id or 'unknown'})"
    )


def metadata_dict(pairs: Any) -> dict[str, str]:
    """Invocation metadata as a dict of lower-case keys (binary values left out)."""
    result: dict[str, str] = {}
    for key, value in pairs or ():
        if isinstance(value, str):
            result[key.lower()] = value
    return result


MISSING_CREDENTIALS = (
    "missing credentials: send an API key or an access token in the X-API-Key header "
    "or `Authorization: Bearer <credential>`"
)


def credential_from(metadata: dict[str, str]) -> str:
    if key := metadata.get("x-api-key", "").strip():
        return key
    auth = metadata.get("authorization", "").strip()
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return ""


Behavior = Callable[[Any, grpc.aio.ServicerContext], Any]
_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class _Method:
    """What the interceptor needs of one method, worked out once (at its first call), not per call:
    its metric label and the metrics' children for it, whether it is public, its handler's shape."""

    name: str
    label: str  # bounded metric labels: a method of the contract, else "unknown"
    public: bool
    streams: bool
    seconds: Any  # RPC_SECONDS' child for the label
    handled_ok: Any  # RPC_HANDLED's child for (label, OK)

    @classmethod
    def of(cls, name: str, kind: str) -> _Method:
        label = name if rule_for(name) is not None else "unknown"
        return cls(
            name,
            label,
            is_public(name),
            kind != "unary_unary",
            RPC_SECONDS.labels(label),
            RPC_HANDLED.labels(label, "OK"),
        )


@dataclass(frozen=True)
class CallerPolicy:
    """What the interceptor enforces beyond authorization (each part optional)."""

    guard: StreamGuard | None = None
    limits: CallerLimits | None = None
    streams: UserSlots | None = None


class GodelServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Sets the request context, authenticates, authorizes, limits, maps errors and records
    metrics for every RPC."""

    def __init__(self, verifier: KeyVerifier, policy: CallerPolicy | None = None) -> None:
        self._verifier = verifier
        self._policy = policy or CallerPolicy()
        # method -> (the handler served, the same wrapped): grpc.aio asks for the handler of every
        # call, and wrapping it once per method instead saves that work on each call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:
            return self._wrap_handler(_not_served(method), method)  # not kept: any name can come
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = self._wrapped[method] = (handler, self._wrap_handler(handler, method))
        return known[1]

    def _wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        # Every handler shape, coroutine or async generator alike, is authenticated the same way.
        for kind, factory in HANDLER_KINDS:
            behavior = getattr(handler, kind)
            if behavior is not None:
                return factory(
                    self._wrap(behavior, _Method.of(method, kind), kind=kind),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        raise RuntimeError(f"the handler of {method} has no behavior")

    async def _enter(self, method: str, metadata: dict[str, str], public: bool) -> Caller | None:
        request_id = metadata.get("x-request-id") or new_id()
        request_id_var.set(request_id)
        correlation_id_var.set(metadata.get("x-correlation-id") or request_id)
        trace_id_var.set(_trace_id(metadata))
        method_var.set(method)
        caller_var.set(None)
        credential = credential_from(metadata)
        if not credential:
            if not public:
                raise AuthenticationError(MISSING_CREDENTIALS)
            return None
        try:
            caller = await self._verifier.verify(credential)
        except AuthenticationError:
            if not public:
                raise
            return None
        if is_forwarded(metadata):
            # A federation peer calls on someone's behalf (runtime/federation.py): authorized there.
            caller = forwarded_caller(caller, metadata, method)
        elif not public:
            authorize(caller, method)
        caller_var.set(caller)
        if not public and self._policy.limits is not None:
            self._policy.limits.check(caller)
        return caller

    def _hold_stream(
        self, caller: Caller | None, revoked: list[AuthenticationError]
    ) -> list[Callable[[], None]]:
        """A stream's slot in its user's cap and its watch by the guard; returns their releases."""
        if caller is None:
            return []
        releases: list[Callable[[], None]] = []
        if self._policy.streams is not None and caller.role != "worker":
            releases.append(self._policy.streams.acquire(caller.user_id or caller.credential_id))
        # A forwarded caller carries no credential (runtime/federation.py): nothing to watch.
        if self._policy.guard is not None and caller.credential:
            task = asyncio.current_task()

            def on_revoked(error: AuthenticationError) -> None:
                if not revoked and task is not None:
                    revoked.append(error)
                    task.cancel()

            releases.append(self._policy.guard.watch(caller.credential, on_revoked))
        return releases

    async def _fail(
        self, context: grpc.aio.ServicerContext, method: str, label: str, exc: BaseException
    ) -> None:
        if not isinstance(exc, GodelError) and unreachable(exc):
            # Not a fault of this server or of the request: UNAVAILABLE tells the client to try again.
            log.warning("the database is unreachable", extra={"method": method, "error": driver_message(exc)})
            exc = UnavailableError("the database is unreachable; try again shortly")
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
        RPC_HANDLED.labels(label, code_pb2.Code.Name(status.code)).inc()
        await context.abort(_STATUS_BY_NUMBER[status.code], status.message, _trailers(status, exc))

    @contextlib.asynccontextmanager
    async def _rpc(
        self, context: grpc.aio.ServicerContext, rpc: _Method, request: Any
    ) -> AsyncIterator[None]:
        """One RPC: context and authentication first, then the request's bounds (a stream of
        requests is the servicer's to bound), then its errors as statuses, and metrics. A stream
        also holds a slot of its user's cap, and ends when its credential is revoked."""
        started = time.perf_counter()
        revoked: list[AuthenticationError] = []
        releases: list[Callable[[], None]] = []
        method, label = rpc.name, rpc.label
        try:
            caller = await self._enter(method, metadata_dict(context.invocation_metadata()), rpc.public)
            if isinstance(request, Message):
                check_bounds(request)
            if rpc.streams and not rpc.public:
                releases = self._hold_stream(caller, revoked)
            yield
        except asyncio.CancelledError:
            if not revoked:
                raise
            # The guard cancelled the stream: its credential was revoked or expired.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            error = AuthenticationError(f"{revoked[0].message}: this stream is closed")
            await self._fail(context, method, label, error)
            raise
        except grpc.aio.AbortError:
            raise
        except cygrpc.ExecuteBatchError:
            # A read or write found the call over: its client went away (a cancel that raced
            # the write, before the task's cancellation). There is nobody left to answer.
            log.info("the client went away during the call", extra={"method": method})
            RPC_HANDLED.labels(label, "CANCELLED").inc()
            return
        except Exception as exc:
            await self._fail(context, method, label, exc)
            raise
        finally:
            for release in releases:
                release()
            rpc.seconds.observe(time.perf_counter() - started)
        rpc.handled_ok.inc()

    def _wrap(self, behavior: Behavior, rpc: _Method, *, kind: str) -> Behavior:
        """The behavior with context, authentication, error mapping and metrics around it, as a
        coroutine: a unary response is returned, and streamed responses (from an async generator
        as well) are written with context.write. Being one coroutine, the whole call runs inside
        the wrapper, so cancelling it (a revoked credential) always ends in the wrapper's status."""
        writes = kind.endswith("_stream") and not inspect.iscoroutinefunction(behavior)

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            response = None  # also when the client went away (_rpc ends the call quietly)
            async with self._rpc(context, rpc, request):
                produced = behavior(request, context)
                if writes:
                    if hasattr(produced, "__aiter__"):
                        async for item in produced:
                            await context.write(item)
                    else:
                        for item in produced:
                            await context.write(item)
                else:
                    response = await produced if inspect.isawaitable(produced) else produced
            return response

        return call


HANDLER_KINDS: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler]], ...] = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _not_served(method: str) -> grpc.RpcMethodHandler:
    """What answers a method this process does not serve. The interceptor authenticates and
    authorizes it like any call, so an unknown service or method gets PERMISSION_DENIED (it has
    no access rule), and only an RPC of the contract that another process serves gets
    UNIMPLEMENTED. A stream-stream handler of raw bytes fits every call shape."""

    def refuse(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        raise UnimplementedError(
            f"{method.lstrip('/')} is not served on this port: call it through the gateway "
            "(GET /api/v1/capabilities lists which process serves what)"
        )

    return grpc.stream_stream_rpc_method_handler(refuse)


def _trace_id(metadata: dict[str, str]) -> str:
    """The current span's trace (tracing on: the server span of the gRPC instrumentation's
    interceptor, which runs before this one, runtime/tracing.py), else the caller's `traceparent`
    (for the logs)."""
    if current := tracing.trace_id():
        return current
    traceparent = metadata.get("traceparent", "")
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return metadata.get("x-b3-traceid", "")
