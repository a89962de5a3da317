"""One trace across the mesh (runtime/tracing.py): a REST CreateAgent through the gateway, with the
caller's `traceparent`, yields spans from the gateway (Envoy's tracer), the agent service (the call,
its SQL statements, the outbox's Kafka sends), the event service (receiving and consuming
`agent:spawn` from Kafka), the agent service again (consuming the run request from Kafka,
scheduling the run) and the worker (the run), all in the caller's trace and each the child of the
hop before. The call's, the statements' and the Kafka spans come from the maintained
instrumentations (their instrumentation scopes). The services and the worker export them over
OTLP/gRPC to a collector in this test process, which decodes the real OTLP protobuf."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.conftest import RunningMesh, running_mesh
from tests.waits import poll

WAIT = 60.0
GRPC = "opentelemetry.instrumentation.grpc"
SQLALCHEMY = "opentelemetry.instrumentation.sqlalchemy"
AIOKAFKA = "opentelemetry.instrumentation.aiokafka"


@dataclass(frozen=True)
class Span:
    service: str
    scope: str  # the instrumentation scope: which package (or Godel, "godel") made the span
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every span it is sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[Span] = []

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=resource.get("service.name", ""),
                            scope=scope_spans.scope.name,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self._spans += received
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self._spans if s.trace_id == trace_id]

    def all(self) -> list[Span]:
        with self._lock:
            return list(self._spans)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield receiver, port
    finally:
        server.stop(None)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, collector: tuple[Collector, int]) -> Iterator[RunningMesh]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with running_mesh(tmp_path_factory.mktemp("traced"), None, "traced", extra_env=env) as running:
        yield running


def _find(spans: list[Span], service: str, kind: int, **attributes: Any) -> Span | None:
    for span in spans:
        if (span.service, span.kind) == (service, kind) and all(
            span.attributes.get(k) == v for k, v in attributes.items()
        ):
            return span
    return None


K = trace_pb2.Span.SpanKind


def test_one_trace_from_the_rest_call_through_kafka_to_the_worker_run(
    mesh: RunningMesh, collector: tuple[Collector, int]
) -> None:
    receiver = collector[0]
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    with mesh.http() as http:
        created = http.post(
            "/api/v1/agents",
            json={"task": "traced", "config": {"runtime": "command", "command": ["sh", "-c", "echo traced"]}},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert created.status_code == 200, created.text
        agent_id = created.json()["id"]
        poll(
            lambda: http.get(f"/api/v1/agents/{agent_id}").json()["lifecycleState"],
            lambda state: state == "LIFECYCLE_STATE_COMPLETED",
            WAIT,
            f"agent {agent_id} completed",
        )

    def hops(spans: list[Span]) -> dict[str, Span | None]:
        return {
            "gateway": next(
                (s for s in spans if s.service == "godel-gateway" and s.parent_id == caller_span), None
            ),
            "create": _find(spans, "godel-agent", K.SPAN_KIND_SERVER, **{"rpc.method": "CreateAgent"}),
            "spawn consumed": _find(
                spans, "godel-event", K.SPAN_KIND_CONSUMER, **{"godel.event.type": "agent:spawn"}
            ),
            "run request consumed": _find(
                spans, "godel-agent", K.SPAN_KIND_CONSUMER, **{"godel.event.type": "run:requested"}
            ),
            "schedule": _find(spans, "godel-agent", K.SPAN_KIND_INTERNAL, **{"godel.agent.id": agent_id}),
            "run": _find(spans, "godel-worker", K.SPAN_KIND_CONSUMER, **{"godel.agent.id": agent_id}),
        }

    spans = poll(
        lambda: receiver.of_trace(trace_id),
        lambda found: all(hops(found).values()),
        WAIT,
        f"the spans of every hop in trace {trace_id}",
    )
    by_id = {s.span_id: s for s in spans}
    found = {name: span for name, span in hops(spans).items() if span is not None}

    # Envoy continues the caller's span, and the agent service Envoy's (the gRPC instrumentation's
    # server span).
    assert found["create"].parent_id == found["gateway"].span_id
    assert found["create"].scope == GRPC
    # The call's SQL statements are spans of it (the SQLAlchemy instrumentation's).
    statements = [s for s in spans if s.parent_id == found["create"].span_id and "db.system" in s.attributes]
    assert statements and {(s.service, s.scope, s.kind) for s in statements} == {
        ("godel-agent", SQLALCHEMY, K.SPAN_KIND_CLIENT)
    }
    # Each Kafka hop is the child of the send of its record (the aiokafka instrumentation's,
    # parented by the outbox row's stored context), which the CreateAgent call caused.
    for consumed in ("spawn consumed", "run request consumed"):
        send = by_id[found[consumed].parent_id]
        assert send.service == "godel-agent" and send.kind == K.SPAN_KIND_PRODUCER and send.scope == AIOKAFKA
        assert send.parent_id == found["create"].span_id
        assert send.attributes["messaging.message.id"] == found[consumed].attributes["messaging.message.id"]
    # The event service received that record (the aiokafka instrumentation's receive span) in the
    # trace of its send.
    spawn_send = found["spawn consumed"].parent_id
    received = [s for s in spans if s.service == "godel-event" and s.parent_id == spawn_send]
    assert any(s.scope == AIOKAFKA and s.kind == K.SPAN_KIND_CONSUMER for s in received), received
    # The run is scheduled from its request (an attempt per pass until a worker has a free slot),
    # and the worker's run is the child of the attempt that assigned it.
    attempts = [
        s for s in spans if s.service == "godel-agent" and s.attributes.get("godel.agent.id") == agent_id
    ]
    assert {s.parent_id for s in attempts} == {found["run request consumed"].span_id}
    assert found["run"].parent_id in {s.span_id for s in attempts}
    assert found["run"].attributes["godel.run.state"] == "SUCCEEDED"


def test_without_a_traceparent_the_gateway_starts_the_trace(
    mesh: RunningMesh, collector: tuple[Collector, int]
) -> None:
    """A call with no `traceparent`: Envoy's span is the root of a new trace, and the service's
    SERVER span is its child. The call is found by the x-request-id Envoy generated and echoed
    (its span's `guid:x-request-id` tag). Envoy keeps its sampling decision in that UUID: a
    client's own x-request-id that is not a UUID, without a traceparent, gets no gateway span."""
    receiver = collector[0]
    with mesh.http() as http:
        created = http.post(
            "/api/v1/agents", json={"task": "untraced", "config": {"runtime": "command", "command": ["true"]}}
        )
        assert created.status_code == 200, created.text
    request_id = created.headers["x-request-id"]

    def pair(spans: list[Span]) -> tuple[Span, Span] | None:
        gateway = next(
            (
                s
                for s in spans
                if s.service == "godel-gateway" and s.attributes.get("guid:x-request-id") == request_id
            ),
            None,
        )
        if gateway is None:
            return None
        child = _find(receiver.of_trace(gateway.trace_id), "godel-agent", K.SPAN_KIND_SERVER)
        return None if child is None else (gateway, child)

    found = poll(
        lambda: pair(receiver.all()),
        lambda result: result is not None,
        WAIT,
        f"the gateway's span of request {request_id} and the agent service's child span",
    )
    assert found is not None
    gateway, create = found
    assert gateway.parent_id == ""  # the root: Envoy started the trace
    assert gateway.kind == K.SPAN_KIND_SERVER
    assert create.parent_id == gateway.span_id
    assert create.attributes["rpc.method"] == "CreateAgent"
