"""Tracing (runtime/tracing.py): off by default and then installs nothing; on, the trace goes from a
gRPC client through the server interceptor (the gRPC instrumentation's spans, unary and streamed),
into the SQL statements (the SQLAlchemy instrumentation's), and from a transaction through the
outbox row and the relay into the Kafka record's `traceparent` header (the aiokafka
instrumentation's send), and from a record into its consumer span."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from sqlalchemy import text

from godel.v1 import event_pb2
from godel_server.runtime import rbac, tracing
from godel_server.runtime.config import ConfigError, TlsSettings, load_tracing
from godel_server.runtime.context import trace_id_var
from godel_server.runtime.db import Database
from godel_server.runtime.deadletters import DeadLetterStore
from godel_server.runtime.events import custom_event
from godel_server.runtime.interceptors import GodelServerInterceptor
from godel_server.runtime.outbox import OutboxRelay, enqueue
from godel_server.runtime.tls import open_channel
from tests.fakes.events import KafkaRecord
from tests.unit.test_dead_letters import Consumer
from tests.unit.test_interceptors import Verifier
from tests.unit.test_outbox_relay import FakeProducer
from tests.waits import wait_for_async

SERVICE = "godel.test.Traced"
GRPC_SCOPE = "opentelemetry.instrumentation.grpc"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory; off again after the test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def _traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{format_trace_id(trace_id)}-{format_span_id(span_id)}-01"


def _one(exporter: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.kind == kind]
    assert len(found) == 1, [(s.name, s.kind) for s in exporter.get_finished_spans()]
    return found[0]


async def _server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    """The server's span: it ends after the reply is sent, so the client can see the reply first."""
    await wait_for_async(
        lambda: any(s.kind == SpanKind.SERVER for s in exporter.get_finished_spans()),
        10,
        "the server's span to end",
    )
    return _one(exporter, SpanKind.SERVER)


def test_settings_off_by_default_and_from_the_standard_variables() -> None:
    assert not load_tracing({}, "godel-agent").enabled
    on = load_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, "godel-agent")
    assert on.enabled and on.endpoint == "http://127.0.0.1:4317" and on.service_name == "godel-agent"
    traces = load_tracing(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b:4317",
            "OTEL_SERVICE_NAME": "mine",
        },
        "godel-team",
    )
    assert traces.endpoint == "https://b:4317" and traces.service_name == "mine"
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert not load_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", **off}, "x").enabled
    bad = [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
    ]
    for env, named in bad:
        with pytest.raises(ConfigError, match=named):
            load_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317", **env}, "x")
    with pytest.raises(ConfigError, match="http:// or https://"):
        load_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317"}, "x")


async def test_off_nothing_is_added(agent_db: Database) -> None:
    """Off (no endpoint), no interceptor, instrumentation or header: the database of a process
    is not traced, and aiokafka's send is aiokafka's own."""
    assert not tracing.enabled()
    assert tracing.client_interceptors() == []
    assert tracing.server_interceptors() == []
    assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    assert not AIOKafkaInstrumentor().is_instrumented_by_opentelemetry
    assert not hasattr(AIOKafkaProducer.send, "__wrapped__")
    assert tracing.start("x") is None
    assert tracing.current_headers() == {}
    with tracing.span("x") as span:
        assert span is None


def test_off_a_service_process_does_not_even_load_the_instrumentations() -> None:
    code = (
        "import sys\n"
        "from godel_server.runtime import config, db, host, tracing\n"
        "tracing.configure(config.load_tracing({}, 'godel-agent'), 'a-1')\n"
        "db.Database('sqlite+aiosqlite://')\n"
        "assert tracing.server_interceptors() == tracing.client_interceptors() == []\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.instrumentation')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


@pytest.fixture
async def traced_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, list[tuple[str, str]]]]:
    """A gRPC server with the interceptors; its methods (unary Echo, server-streaming Repeat)
    answer the trace ids they saw (the current span's and the one the logs and events carry)."""
    rule = rbac.Rule(public=False, resource="agent", action="create", scope="own")
    for method in ("Echo", "Repeat"):
        monkeypatch.setitem(rbac.RULES, f"/{SERVICE}/{method}", rule)
    seen: list[tuple[str, str]] = []

    async def echo(request: bytes, context: Any) -> bytes:
        seen.append((tracing.trace_id(), trace_id_var.get()))
        return request

    async def repeat(request: bytes, context: Any) -> AsyncIterator[bytes]:
        seen.append((tracing.trace_id(), trace_id_var.get()))
        for _ in range(2):
            yield request

    # As every service's host has it: the trace's interceptor (tracing on) before Godel's.
    server = grpc.aio.server(
        interceptors=[*tracing.server_interceptors(), GodelServerInterceptor(Verifier())]
    )
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Repeat": grpc.unary_stream_rpc_method_handler(repeat),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", seen
    finally:
        await server.stop(None)


