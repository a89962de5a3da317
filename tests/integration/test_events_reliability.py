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
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.events import custom_event, to_kafka_record
from godel_server.runtime.kafka import new_producer
from tests.conftest import RunningMesh, running_mesh
from tests.integration.event_readers import grpc_subscriber, sse_subscriber
from tests.integration.test_events_durable import wait_cursor
from tests.waits import poll, wait_for_async


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
        event = custom_event(
            kind, {"i": i}, partition_key=f"{marker}-{i % groups}", component="reliability-test"
        )
        event.metadata.correlation_id = marker
        events.append(event)
    return events


async def produce(
    bootstrap: str,
    events: list[event_pb2.Event],
    *,
    chunk: int = 500,
    pause: float = 0.0,
    hold: tuple[int, asyncio.Event] | None = None,
    produced: list[int] | None = None,
) -> None:
    """Writes events to their Godel topics as any Kafka client would. With `hold=(n, event)` it
    waits for `event` once n events are sent; `produced` ([0]) counts the events sent."""
    producer = new_producer(KafkaSettings(bootstrap=bootstrap), f"test-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        for start in range(0, len(events), chunk):
            if hold is not None and start == hold[0]:
                await hold[1].wait()
            batch = []
            for event in events[start : start + chunk]:
                r = to_kafka_record(event)
                batch.append(await producer.send(r.topic, r.value, key=r.key.encode(), headers=r.headers))
            await asyncio.gather(*batch)
            if produced is not None:
                produced[0] += len(batch)
            if pause:
                await asyncio.sleep(pause)
    finally:
        await producer.stop()


def stored_of_type(godel: RunningMesh, kind: str, marker: str) -> list[event_pb2.Event]:
    with grpc.insecure_channel(godel.mesh.address("event")) as channel:
        page = _stub(godel, channel).QueryEvents(
            event_service_pb2.QueryEventsRequest(type=[kind], correlation_id=marker, page_size=1000),
            metadata=godel.metadata(),
            timeout=30,
        )
    return list(page.events)


async def test_event_service_killed_during_a_10000_event_burst_stores_each_event_once(
    rel: RunningMesh,
) -> None:
    marker = uuid.uuid4().hex
    base = await asyncio.to_thread(newest_sequence, rel)
    events = burst_events(marker, 10_000)
    # The producer holds after half the burst until the kill: the kill falls mid-burst, whatever
    # the speed of the machine.
    killed, produced = asyncio.Event(), [0]
    producing = asyncio.create_task(
        produce(rel.kafka.bootstrap, events, pause=0.1, hold=(5_000, killed), produced=produced)
    )
    stored_at_kill = await wait_for_async(
        lambda: max(0, newest_sequence(rel) - base) >= 500 and newest_sequence(rel) - base,
        60,
        "the event store to start storing the burst",
        blocking=True,
    )
    with rel.serving_after("event"):
        rel.mesh.kill_service("event")
        assert not producing.done() and produced[0] < 10_000, "the burst was over before the kill"
        killed.set()
        await producing
    assert stored_at_kill < 10_000, "the kill came after the whole burst was stored: not a crash test"
    # One closing event per aggregate of the burst, after it on the same partition: once all are
    # stored, so is every burst event, and any redelivered duplicate of one has been handled.
    closing = burst_events(marker, 64, kind="burst:end")
    await produce(rel.kafka.bootstrap, closing)
    await wait_for_async(
        lambda: len(stored_of_type(rel, "burst:end", marker)) == len(closing),
        180,
        "the events after the burst to be stored",
        interval=1,
        blocking=True,
    )
    stored = await asyncio.to_thread(events_after, rel, base)
    burst = [e for e in stored if e.metadata.correlation_id == marker and e.type == "burst:tick"]
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
    grpc_subscriber(godel, "restart:*", lambda event: out.put(event.id), ready, stop, correlation_id=marker)


def _sse_reader(
    godel: RunningMesh, marker: str, out: queue.Queue[str], ready: threading.Event, stop: threading.Event
) -> None:
    sse_subscriber(godel, "restart:*", lambda event: out.put(event["id"]), ready, stop, correlation_id=marker)


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


def _publish(godel: RunningMesh, marker: str, n: int, kind: str = "restart:tick") -> list[str]:
    """Publishes n events of one aggregate (hence one Kafka partition: stored and delivered in
    the order published)."""
    aggregate = str(uuid.uuid5(uuid.NAMESPACE_URL, marker))
    ids = []
    with godel.http() as http:
        for i in range(n):
            reply = http.post(
                "/api/v1/events",
                json={
                    "type": kind,
                    "payload": {"i": i},
                    "metadata": {"correlationId": marker, "workflowId": aggregate},
                },
            )
            assert reply.status_code == 200, reply.text
            ids.append(reply.json()["id"])
    return ids


def _drain(name: str, q: queue.Queue[str], closing: str, timeout: float) -> list[str]:
    """The ids a subscriber got before the event `closing` (published after every event awaited)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            event_id = q.get(timeout=left)
        except queue.Empty:
            break
        if event_id == closing:
            return got
        got.append(event_id)
    raise AssertionError(f"{name}: the closing event did not arrive within {timeout:g}s; got {got}")


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
        (closing,) = _publish(rel, marker, 1, kind="restart:closing")
        for name, q in queues.items():
            assert _drain(name, q, closing, 30) == before, name

        with rel.kafka_after():
            rel.kafka.stop()
            during = _publish(rel, marker, 5)  # accepted into the outbox while Kafka is down
        after = _publish(rel, marker, 5)
        (closing,) = _publish(rel, marker, 1, kind="restart:closing")
        for name, q in queues.items():
            assert _drain(name, q, closing, 90) == during + after, (
                f"{name}: lost, duplicated or reordered events"
            )
    finally:
        stop.set()


# -- 1,000 concurrent subscribers -------------------------------------------------------------

SUBSCRIBERS = 1000
GROUPS = 50
PER_GROUP = 3
# Subscribers are many callers, as in real use: one key holding all 1000 streams would be refused
# by the per-user caps (GODEL_MAX_STREAMS_PER_USER, GODEL_MAX_SUBSCRIPTIONS_PER_USER: 200 each),
# which this test is not about. Each key holds SUBSCRIBERS / KEYS streams.
KEYS = 10


async def _grpc_sub(
    godel: RunningMesh,
    channel: grpc.aio.Channel,
    key: str,
    group: str,
    got: list[str],
    ready: asyncio.Event,
) -> None:
    call = event_service_pb2_grpc.EventServiceStub(channel).SubscribeEvents(
        event_service_pb2.SubscribeEventsRequest(pattern=["load:*"], workflow_id=group, heartbeat_seconds=2),
        metadata=godel.metadata(key),
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
    key: str,
    group: str,
    got: list[str],
    ready: asyncio.Event,
) -> None:
    params: dict[str, str | int] = {"pattern": "load:*", "workflowId": group, "heartbeatSeconds": 2}
    stream = http.stream("GET", "/api/v1/events/stream", params=params, headers=godel.headers(key))
    async with stream as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                item = json.loads(line[6:])
                if "heartbeat" in item:
                    ready.set()
                elif "event" in item:
                    got.append(item["event"]["id"])


async def _ws_sub(godel: RunningMesh, key: str, group: str, got: list[str], ready: asyncio.Event) -> None:
    async with ws_connect(f"{godel.mesh.events_ws_url}?token={key}", open_timeout=60) as ws:
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
            e = custom_event("load:tick", {"i": i}, partition_key=g, component="load-test", workflow_id=g)
            expected[g].append(e.id)
            events.append(e)
        # Same aggregate, other type: matches the filter but not the pattern.
        events.append(custom_event("noise:tick", {}, partition_key=g, component="load-test", workflow_id=g))
    # Last, one closing event per group, after the group's others on their partition: a subscriber
    # that got it has been handed everything of its group (and any duplicate would have come too).
    for g in groups:
        closing = custom_event("load:closing", {}, partition_key=g, component="load-test", workflow_id=g)
        expected[g].append(closing.id)
        events.append(closing)

    keys = [rel.create_key("admin") for _ in range(KEYS)]
    channels = [grpc.aio.insecure_channel(rel.mesh.gateway_address) for _ in range(2)]
    http = httpx.AsyncClient(
        base_url=rel.rest,
        timeout=httpx.Timeout(60, read=None),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )
    received: list[tuple[str, str, list[str]]] = []
    readies: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(SUBSCRIBERS):
        group, ready = groups[i % GROUPS], asyncio.Event()
        got: list[str] = []
        kind, key = ("grpc", "sse", "websocket")[i % 3], keys[i % KEYS]
        if kind == "grpc":
            coro = _grpc_sub(rel, channels[i % 2], key, group, got, ready)
        elif kind == "sse":
            coro = _sse_sub(rel, http, key, group, got, ready)
        else:
            coro = _ws_sub(rel, key, group, got, ready)
        received.append((kind, group, got))
        readies.append(ready)
        tasks.append(asyncio.create_task(coro))
        if i % 100 == 99:
            await asyncio.sleep(0.2)  # pace the connection storm a little (2 cores)
    try:

        def all_ready() -> bool:
            for task in tasks:
                if task.done():
                    task.result()
                    pytest.fail("a subscriber ended before it was ready")
            return all(r.is_set() for r in readies)

        await wait_for_async(
            all_ready,
            120,
            "every subscriber to be ready",
            interval=0.2,
            describe=lambda: f"{sum(r.is_set() for r in readies)} of {SUBSCRIBERS} ready",
        )
        await produce(rel.kafka.bootstrap, events)
        await wait_for_async(
            lambda: all(got and got[-1] == expected[group][-1] for _, group, got in received),
            90,
            "every subscriber to get its group's closing event",
            interval=0.2,
            describe=lambda: (
                f"{sum(bool(got) and got[-1] == expected[g][-1] for _, g, got in received)} got it"
            ),
        )
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
        with rel.serving_after("event"):
            rel.mesh.stop_service("event")  # graceful: the client is told in-band before the close
            try:
                while True:
                    doc = json.loads(ws.recv(timeout=20))
                    if doc["type"] == "error":
                        notice = doc
            except ConnectionClosed:
                pass
    assert notice.get("payload", {}).get("code") == "UNAVAILABLE", notice

    later = _publish(rel, marker, 3)
    (closing,) = _publish(rel, marker, 1, kind="restart:closing")
    resumed: list[str] = []
    with ws_connect_sync(ws_url) as ws:
        ws.send(
            json.dumps(
                {"id": "r", "type": "subscribe", "timestamp": 0, "payload": {"subscriptionName": name}}
            )
        )
        while closing not in resumed:
            doc = json.loads(ws.recv(timeout=30))
            if doc["type"] == "event":
                resumed.append(doc["payload"]["id"])
    assert resumed == [*later, closing], "resumed right after the last event delivered, no repeats"


def test_durable_grpc_cursor_survives_a_kill_9(rel: RunningMesh) -> None:
    marker, name = uuid.uuid4().hex, f"kill-{uuid.uuid4().hex[:8]}"
    first = _publish(rel, marker, 3)
    request = event_service_pb2.SubscribeEventsRequest(
        pattern=["restart:*"], correlation_id=marker, subscription_name=name, from_sequence=0
    )
    got: list[event_pb2.Event] = []
    with rel.channel() as channel:
        call = _stub(rel, channel).SubscribeEvents(request, metadata=rel.metadata(), timeout=30)
        for item in call:
            if item.HasField("event"):
                got.append(item.event)
                if len(got) == 3:
                    break
        # As in test_events_durable.read_events: the live cursor shows the third event before the
        # hang-up (a hang-up racing its write would have it delivered again, at least once).
        wait_cursor(rel, name, got[-1].sequence)
        call.cancel()
    assert [e.id for e in got] == first
    # The stream's end saves the cursor: wait until the server has it.
    with grpc.insecure_channel(rel.mesh.address("event")) as channel:
        poll(
            lambda: _stub(rel, channel).GetEventSubscription(
                event_service_pb2.GetEventSubscriptionRequest(name=name), metadata=rel.metadata(), timeout=10
            ),
            lambda sub: not sub.connected and sub.last_sequence == got[-1].sequence,
            20,
            f"subscription {name} to keep its cursor",
        )
    with rel.serving_after("event"):
        rel.mesh.kill_service("event")
    later = _publish(rel, marker, 2)
    (closing,) = _publish(rel, marker, 1, kind="restart:closing")
    resumed: list[str] = []
    with rel.channel() as channel:
        call = _stub(rel, channel).SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(subscription_name=name),
            metadata=rel.metadata(),
            timeout=30,
        )
        for item in call:
            if item.HasField("event"):
                resumed.append(item.event.id)
                if item.event.id == closing:
                    break
        call.cancel()
    assert resumed == [*later, closing], "resumed right after the cursor, no repeats"
