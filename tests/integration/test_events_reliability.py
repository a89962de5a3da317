"""The event plane under stress, on its own mesh (real Kafka and PostgreSQL): the event service
killed with SIGKILL during a 10,000-event burst stores every event exactly once with gap-free
sequences; subscribers stay connected across a Kafka restart and lose nothing; 1,000 concurrent
subscribers over gRPC, Server-Sent Events and WebSocket each get exactly their matching events."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect_sync

from godel.v1 import event_pb2, event_service_pb2, event_service_pb2_grpc
from godel_deploy.postgres import PostgresServer
from godel_server.runtime.events import new_event, to_kafka_record
from godel_server.runtime.kafka import new_producer
from tests.conftest import RunningMesh, running_mesh


@pytest.fixture(scope="module")
def rel(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[RunningMesh]:
    with running_mesh(tmp_path_factory.mktemp("evrel"), postgres.url(), "evrel") as running:
        yield running


def _stub(godel: RunningMesh, channel: grpc.Channel) -> event_service_pb2_grpc.EventServiceStub:
    return event_service_pb2_grpc.EventServiceStub(channel)


def newest_sequence(godel: RunningMesh) -> int:
    with grpc.insecure_channel(godel.mesh.address("event")) as channel:
        page = _stub(godel, channel).QueryEvents(
            event_service_pb2.QueryEventsRequest(order=event_service_pb2.SORT_ORDER_DESCENDING, page_size=1),
            metadata=godel.metadata(),
            timeout=10,
        )
    return page.events[0].sequence if page.events else 0


def events_after(godel: RunningMesh, after: int) -> list[event_pb2.Event]:
    found: list[event_pb2.Event] = []
    with grpc.insecure_channel(godel.mesh.address("event")) as channel:
        while True:
            page = _stub(godel, channel).QueryEvents(
                event_service_pb2.QueryEventsRequest(after_sequence=after, page_size=1000),
                metadata=godel.metadata(),
                timeout=30,
            )
            found += page.events
            if len(page.events) < 1000:
                return found
            after = page.events[-1].sequence


def burst_events(marker: str, n: int, kind: str = "burst:tick", groups: int = 64) -> list[event_pb2.Event]:
    events = []
    for i in range(n):
        event = new_event(
            kind, {"i": i}, partition_key=f"{marker}-{i % groups}", component="reliability-test"
        )
        event.metadata.correlation_id = marker
        events.append(event)
    return events


async def produce(
    bootstrap: str, events: list[event_pb2.Event], *, chunk: int = 500, pause: float = 0.0
) -> None:
    """Writes events to their Godel topics as any Kafka client would."""
    producer = new_producer(bootstrap, f"test-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        for start in range(0, len(events), chunk):
            batch = []
            for event in events[start : start + chunk]:
                r = to_kafka_record(event)
                batch.append(await producer.send(r.topic, r.value, key=r.key.encode(), headers=r.headers))
            await asyncio.gather(*batch)
            if pause:
                await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


async def test_event_service_killed_during_a_10000_event_burst_stores_each_event_once(
    rel: RunningMesh,
) -> None:
    marker = uuid.uuid4().hex
    base = await asyncio.to_thread(newest_sequence, rel)
    events = burst_events(marker, 10_000)
    producing = asyncio.create_task(produce(rel.kafka.bootstrap, events, pause=0.1))
    stored_at_kill = await wait_until(
        lambda: max(0, newest_sequence(rel) - base) >= 500 and newest_sequence(rel) - base,
        60,
        "the event store to start storing the burst",
        interval=0.05,
    )
    rel.mesh.kill_service("event")
    await producing
    assert stored_at_kill < 10_000, "the kill came after the whole burst was stored: not a crash test"

    await asyncio.to_thread(rel.mesh.start_service, "event")
    await asyncio.to_thread(rel.mesh.wait_service, "event")
    await wait_until(
        lambda: newest_sequence(rel) - base >= 10_000, 180, "all 10,000 events stored", interval=1
    )
    await asyncio.sleep(2)  # a redelivered duplicate would show up by now
    stored = await asyncio.to_thread(events_after, rel, base)
    burst = [e for e in stored if e.metadata.correlation_id == marker]
    assert len(burst) == 10_000, f"{len(burst)} burst events stored"
    assert {e.id for e in burst} == {e.id for e in events}, "every id stored, exactly once"
    assert [e.sequence for e in stored] == list(range(base + 1, base + 1 + len(stored))), "gap-free sequences"
    assert len({e.id for e in stored}) == len(stored)
    # Per aggregate, the store keeps Kafka's (= production) order.
    by_group: dict[str, list[int]] = {}
    for event in burst:
        by_group.setdefault(event.partition_key, []).append(int(event.payload.fields["i"].number_value))
    assert all(seq == sorted(seq) for seq in by_group.values())


# -- Kafka restart with connected subscribers --------------------------------------------------


def _grpc_reader(
    godel: RunningMesh, marker: str, out: queue.Queue[str], ready: threading.Event, stop: threading.Event
) -> None:
    with godel.channel() as channel:
        call = _stub(godel, channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(
                pattern=["restart:*"], correlation_id=marker, heartbeat_seconds=1
            ),
            metadata=godel.metadata(),
        )
        try:
            for item in call:
                if item.HasField("heartbeat"):
                    ready.set()
                elif item.HasField("event"):
                    out.put(item.event.id)
                if stop.is_set():
                    break
        finally:
            call.cancel()


def _sse_reader(
    godel: RunningMesh, marker: str, out: queue.Queue[str], ready: threading.Event, stop: threading.Event
) -> None:
    params: dict[str, str | int] = {"pattern": "restart:*", "correlationId": marker, "heartbeatSeconds": 1}
    with (
        httpx.Client(
            base_url=godel.rest, headers=godel.headers(), timeout=httpx.Timeout(10, read=60)
        ) as http,
        http.stream("GET", "/api/v1/events/stream", params=params) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                item = json.loads(line[6:])
                if "heartbeat" in item:
                    ready.set()
                elif "event" in item:
                    out.put(item["event"]["id"])
            if stop.is_set():
                return


def _ws_reader(
    godel: RunningMesh, marker: str, out: queue.Queue[str], ready: threading.Event, stop: threading.Event
) -> None:
    with ws_connect_sync(f"{godel.mesh.events_ws_url}?token={godel.admin_key}") as ws:
        payload = {"patterns": ["restart:*"], "filters": {"correlationId": marker}, "heartbeatSeconds": 1}
        ws.send(json.dumps({"id": "s", "type": "subscribe", "timestamp": 0, "payload": payload}))
        while not stop.is_set():
            try:
                doc = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            except ConnectionClosed:
                return
            if doc["type"] == "response":
                ready.set()
            elif doc["type"] == "event":
                out.put(doc["payload"]["id"])


def _publish(godel: RunningMesh, marker: str, n: int) -> list[str]:
    ids = []
    with godel.http() as http:
        for i in range(n):
            reply = http.post(
                "/api/v1/events",
                json={"type": "restart:tick", "payload": {"i": i}, "metadata": {"correlationId": marker}},
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["id"])
    return ids


def _drain(q: queue.Queue[str], want: int, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(q.get(timeout=0.5))
        except queue.Empty:
            continue
    time.sleep(1.0)
    while not q.empty():
        got.append(q.get_nowait())
    return got


def test_subscribers_resume_without_loss_across_a_kafka_restart(rel: RunningMesh) -> None:
    marker = uuid.uuid4().hex
    stop = threading.Event()
    readers = {"grpc": _grpc_reader, "sse": _sse_reader, "websocket": _ws_reader}
    queues: dict[str, queue.Queue[str]] = {name: queue.Queue() for name in readers}
    ready = {name: threading.Event() for name in readers}
    threads = [
        threading.Thread(target=fn, args=(rel, marker, queues[n], ready[n], stop), daemon=True)
        for n, fn in readers.items()
    ]
    for t in threads:
        t.start()
    try:
        assert all(r.wait(20) for r in ready.values()), "subscribers did not start"
        before = _publish(rel, marker, 5)
        for name, q in queues.items():
            assert sorted(_drain(q, 5, 30)) == sorted(before), name

        rel.kafka.stop()
        during = _publish(rel, marker, 5)  # accepted into the outbox while Kafka is down
        rel.kafka.start()
        rel.kafka.wait_ready()
        after = _publish(rel, marker, 5)
        for name, q in queues.items():
            got = _drain(q, 10, 90)
            assert sorted(got) == sorted(during + after), f"{name}: lost or duplicated events"
    finally:
        stop.set()


# -- 1,000 concurrent subscribers -------------------------------------------------------------

SUBSCRIBERS = 1000
GROUPS = 50
PER_GROUP = 3


async def _grpc_sub(
    godel: RunningMesh,
    channel: grpc.aio.Channel,
    group: str,
    got: list[str],
    ready: asyncio.Event,
) -> None:
    call = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
        event_service_pb2.SubscribeEventsRequest(pattern=["load:*"], workflow_id=group, heartbeat_seconds=2),
        metadata=godel.metadata(),
    )
    try:
        async for item in call:
            if item.HasField("heartbeat"):
                ready.set()
            elif item.HasField("event"):
                got.append(item.event.id)
    finally:
        call.cancel()


async def _sse_sub(
    godel: RunningMesh,
    http: httpx.AsyncClient,
    group: str,
    got: list[str],
    ready: asyncio.Event,
) -> None:
    params: dict[str, str | int] = {"pattern": "load:*", "workflowId": group, "heartbeatSeconds": 2}
    async with http.stream("GET", "/api/v1/events/stream", params=params) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                item = json.loads(line[6:])
                if "heartbeat" in item:
                    ready.set()
                elif "event" in item:
                    got.append(item["event"]["id"])


async def _ws_sub(godel: RunningMesh, group: str, got: list[str], ready: asyncio.Event) -> None:
    async with ws_connect(f"{godel.mesh.events_ws_url}?token={godel.admin_key}", open_timeout=60) as ws:
        payload = {"patterns": ["load:*"], "filters": {"workflowId": group}}
        await ws.send(json.dumps({"id": "s", "type": "subscribe", "timestamp": 0, "payload": payload}))
        async for raw in ws:
            doc = json.loads(raw)
            if doc["type"] == "response":
                ready.set()
            elif doc["type"] == "event":
                got.append(doc["payload"]["id"])


async def test_1000_concurrent_subscribers_over_three_transports_get_exactly_their_events(
    rel: RunningMesh,
) -> None:
    marker = uuid.uuid4().hex
    groups = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{marker}-{g}")) for g in range(GROUPS)]
    expected: dict[str, list[str]] = {g: [] for g in groups}
    events = []
    for g in groups:
        for i in range(PER_GROUP):
            e = new_event("load:tick", {"i": i}, partition_key=g, component="load-test", workflow_id=g)
            expected[g].append(e.id)
            events.append(e)
        # Same aggregate, other type: matches the filter but not the pattern.
        events.append(new_event("noise:tick", {}, partition_key=g, component="load-test", workflow_id=g))

    channels = [grpc.aio.insecure_channel(rel.mesh.gateway_address) for _ in range(2)]
    http = httpx.AsyncClient(
        base_url=rel.rest,
        headers=rel.headers(),
        timeout=httpx.Timeout(60, read=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )
    received: list[tuple[str, str, list[str]]] = []
    readies: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(SUBSCRIBERS):
        group, ready = groups[i % GROUPS], asyncio.Event()
        got: list[str] = []
        kind = ("grpc", "sse", "websocket")[i % 3]
        if kind == "grpc":
            coro = _grpc_sub(rel, channels[i % 2], group, got, ready)
        elif kind == "sse":
            coro = _sse_sub(rel, http, group, got, ready)
        else:
            coro = _ws_sub(rel, group, got, ready)
        received.append((kind, group, got))
        readies.append(ready)
        tasks.append(asyncio.create_task(coro))
        if i % 100 == 99:
            await asyncio.sleep(0.2)  # pace the connection storm a little (2 cores)
    try:
        started = time.monotonic()
        while not all(r.is_set() for r in readies):
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()
                pytest.fail("a subscriber ended before it was ready")
            assert time.monotonic() - started < 120, f"{sum(r.is_set() for r in readies)} subscribers ready"
            await asyncio.sleep(0.2)

        await produce(rel.kafka.bootstrap, events)
        for _ in range(450):  # up to 90 s
            if all(len(got) >= PER_GROUP for _, _, got in received):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # duplicates or strays would arrive by now
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()
        await http.aclose()
    wrong = [(kind, group, got) for kind, group, got in received if got != expected[group]]
    assert not wrong, f"{len(wrong)} subscribers got the wrong events, e.g. {wrong[:3]}"


# -- durable subscriptions across an event-service restart ------------------------------------


def test_durable_websocket_subscription_resumes_after_event_service_restarts(rel: RunningMesh) -> None:
    marker, name = uuid.uuid4().hex, f"restart-{uuid.uuid4().hex[:8]}"
    ws_url = f"{rel.mesh.events_ws_url}?token={rel.admin_key}"
    first = _publish(rel, marker, 2)
    payload = {
        "patterns": ["restart:*"],
        "filters": {"correlationId": marker},
        "subscriptionName": name,
        "fromSequence": 0,
    }
    got: list[str] = []
    notice: dict[str, Any] = {}
    with ws_connect_sync(ws_url) as ws:
        ws.send(json.dumps({"id": "s", "type": "subscribe", "timestamp": 0, "payload": payload}))
        while len(got) < 2:
            doc = json.loads(ws.recv(timeout=20))
            if doc["type"] == "event":
                got.append(doc["payload"]["id"])
        assert sorted(got) == sorted(first)
        rel.mesh.stop_service("event")  # graceful: the client is told in-band before the close
        try:
            while True:
                doc = json.loads(ws.recv(timeout=20))
                if doc["type"] == "error":
                    notice = doc
        except ConnectionClosed:
            pass
    assert notice.get("payload", {}).get("code") == "UNAVAILABLE", notice

    rel.mesh.start_service("event")
    rel.mesh.wait_service("event")
    later = _publish(rel, marker, 3)
    resumed: list[str] = []
    with ws_connect_sync(ws_url) as ws:
        ws.send(
            json.dumps(
                {"id": "r", "type": "subscribe", "timestamp": 0, "payload": {"subscriptionName": name}}
            )
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                doc = json.loads(ws.recv(timeout=1.5))
            except TimeoutError:
                if len(resumed) >= 3:
                    break
                continue
            if doc["type"] == "event":
                resumed.append(doc["payload"]["id"])
    assert sorted(resumed) == sorted(later), "resumed right after the last event delivered, no repeats"


def test_durable_grpc_cursor_survives_a_kill_9(rel: RunningMesh) -> None:
    marker, name = uuid.uuid4().hex, f"kill-{uuid.uuid4().hex[:8]}"
    first = _publish(rel, marker, 3)
    request = event_service_pb2.SubscribeEventsRequest(
        pattern=["restart:*"], correlation_id=marker, subscription_name=name, from_sequence=0
    )
    got: list[str] = []
    with rel.channel() as channel:
        call = _stub(rel, channel).SubscribeEvents(request, metadata=rel.metadata(), timeout=30)
        for item in call:
            if item.HasField("event"):
                got.append(item.event.id)
                if len(got) == 3:
                    break
        call.cancel()
    assert sorted(got) == sorted(first)
    time.sleep(1.0)  # the stream's end saved the cursor
    rel.mesh.kill_service("event")
    rel.mesh.start_service("event")
    rel.mesh.wait_service("event")
    later = _publish(rel, marker, 2)
    resumed: list[str] = []
    with rel.channel() as channel:
        call = _stub(rel, channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(subscription_name=name, heartbeat_seconds=1),
            metadata=rel.metadata(),
            timeout=30,
        )
        beats = 0
        for item in call:
            if item.HasField("event"):
                resumed.append(item.event.id)
            elif item.HasField("heartbeat") and len(resumed) >= 2:
                beats += 1
                if beats == 2:
                    break
        call.cancel()
    assert sorted(resumed) == sorted(later)
