"""Distributed tracing with OpenTelemetry: one trace follows a request through every hop of the mesh.
What comes from which package (runtime/instrumentation.py sets the maintained ones up):

- gRPC (opentelemetry-instrumentation-grpc): its aio server interceptor runs before Godel's
  (runtime/interceptors.py), so it continues the caller's W3C `traceparent` (metadata; through
  the gateway, the HTTP header) in a SERVER span that the logs' trace id and everything the call
  does belong to; its aio client interceptors, on every channel between processes
  (runtime/tls.py), send the current context in a CLIENT span, streams as well.
- SQL (opentelemetry-instrumentation-sqlalchemy): the process's engine (runtime/db.py) makes each
  statement a CLIENT span (`db.system`, the statement text without its parameters), only inside a
  trace: a background loop's statement (the outbox's poll, a health ping) starts none.
- Kafka (opentelemetry-instrumentation-aiokafka): each send is a PRODUCER span that writes its
  context into the record's `traceparent` header, and each record read a CONSUMER `receive` span.
  The publisher stores the current `traceparent` with the event's outbox row, so the trace
  survives the commit and a restart: the relay (runtime/outbox.py) makes it the current context
  around the send (`continued`). Handling an event is Godel's own CONSUMER `process` span
  (runtime/consumer.py): the package's receive spans end as `getmany` returns, before the batch
  is handled.
- Runs (Godel's own spans): the agent service's scheduler continues the context of the run request
  it consumed and hands it to the worker in the RunAssignment (`traceparent`); the worker's run is
  a span of it.

Off by default: without OTEL_EXPORTER_OTLP_ENDPOINT (runtime/config.py TracingSettings) no provider,
instrumentation or interceptor is installed (none of their packages is even imported), the
helpers return at a flag test, and no header is added. On, spans are batched and exported over
OTLP/gRPC."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span as Span
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace import Status, StatusCode

from godel_server import __version__
from godel_server.runtime.config import TracingSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# The W3C trace-context headers (what the default propagator reads and writes).
TRACE_HEADERS = ("traceparent", "tracestate")

_provider: Any = None
_tracer: trace.Tracer = trace.NoOpTracer()


def install(provider: Any) -> None:
    """Makes `provider` (an SDK TracerProvider) the source of Godel's spans and of the aiokafka
    instrumentation's; None turns tracing off and takes the instrumentations out again."""
    global _provider, _tracer
    if _provider is not None or provider is not None:
        from godel_server.runtime import instrumentation  # only when tracing is or was on

        instrumentation.uninstall()
        if provider is not None:
            instrumentation.install(provider)
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


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """What a gRPC server puts before Godel's interceptor ([] when tracing is off)."""
    if _provider is None:
        return []
    from godel_server.runtime import instrumentation

    return instrumentation.server_interceptors(_provider)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """What a channel to another process needs to carry the trace ([] when tracing is off)."""
    if _provider is None:
        return []
    from godel_server.runtime import instrumentation

    return instrumentation.client_interceptors(_provider)


def trace_engine(engine: AsyncEngine) -> None:
    """Makes the engine's statements spans of the current trace (nothing when tracing is off)."""
    if _provider is None:
        return
    from godel_server.runtime import instrumentation

    instrumentation.trace_engine(engine, _provider)


# ---- Godel's own spans and the context it stores --------------------------------------------------


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
    with _attached(trace.set_span_in_context(active)):
        yield


@contextlib.contextmanager
def continued(carrier: Mapping[str, str]) -> Iterator[None]:
    """Makes the context of W3C headers (stored earlier) the current one inside the block, so the
    spans started in it, by Godel or by an instrumentation, are of that trace (nothing when
    tracing is off or the headers carry no context)."""
    if _provider is None or not carrier:
        yield
        return
    with _attached(propagate.extract(carrier)):
        yield


@contextlib.contextmanager
def _attached(context: otel_context.Context) -> Iterator[None]:
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)
