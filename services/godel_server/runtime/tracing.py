"""Distributed tracing with OpenTelemetry: one trace follows a request through every hop of the mesh.

- gRPC: the server interceptor (runtime/interceptors.py) continues the caller's W3C `traceparent`
  (metadata; through the gateway, the HTTP header) in a SERVER span; channels between processes
  (runtime/tls.py) send the current context on every call, in a CLIENT span for unary calls.
- Kafka: the publisher stores the current `traceparent` with the event's outbox row (its headers),
  so the trace survives the commit and a restart; the relay sends the record in a PRODUCER span
  whose context it puts in the record's `traceparent` header; consumers (runtime/consumer.py)
  continue it in a CONSUMER span per event.
- Runs: the agent service's scheduler continues the context of the run request it consumed and
  hands it to the worker in the RunAssignment (`traceparent`); the worker's run is a span of it.

Off by default: without OTEL_EXPORTER_OTLP_ENDPOINT (runtime/config.py TracingSettings) nothing is
installed, the helpers return at a flag test, and no header is added. On, spans are batched and
exported over OTLP/gRPC."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span as Span
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace import Status, StatusCode

from godel_server import __version__
from godel_server.runtime.config import TracingSettings

log = logging.getLogger(__name__)

# The W3C trace-context headers (what the default propagator reads and writes).
TRACE_HEADERS = ("traceparent", "tracestate")

_provider: Any = None
_tracer: trace.Tracer = trace.NoOpTracer()


def install(provider: Any) -> None:
    """Makes `provider` (an SDK TracerProvider) the source of Godel's spans; None turns tracing off."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("godel", __version__) if provider is not None else trace.NoOpTracer()


def configure(settings: TracingSettings, instance: str) -> None:
    """Installs the tracer provider that exports to the OTLP endpoint (nothing when tracing is off)."""
    if not settings.enabled or _provider is not None:
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.instance.id": instance,
            "service.version": __version__,
            "service.namespace": "godel",
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=settings.endpoint, insecure=settings.endpoint.startswith("http://"))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    log.info("tracing on", extra={"endpoint": settings.endpoint, "serviceName": settings.service_name})


def shutdown() -> None:
    """Exports the spans still buffered (at the end of the process)."""
    if _provider is not None:
        _provider.shutdown()


def enabled() -> bool:
    return _provider is not None


def carrier_of(pairs: Iterable[tuple[str, str | bytes]] | Mapping[str, str] | None) -> dict[str, str]:
    """The trace-context entries of metadata or Kafka headers, as text."""
    items = pairs.items() if isinstance(pairs, Mapping) else (pairs or ())
    carrier: dict[str, str] = {}
    for key, value in items:
        name = key.lower()
        if name in TRACE_HEADERS:
            carrier[name] = value.decode(errors="replace") if isinstance(value, bytes) else value
    return carrier


def current_headers() -> dict[str, str]:
    """The current span's context as W3C headers ({} when tracing is off or no span is current)."""
    if _provider is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def headers_of(span: Span | None) -> dict[str, str]:
    """A span's context as W3C headers."""
    if span is None:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def trace_id() -> str:
    """The current trace id (32 hex digits), or "" without a recording span."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


def _parent(parent: Mapping[str, str] | None) -> Context | None:
    return propagate.extract(parent) if parent else None


def start(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Span | None:
    """A span the caller ends (see `end`), child of `parent` (W3C headers) or of the current span;
    None when tracing is off."""
    if _provider is None:
        return None
    return _tracer.start_span(name, context=_parent(parent), kind=kind, attributes=attributes)


def end(span: Span | None, error: BaseException | str | None = None) -> None:
    if span is None:
        return
    if isinstance(error, BaseException):
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, repr(error)))
    elif error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span | None]:
    """A span that is the current one inside the block (ended, with the block's error, after it)."""
    if _provider is None:
        yield None
        return
    with _tracer.start_as_current_span(
        name, context=_parent(parent), kind=kind, attributes=attributes
    ) as current:
        yield current


@contextlib.contextmanager
def current(active: Span | None) -> Iterator[None]:
    """Makes a span the current one inside the block (it is not ended)."""
    if active is None:
        yield
        return
    token = otel_context.attach(trace.set_span_in_context(active))
    try:
        yield
    finally:
        otel_context.detach(token)


# ---- gRPC client side: the context goes with every call between processes ------------------------


def _with_context(details: grpc.aio.ClientCallDetails, carrier: Mapping[str, str]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    for key, value in carrier.items():
        metadata[key] = value
    return details._replace(metadata=metadata)  # a namedtuple


def rpc_attributes(method: str) -> dict[str, str | int]:
    """The semantic-convention attributes of a gRPC call of `method` (/package.Service/Method)."""
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        client = start(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=rpc_attributes(method))
        call = await continuation(_with_context(details, headers_of(client)), request)
        if client is not None:
            code = await call.code()
            client.set_attribute("rpc.grpc.status_code", code.value[0])
            end(client, None if code == grpc.StatusCode.OK else code.name)
        return call


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_context(details, current_headers()), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(_with_context(details, current_headers()), requests)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Callable[..., Awaitable[Any]], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(_with_context(details, current_headers()), requests)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """What a channel to another process needs to carry the trace ([] when tracing is off)."""
    if _provider is None:
        return []
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
