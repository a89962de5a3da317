"""Distributed tracing with OpenTelemetry: one trace follows a request through every hop of the mesh.
What comes from which package:

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
  around the send. Handling an event is Godel's own CONSUMER `process` span (runtime/consumer.py):
  the package's receive spans end as `getmany` returns, before the batch is handled.
- Runs (Godel's own spans): the agent service's scheduler continues the context of the run request
  it consumed and hands it to the worker in the RunAssignment (`traceparent`); the worker's run is
  a span of it.

Off by default: without OTEL_EXPORTER_OTLP_ENDPOINT (runtime/config.py TracingSettings) no provider,
instrumentation or interceptor is installed, the helpers return at a flag test, and no header is
added. On, spans are batched and exported over OTLP/gRPC."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation import grpc as otel_grpc
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor
from opentelemetry.instrumentation.grpc.version import __version__ as otel_grpc_version
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.trace import Span as Span
from opentelemetry.trace import SpanKind as SpanKind
from opentelemetry.trace import Status, StatusCode

from godel_server import __version__
from godel_server.runtime.config import TracingSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# The schema of the gRPC instrumentation's spans (as its factories give their tracers).
GRPC_SCHEMA = "https://opentelemetry.io/schemas/1.11.0"
# The W3C trace-context headers (what the default propagator reads and writes).
TRACE_HEADERS = ("traceparent", "tracestate")

_provider: Any = None
_tracer: trace.Tracer = trace.NoOpTracer()


def install(provider: Any) -> None:
    """Makes `provider` (an SDK TracerProvider) the source of Godel's spans and of the aiokafka
    instrumentation's; None turns tracing off and takes the instrumentations out again."""
    global _provider, _tracer
    if _provider is not None:
        AIOKafkaInstrumentor().uninstrument()
        if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
            SQLAlchemyInstrumentor().uninstrument()
    _provider = provider
    _tracer = provider.get_tracer("godel", __version__) if provider is not None else trace.NoOpTracer()
    if provider is not None:
        AIOKafkaInstrumentor().instrument(tracer_provider=provider, async_produce_hook=_name_send)


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


# ---- what each package is given when tracing is on ------------------------------------------------


class _ServerSpans(OpenTelemetryAioServerInterceptor):  # type: ignore[misc]
    """The package's aio server interceptor. Godel's interceptor turns every behavior into one
    coroutine, and a streamed response is written with `context.write`, which the package's
    stream wrapper (an async generator over the behavior's responses) cannot run: such a call is
    traced as the package traces a unary one, one span around the whole coroutine."""

    def _intercept_aio_server_stream(self, behavior: Callable[..., Any], handler_call_details: Any) -> Any:
        if inspect.iscoroutinefunction(behavior):
            return self._intercept_aio_server_unary(behavior, handler_call_details)
        return super()._intercept_aio_server_stream(behavior, handler_call_details)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """What a gRPC server puts before Godel's interceptor ([] when tracing is off)."""
    if _provider is None:
        return []
    # The tracer `aio_server_interceptor()` would make (instrumentation scope and all).
    tracer = trace.get_tracer(otel_grpc.__name__, otel_grpc_version, _provider, schema_url=GRPC_SCHEMA)
    return [_ServerSpans(tracer)]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """What a channel to another process needs to carry the trace ([] when tracing is off)."""
    if _provider is None:
        return []
    return list(aio_client_interceptors(tracer_provider=_provider))


def trace_engine(engine: AsyncEngine) -> None:
    """Makes the engine's statements spans of the current trace (nothing when tracing is off).
    One engine per process (runtime/db.py's Database): the instrumentor is installed once."""
    if _provider is None or SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
        return
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine,
        tracer_provider=_InTrace(_provider),
        enable_commenter=False,  # no trace context appended to the SQL text
        skip_dep_check=True,  # it declares SQLAlchemy < 2.1; its event hooks are unchanged in 2.1
    )


async def _name_send(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The send's message id is the event's id (its CloudEvents `ce_id` header)."""
    for key, value in kwargs.get("headers") or ():
        if key == "ce_id" and isinstance(value, bytes):
            span.set_attribute("messaging.message.id", value.decode(errors="replace"))


class _InTrace(trace.TracerProvider):
    """Tracers whose spans exist only inside a trace: without a current span they start none."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self._provider = provider

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _InTraceTracer(self._provider.get_tracer(*args, **kwargs))


class _InTraceTracer(trace.Tracer):
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, name: str, context: Context | None = None, *args: Any, **kwargs: Any) -> Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return trace.INVALID_SPAN
        return self._tracer.start_span(name, context, *args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]
        self, name: str, context: Context | None = None, *args: Any, end_on_exit: bool = True, **kwargs: Any
    ) -> Iterator[Span]:
        with trace.use_span(self.start_span(name, context, *args, **kwargs), end_on_exit=end_on_exit) as span:
            yield span


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
    token = otel_context.attach(trace.set_span_in_context(active))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def continued(carrier: Mapping[str, str]) -> Iterator[None]:
    """Makes the context of W3C headers (stored earlier) the current one inside the block, so the
    spans started in it, by Godel or by an instrumentation, are of that trace (nothing when
    tracing is off or the headers carry no context)."""
    if _provider is None or not carrier:
        yield
        return
    token = otel_context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)
