"""The maintained OpenTelemetry instrumentations, set up for Godel. runtime/tracing.py imports this
module only when tracing is on, so a process without tracing does not even load them.

- gRPC (opentelemetry-instrumentation-grpc): the aio server interceptor, before Godel's own, and
  the aio client interceptors of every channel between processes.
- SQL (opentelemetry-instrumentation-sqlalchemy): the process's engine, statements only inside a
  trace, without their parameters and without a comment appended to the SQL.
- Kafka (opentelemetry-instrumentation-aiokafka): AIOKafkaProducer.send and the consumer's reads,
  patched for the whole process; a send's span names the event it carries."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation import grpc as otel_grpc
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor
from opentelemetry.instrumentation.grpc.version import __version__ as otel_grpc_version
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.trace import Span

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# The schema of the gRPC instrumentation's spans (as its factories give their tracers).
GRPC_SCHEMA = "https://opentelemetry.io/schemas/1.11.0"


def install(provider: trace.TracerProvider) -> None:
    """Patches aiokafka for the process (the gRPC interceptors and the engine are per object)."""
    AIOKafkaInstrumentor().instrument(tracer_provider=provider, async_produce_hook=_name_send)


def uninstall() -> None:
    """Takes out what `install` and `trace_engine` put in (tests turn tracing off again)."""
    for instrumentor in (AIOKafkaInstrumentor(), SQLAlchemyInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


class _ServerSpans(OpenTelemetryAioServerInterceptor):  # type: ignore[misc]
    """The package's aio server interceptor. Godel's interceptor turns every behavior into one
    coroutine, and a streamed response is written with `context.write`, which the package's
    stream wrapper (an async generator over the behavior's responses) cannot run: such a call is
    traced as the package traces a unary one, one span around the whole coroutine."""

    def _intercept_aio_server_stream(self, behavior: Callable[..., Any], handler_call_details: Any) -> Any:
        if inspect.iscoroutinefunction(behavior):
            return self._intercept_aio_server_unary(behavior, handler_call_details)
        return super()._intercept_aio_server_stream(behavior, handler_call_details)


def server_interceptors(provider: trace.TracerProvider) -> list[grpc.aio.ServerInterceptor]:
    # The tracer `aio_server_interceptor()` would make (instrumentation scope and all).
    tracer = trace.get_tracer(otel_grpc.__name__, otel_grpc_version, provider, schema_url=GRPC_SCHEMA)
    return [_ServerSpans(tracer)]


def client_interceptors(provider: trace.TracerProvider) -> list[grpc.aio.ClientInterceptor]:
    return list(otel_grpc.aio_client_interceptors(tracer_provider=provider))


def trace_engine(engine: AsyncEngine, provider: trace.TracerProvider) -> None:
    """One engine per process (runtime/db.py's Database): the instrumentor is installed once."""
    if SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry:
        return
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine,
        tracer_provider=_InTrace(provider),
        enable_commenter=False,  # no trace context appended to the SQL text
        skip_dep_check=True,  # it declares SQLAlchemy < 2.1; its event hooks are unchanged in 2.1
    )


async def _name_send(span: Span, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The send's message id is the event's id (its CloudEvents `ce_id` header)."""
    for key, value in kwargs.get("headers") or ():
        if key == "ce_id" and isinstance(value, bytes):
            span.set_attribute("messaging.message.id", value.decode(errors="replace"))


class _InTrace(trace.TracerProvider):
    """Tracers whose spans exist only inside a trace: without a current span they start none (a
    background loop's statements, such as the outbox relay's poll, would each start a trace)."""

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