async def test_a_call_between_processes_carries_the_trace(
    spans: InMemorySpanExporter, traced_server: tuple[str, list[tuple[str, str]]]
) -> None:
    address, seen = traced_server
    channel = open_channel(address, TlsSettings())  # the channel every service opens to another
    try:
        with tracing.span("caller") as root:
            assert root is not None
            answer = await channel.unary_unary(f"/{SERVICE}/Echo")(
                b"hi", metadata=(("x-api-key", "admin-key"),)
            )
    finally:
        await channel.close()
    assert answer == b"hi"
    trace_id = format_trace_id(root.get_span_context().trace_id)
    assert seen == [(trace_id, trace_id)]
    client = _one(spans, SpanKind.CLIENT)
    server = await _server_span(spans)
    assert client.name == server.name == f"/{SERVICE}/Echo"
    # Both spans come from the maintained gRPC instrumentation.
    assert client.instrumentation_scope is not None and server.instrumentation_scope is not None
    assert client.instrumentation_scope.name == server.instrumentation_scope.name == GRPC_SCOPE
    assert client.parent is not None and client.parent.span_id == root.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.context.trace_id == root.get_span_context().trace_id
    assert server.attributes is not None and server.attributes["rpc.method"] == "Echo"


async def test_a_stream_carries_the_trace_and_is_one_server_span(
    spans: InMemorySpanExporter, traced_server: tuple[str, list[tuple[str, str]]]
) -> None:
    """Godel's interceptor writes a streamed response with context.write inside one coroutine:
    the instrumentation's server span covers it whole."""
    address, seen = traced_server
    channel = open_channel(address, TlsSettings())
    try:
        with tracing.span("caller") as root:
            assert root is not None
            call = channel.unary_stream(f"/{SERVICE}/Repeat")(b"hi", metadata=(("x-api-key", "admin-key"),))
            answers = [item async for item in call]
    finally:
        await channel.close()
    assert answers == [b"hi", b"hi"]
    trace_id = format_trace_id(root.get_span_context().trace_id)
    assert seen == [(trace_id, trace_id)]
    server = await _server_span(spans)
    await wait_for_async(
        lambda: any(s.kind == SpanKind.CLIENT for s in spans.get_finished_spans()), 10, "the client span"
    )
    client = _one(spans, SpanKind.CLIENT)
    assert client.parent is not None and client.parent.span_id == root.get_span_context().span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.name == f"/{SERVICE}/Repeat" and server.status.is_ok


async def test_a_caller_traceparent_is_continued_and_a_refused_call_keeps_its_code(
    spans: InMemorySpanExporter, traced_server: tuple[str, list[tuple[str, str]]]
) -> None:
    """A client outside the mesh (through the gateway: an HTTP header) sends its traceparent. The
    refusal's code is on the span; as the semantic conventions have it for a server, a client's
    error (here UNAUTHENTICATED) is not the server span's error status."""
    address, _ = traced_server
    parent = _traceparent(0xABC, 0xDEF)
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(f"/{SERVICE}/Echo")(b"hi", metadata=(("traceparent", parent),))
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    server = await _server_span(spans)
    assert server.context.trace_id == 0xABC and server.parent is not None and server.parent.span_id == 0xDEF
    assert server.attributes is not None
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.UNAUTHENTICATED.value[0]


def _producer_without_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[AIOKafkaProducer, list[list[tuple[str, bytes]]]]:
    """A real AIOKafkaProducer, so that the instrumentation wraps its send, with the broker left
    out: the topic's metadata is there at once, partition 0, and the records' headers are kept."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    sent: list[list[tuple[str, bytes]]] = []

    async def metadata(topic: str) -> None:
        return None

    async def add_message(
        *args: Any, headers: list[tuple[str, bytes]], **kwargs: Any
    ) -> asyncio.Future[None]:
        sent.append(list(headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    monkeypatch.setattr(producer.client, "_wait_on_metadata", metadata)
    monkeypatch.setattr(producer, "_partition", lambda *args: 0)
    monkeypatch.setattr(producer._message_accumulator, "add_message", add_message)
    return producer, sent


async def test_the_trace_survives_the_outbox_and_reaches_the_kafka_record(
    spans: InMemorySpanExporter, agent_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = custom_event("trace:test", {"n": 1}, partition_key="a", component="test")
    with tracing.span("request") as request:
        assert request is not None
        async with agent_db.session() as session:
            await enqueue(session, [event])
    producer, sent = _producer_without_broker(monkeypatch)
    relay = OutboxRelay(agent_db, producer, poll_seconds=1.0)
    assert await relay.relay_once(final=True) == 1  # later, in no span: the row kept the context
    (headers,) = sent
    carried = [v.decode()[:-3] for k, v in headers if k == "traceparent"]  # without the flags
    publish = _one(spans, SpanKind.PRODUCER)
    assert publish.instrumentation_scope is not None
    assert publish.instrumentation_scope.name == "opentelemetry.instrumentation.aiokafka"
    # The record's parent is the send (one traceparent: the stored one is not sent on).
    assert carried == [_traceparent(publish.context.trace_id, publish.context.span_id)[:-3]]
    assert publish.context.trace_id == request.get_span_context().trace_id
    assert publish.parent is not None and publish.parent.span_id == request.get_span_context().span_id
    assert publish.attributes is not None and publish.attributes["messaging.message.id"] == event.id


async def test_without_tracing_the_outbox_row_carries_no_trace_context(agent_db: Any) -> None:
    event = custom_event("trace:test", {"n": 1}, partition_key="a", component="test")
    async with agent_db.session() as session:
        await enqueue(session, [event])
    producer = RecordingProducer()
    assert await OutboxRelay(agent_db, producer, poll_seconds=1.0).relay_once(final=True) == 1
    assert not [k for k, _ in producer.headers[0] if k in tracing.TRACE_HEADERS]


class RecordingProducer(FakeProducer):
    def __init__(self) -> None:
        super().__init__()
        self.headers: list[list[tuple[str, bytes]]] = []

    async def send(self, topic: str, *, value: bytes, key: bytes, headers: list[Any]) -> Any:
        self.headers.append(list(headers))
        return await super().send(topic, value=value, key=key, headers=headers)


def test_carrier_of_reads_metadata_and_kafka_headers() -> None:
    parent = _traceparent(1, 2)
    assert tracing.carrier_of([("TraceParent", parent.encode()), ("ce_id", b"x")]) == {"traceparent": parent}
    assert tracing.carrier_of({"traceparent": parent, "x-api-key": "k"}) == {"traceparent": parent}
    assert tracing.carrier_of(None) == {}


class TracedConsumer(Consumer):
    """Records, after the commit, the trace context it would hand on for each event."""

    def __init__(self, db: Any, store: DeadLetterStore) -> None:
        super().__init__(db, store)
        self.handed_on: dict[str, dict[str, str]] = {}

    async def after_commit(self, events: list[event_pb2.Event]) -> None:
        await super().after_commit(events)
        self.handed_on.update({e.id: self.trace_headers(e) for e in events})


async def test_a_consumer_continues_the_trace_of_each_record(
    spans: InMemorySpanExporter, agent_db: Any
) -> None:
    consumer = TracedConsumer(agent_db, DeadLetterStore(agent_db, component="agent-service", instance="a-1"))
    traced, plain = (custom_event("trace:test", {}, partition_key="a", component="test") for _ in range(2))
    parent = _traceparent(0x1234, 0x5678)
    await consumer._process(
        [
            KafkaRecord(traced.SerializeToString(), headers=[("traceparent", parent.encode())]),
            KafkaRecord(plain.SerializeToString(), offset=1),
        ]
    )
    assert consumer.handled == [traced.id, plain.id]
    by_event = {
        s.attributes["messaging.message.id"]: s
        for s in spans.get_finished_spans()
        if s.kind == SpanKind.CONSUMER and s.attributes
    }
    assert set(by_event) == {traced.id, plain.id}
    continued = by_event[traced.id]
    assert continued.context.trace_id == 0x1234
    assert continued.parent is not None and continued.parent.span_id == 0x5678
    assert by_event[plain.id].parent is None  # a record without context starts a trace
    handed = consumer.handed_on[traced.id]["traceparent"]
    assert handed.startswith(_traceparent(0x1234, continued.context.span_id)[:-3])


async def test_statements_are_spans_of_the_trace_they_run_in(
    spans: InMemorySpanExporter, agent_db: Database
) -> None:
    """The database made while tracing is on (as a service's, after tracing.configure) has its
    statements traced by the SQLAlchemy instrumentation, without their parameters, and only
    inside a trace."""
    assert SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    secret = "s3cret-value"
    async with agent_db.reader() as session:
        await session.execute(text("SELECT :value"), {"value": secret})  # outside a trace
    assert not spans.get_finished_spans()
    with tracing.span("request") as request:
        assert request is not None
        async with agent_db.reader() as session:
            await session.execute(text("SELECT :value"), {"value": secret})
    statements = [
        s for s in spans.get_finished_spans() if s.attributes and s.attributes.get("db.system") == "sqlite"
    ]
    selected = [s for s in statements if str((s.attributes or {}).get("db.statement")).startswith("SELECT ?")]
    assert len(selected) == 1, [(s.name, s.attributes) for s in statements]
    (statement,) = selected
    assert statement.instrumentation_scope is not None
    assert statement.instrumentation_scope.name == "opentelemetry.instrumentation.sqlalchemy"
    assert statement.kind == SpanKind.CLIENT
    assert statement.parent is not None and statement.parent.span_id == request.get_span_context().span_id
    assert all(secret not in str(s.attributes) for s in spans.get_finished_spans())
