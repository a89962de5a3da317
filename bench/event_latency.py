"""Event-plane benchmark: how long does a committed state change take to reach live subscribers, how
many events per second does the event store take in, and what does each extra subscriber cost?

It brings up a whole local mesh (Kafka, the four services, the Envoy gateway; SQLite by default, a
real PostgreSQL with --postgres) and measures, in one run on the same Kafka:

  latency     CreateAgent over gRPC (the `agent:spawn` event commits in the same transaction as the
              agent) -> that event arriving at
                grpc      a SubscribeEvents stream straight to the event service
                sse       GET /api/v1/events/stream (Server-Sent Events) through Envoy
              next to the floor: raw aiokafka produce -> consume of a same-sized record on the same
              broker, with the producer and consumer settings Godel itself uses (acks=all,
              idempotent, linger 2 ms; read_committed). Samples alternate (raw, Godel, raw, ...),
              one at a time with a small pause.
  throughput  a burst of K events
                kafka-ingest  written straight into `godel.custom.events` as Godel envelopes (key,
                              protobuf value, ce_* headers) until the event store has them all
                publish-api   PublishEvent over gRPC (C in flight) until the store has them all
              next to raw aiokafka produce -> consume of K records of the same size.
  fan-out     S = 1, 10, 100 live gRPC subscribers: CreateAgent -> delivery to every subscriber
              (p50/p99 over all deliveries and of the slowest subscriber per event), and the event
              service's CPU time per event (utime+stime of its process from /proc/<pid>/stat).

Everything binds to 127.0.0.1; every loop is bounded; everything started is stopped again (also on
Ctrl-C).

    python bench/event_latency.py [--samples N] [--burst K] [--fanout 1,10,100] [--postgres] [--quick]

The figures go to bench/results/event_latency.json (--json OUT: elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import aiokafka
import grpc
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from google.protobuf import struct_pb2

from godel.v1 import (
    agent_service_pb2,
    agent_service_pb2_grpc,
    event_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
)
from godel_deploy.kafka import KafkaBroker
from godel_deploy.mesh import Mesh
from godel_server.runtime.config import KafkaSettings
from godel_server.runtime.events import custom_event, to_kafka_record
from godel_server.runtime.kafka import ensure_topics, new_producer

if TYPE_CHECKING:
    from bench import common
else:
    import common

NAME = "event_latency"
RPC_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 15.0  # one sample waits at most this long for its deliveries
STORE_TIMEOUT = 180.0  # a burst waits at most this long for the store to hold it
MAX_LOST_FRACTION = 0.05  # more lost samples than this fails the phase
RAW_LATENCY_TOPIC = "bench.raw-latency"
RAW_BURST_TOPIC = "bench.raw-burst"
RAW_PARTITIONS = 3  # as Godel's topics (GODEL_KAFKA_PARTITIONS)
CUSTOM_TOPIC = "godel.custom.events"
SPAWN = "agent:spawn"


# -- live subscribers ------------------------------------------------------------------------------


class Arrivals:
    """When each subscriber first saw each agent's `agent:spawn` (perf_counter seconds)."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, float]] = {}  # agent id -> subscriber -> arrival
        self._tick = asyncio.Event()

    def record(self, subscriber: str, agent_id: str) -> None:
        self.seen.setdefault(agent_id, {}).setdefault(subscriber, time.perf_counter())
        self._tick.set()

    async def wait(self, agent_id: str, subscribers: int, timeout: float) -> dict[str, float]:
        """The arrivals of `agent_id` once `subscribers` have it, or what arrived by the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._tick.clear()
            got = self.seen.get(agent_id, {})
            left = deadline - time.monotonic()
            if len(got) >= subscribers or left <= 0:
                return dict(got)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), left)

    def forget(self, agent_id: str) -> None:
        self.seen.pop(agent_id, None)


class Subscriber:
    """One live subscription (gRPC or SSE) to `agent:spawn`, run as a task until cancelled."""

    def __init__(self, name: str, arrivals: Arrivals) -> None:
        self.name = name
        self.arrivals = arrivals
        self.ready = asyncio.Event()  # the first heartbeat arrived: the subscription is registered
        self.error = ""
        self.task: asyncio.Task[None] | None = None

    def start(self, run: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except (grpc.aio.AioRpcError, httpx.HTTPError, ValueError, KeyError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"[:300]

        self.task = asyncio.create_task(guarded(), name=f"subscriber-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def grpc_subscriber(
    name: str, stub: event_service_pb2_grpc.EventServiceStub, key: str, arrivals: Arrivals
) -> Subscriber:
    sub = Subscriber(name, arrivals)

    async def run() -> None:
        call = stub.SubscribeEvents(
            event_service_pb2.SubscribeEventsRequest(pattern=[SPAWN], heartbeat_seconds=1, buffer_size=10000),
            metadata=(("x-api-key", key),),
        )
        try:
            async for item in call:
                if item.HasField("event"):
                    arrivals.record(name, item.event.metadata.agent_id)
                else:
                    sub.ready.set()
        finally:
            call.cancel()

    sub.start(run)
    return sub


def sse_subscriber(name: str, http: httpx.AsyncClient, arrivals: Arrivals) -> Subscriber:
    sub = Subscriber(name, arrivals)

    async def run() -> None:
        params: dict[str, str | int] = {"pattern": SPAWN, "heartbeatSeconds": 1}
        async with http.stream("GET", "/api/v1/events/stream", params=params) as reply:
            if reply.status_code != 200:
                raise ValueError(f"SSE stream answered HTTP {reply.status_code}")
            async for line in reply.aiter_lines():
                if not line.startswith("data: "):
                    continue
                item = json.loads(line[6:])
                if "event" in item:
                    arrivals.record(name, item["event"]["metadata"]["agentId"])
                else:
                    sub.ready.set()

    sub.start(run)
    return sub


async def wait_ready(subs: list[Subscriber], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for sub in subs:
        left = max(0.0, deadline - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.ready.wait(), left)
        if not sub.ready.is_set():
            raise RuntimeError(f"subscriber {sub.name} did not become ready: {sub.error or 'no heartbeat'}")


# -- raw Kafka floor -------------------------------------------------------------------------------


class RawKafka:
    """aiokafka producer and consumer with Godel's settings, on the bench's own topics."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.kafka = KafkaSettings(bootstrap=bootstrap, partitions=RAW_PARTITIONS)
        self.producer: AIOKafkaProducer = new_producer(self.kafka, "bench-raw")
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        await ensure_topics(self.kafka, (RAW_LATENCY_TOPIC, RAW_BURST_TOPIC))
        await self.producer.start()

    async def open_consumer(self, topic: str) -> AIOKafkaConsumer:
        """A group-less consumer of every partition of `topic`, positioned at the end."""
        if self.consumer is not None:
            await self.consumer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id="bench-raw",
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_poll_records=500,
        )
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in range(RAW_PARTITIONS)]  # the bench created them
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, not on the first timed fetch
            await consumer.position(tp)
        self.consumer = consumer
        return consumer

    async def latency_sample(self, value: bytes, key: bytes) -> float:
        """Seconds from handing a record to the producer to the consumer returning it."""
        assert self.consumer is not None
        marker = uuid.uuid4().bytes
        started = time.perf_counter()
        await self.producer.send(RAW_LATENCY_TOPIC, value=value, key=key, headers=[("m", marker)])
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            batches = await self.consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if dict(record.headers).get("m") == marker:
                        return time.perf_counter() - started
        raise TimeoutError("raw Kafka record did not come back")

    async def burst(self, values: list[bytes]) -> float:
        """Seconds from the first produce to having consumed all `values` (one topic, 3 partitions)."""
        consumer = await self.open_consumer(RAW_BURST_TOPIC)
        started = time.perf_counter()
        futures = [
            await self.producer.send(RAW_BURST_TOPIC, value=v, key=str(i).encode())
            for i, v in enumerate(values)
        ]
        got = 0
        deadline = time.monotonic() + STORE_TIMEOUT
        while got < len(values) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            got += sum(len(r) for r in batches.values())
        elapsed = time.perf_counter() - started
        await asyncio.gather(*futures)
        if got < len(values):
            raise TimeoutError(f"raw burst: consumed {got} of {len(values)}")
        return elapsed

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await self.producer.stop()


# -- the benchmark -----------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    path: str  # "raw-kafka" | "grpc" | "sse"
    label: str
    measured_from: str
    dist: common.Dist
    lost: int = 0


@dataclass
class ThroughputResult:
    path: str
    label: str
    events: int
    seconds: float
    events_per_s: float
    concurrency: int = 0


@dataclass
class FanoutResult:
    subscribers: int
    samples: int
    lost_deliveries: int
    per_delivery: common.Dist  # every (event, subscriber) pair, from the CreateAgent reply
    slowest: common.Dist  # per event: the last subscriber to get it, from the CreateAgent reply
    event_service_cpu_ms_per_event: float  # net of the service's idle CPU over the same wall time
    event_service_cpu_s: float  # gross, during the step
    wall_s: float
    client_cpu_ms_per_event: float


@dataclass
class Results:
    latency: list[LatencyResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)
    fanout: list[FanoutResult] = field(default_factory=list)
    event_bytes: int = 0
    event_service_idle_cpu: float = 0.0  # CPU seconds per second


class Bench:
    def __init__(self, mesh: Mesh, kafka: KafkaBroker, api_key: str, args: argparse.Namespace) -> None:
        self.mesh = mesh
        self.args = args
        self.key = api_key
        self.metadata = (("x-api-key", api_key),)
        self.agent_channel = grpc.aio.insecure_channel(mesh.address("agent"))
        self.event_channel = grpc.aio.insecure_channel(mesh.address("event"))
        self.agents = agent_service_pb2_grpc.AgentServiceStub(self.agent_channel)
        self.events = event_service_pb2_grpc.EventServiceStub(self.event_channel)
        self.http = httpx.AsyncClient(
            base_url=mesh.gateway_url, headers={"x-api-key": api_key}, timeout=httpx.Timeout(10, read=None)
        )
        self.raw = RawKafka(kafka.bootstrap)
        self.event_pid = mesh.services["event"].pid
        self.results = Results()
        self.counter = 0

    async def close(self) -> None:
        await self.raw.close()
        await self.http.aclose()
        await self.agent_channel.close()
        await self.event_channel.close()

    async def create_agent(self) -> tuple[str, float, float]:
        """CreateAgent; returns (agent id, perf_counter when issued, perf_counter when answered)."""
        self.counter += 1
        request = agent_service_pb2.CreateAgentRequest(
            task=f"bench: event-latency #{self.counter:07d}", label="bench"
        )
        issued = time.perf_counter()
        agent = await self.agents.CreateAgent(request, metadata=self.metadata, timeout=RPC_TIMEOUT)
        return agent.id, issued, time.perf_counter()

    async def spawn_event_bytes(self) -> bytes:
        """A stored `agent:spawn` event, re-serialized as on Kafka: the raw floor sends the same size."""
        reply = await self.events.QueryEvents(
            event_service_pb2.QueryEventsRequest(
                type=[SPAWN], page_size=1, order=event_service_pb2.SORT_ORDER_DESCENDING
            ),
            metadata=self.metadata,
            timeout=RPC_TIMEOUT,
        )
        if not reply.events:
            raise RuntimeError("no agent:spawn event stored after the warm-up")
        event = event_pb2.Event()
        event.CopyFrom(reply.events[0])
        event.sequence = 0
        return event.SerializeToString()

    async def last_sequence(self) -> int:
        reply = await self.events.QueryEvents(
            event_service_pb2.QueryEventsRequest(page_size=1, order=event_service_pb2.SORT_ORDER_DESCENDING),
            metadata=self.metadata,
            timeout=RPC_TIMEOUT,
        )
        return reply.events[0].sequence if reply.events else 0

    async def count_stored(self, event_type: str) -> int:
        """How many events of `event_type` the store holds (pages of 1000; bounded by the burst)."""
        total, token = 0, ""
        for _ in range(self.args.burst // 1000 + 3):
            reply = await self.events.QueryEvents(
                event_service_pb2.QueryEventsRequest(type=[event_type], page_size=1000, page_token=token),
                metadata=self.metadata,
                timeout=RPC_TIMEOUT,
            )
            total += len(reply.events)
            token = reply.next_page_token
            if not token:
                break
        return total

    async def wait_stored(self, target_sequence: int, started: float) -> float:
        """Seconds from `started` until the store's last sequence reaches `target_sequence`."""
        deadline = time.monotonic() + STORE_TIMEOUT
        while time.monotonic() < deadline:
            if await self.last_sequence() >= target_sequence:
                return time.perf_counter() - started
            await asyncio.sleep(0.02)
        raise TimeoutError(
            f"the event store did not reach sequence {target_sequence} in {STORE_TIMEOUT:.0f}s"
        )

    # -- phases ----------------------------------------------------------------------------------

    async def warm_up(self) -> None:
        """Connections, Envoy clusters, DB pools, the auth cache, topic metadata on both sides."""
        arrivals = Arrivals()
        sub = grpc_subscriber("warm", self.events, self.key, arrivals)
        try:
            await wait_ready([sub])
            for _ in range(max(self.args.warmup, 1)):
                agent_id, _i, _a = await self.create_agent()
                got = await arrivals.wait(agent_id, 1, DELIVERY_TIMEOUT)
                if not got:
                    raise RuntimeError(f"warm-up: agent:spawn of {agent_id} never reached a subscriber")
        finally:
            await sub.stop()
        await self.raw.start()
        value = await self.spawn_event_bytes()
        self.results.event_bytes = len(value)
        await self.raw.open_consumer(RAW_LATENCY_TOPIC)
        for _ in range(max(self.args.warmup, 1)):
            await self.raw.latency_sample(value, b"warm-up")

    async def latency(self) -> None:
        n = self.args.samples
        common.say(
            f"latency: {n} samples each of raw Kafka and CreateAgent -> gRPC + SSE subscribers, alternating"
        )
        arrivals = Arrivals()
        subs = [
            grpc_subscriber("grpc", self.events, self.key, arrivals),
            sse_subscriber("sse", self.http, arrivals),
        ]
        value = await self.spawn_event_bytes()
        raw: list[float] = []
        from_reply: dict[str, list[float]] = {"grpc": [], "sse": []}
        from_issue: dict[str, list[float]] = {"grpc": [], "sse": []}
        lost = {"grpc": 0, "sse": 0}
        try:
            await wait_ready(subs)
            for i in range(n):
                raw.append(await self.raw.latency_sample(value, uuid.uuid4().hex.encode()))
                await asyncio.sleep(self.args.pause)
                agent_id, issued, answered = await self.create_agent()
                got = await arrivals.wait(agent_id, 2, DELIVERY_TIMEOUT)
                for name in ("grpc", "sse"):
                    if name in got:
                        from_reply[name].append(got[name] - answered)
                        from_issue[name].append(got[name] - issued)
                    else:
                        lost[name] += 1
                arrivals.forget(agent_id)
                if sum(lost.values()) > MAX_LOST_FRACTION * n * 2:
                    errors = "; ".join(f"{s.name}: {s.error}" for s in subs if s.error)
                    raise RuntimeError(f"latency: too many events lost {lost} {errors}")
                if (i + 1) % max(1, n // 5) == 0:
                    common.say(
                        f"  {i + 1}/{n}  raw p50 {common.Dist.of(raw).p50_ms:6.2f} ms  grpc p50 "
                        f"{common.Dist.of(from_reply['grpc']).p50_ms:6.2f} ms  sse p50 {common.Dist.of(from_reply['sse']).p50_ms:6.2f} ms"
                    )
                await asyncio.sleep(self.args.pause)
        finally:
            for sub in subs:
                await sub.stop()
        out = self.results.latency
        out.append(
            LatencyResult("raw-kafka", "raw aiokafka produce -> consume", "produce call", common.Dist.of(raw))
        )
        labels = {"grpc": "gRPC SubscribeEvents (direct)", "sse": "SSE via Envoy"}
        for name in ("grpc", "sse"):
            out.append(
                LatencyResult(
                    name, labels[name], "CreateAgent reply", common.Dist.of(from_reply[name]), lost[name]
                )
            )
            out.append(
                LatencyResult(
                    name, labels[name], "CreateAgent issued", common.Dist.of(from_issue[name]), lost[name]
                )
            )

    async def throughput(self) -> None:
        k = self.args.burst
        run = uuid.uuid4().hex[:8]
        out = self.results.throughput

        # Godel envelopes straight into Kafka: the event service's ingest (consume, dedupe, store).
        event_type = f"bench:burst-kafka-{run}"
        events = [
            custom_event(event_type, {"i": i, "run": run}, partition_key=f"bench-{i % 64}", component="bench")
            for i in range(k)
        ]
        records = [to_kafka_record(e) for e in events]
        assert all(r.topic == CUSTOM_TOPIC for r in records)
        size = statistics.fmean(len(r.value) for r in records)
        common.say(f"throughput: {k} Godel envelopes ({size:.0f} B each) straight into {CUSTOM_TOPIC}")
        base = await self.last_sequence()
        started = time.perf_counter()
        futures = [
            await self.raw.producer.send(r.topic, value=r.value, key=r.key.encode(), headers=r.headers)
            for r in records
        ]
        await asyncio.gather(*futures)
        produced = time.perf_counter() - started
        seconds = await self.wait_stored(base + k, started)
        stored = await self.count_stored(event_type)
        if stored != k:
            raise RuntimeError(f"kafka-ingest: {stored} of {k} burst events stored")
        common.say(
            f"  produced in {produced:.2f}s, all {k} stored after {seconds:.2f}s = {k / seconds:.0f} events/s"
        )
        out.append(ThroughputResult("kafka-ingest", "Kafka -> event store (ingest)", k, seconds, k / seconds))

        # The same number of same-sized records, raw produce -> consume: the median of three bursts
        # (one burst takes only ~0.1-0.3 s, so a single one is at the mercy of the scheduler).
        runs = [await self.raw.burst([r.value for r in records]) for _ in range(3)]
        seconds = statistics.median(runs)
        common.say(
            f"  raw aiokafka produce -> consume of {k}: {', '.join(f'{x:.2f}' for x in runs)}s, "
            f"median {seconds:.2f}s = {k / seconds:.0f} records/s"
        )
        out.append(ThroughputResult("raw-kafka", "raw aiokafka produce -> consume", k, seconds, k / seconds))

        # PublishEvent over gRPC: API, the event service's outbox, Kafka, ingest.
        c = self.args.concurrency
        event_type = f"bench:burst-api-{run}"
        common.say(f"throughput: {k} PublishEvent calls, {c} in flight, until all are stored")
        base = await self.last_sequence()
        next_i = iter(range(k))
        errors: list[str] = []

        async def worker() -> None:
            for i in next_i:
                payload = struct_pb2.Struct()
                payload.update({"run": run, "i": i})
                try:
                    await self.events.PublishEvent(
                        event_service_pb2.PublishEventRequest(type=event_type, payload=payload),
                        metadata=self.metadata,
                        timeout=RPC_TIMEOUT,
                    )
                except grpc.aio.AioRpcError as exc:
                    errors.append(f"{exc.code().name}: {exc.details()}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        answered = time.perf_counter() - started
        if errors:
            raise RuntimeError(f"publish-api: {len(errors)} calls failed, first: {errors[0]}")
        seconds = await self.wait_stored(base + k, started)
        stored = await self.count_stored(event_type)
        if stored != k:
            raise RuntimeError(f"publish-api: {stored} of {k} published events stored")
        common.say(
            f"  answered in {answered:.2f}s, all {k} stored after {seconds:.2f}s = {k / seconds:.0f} events/s"
        )
        out.append(
            ThroughputResult("publish-api", "PublishEvent (gRPC) -> event store", k, seconds, k / seconds, c)
        )

    async def idle_cpu_rate(self, seconds: float = 3.0) -> float:
        """CPU seconds per second the event service spends with nothing to do (Kafka polls, timers)."""
        cpu0, wall0 = common.cpu_seconds(self.event_pid), time.perf_counter()
        await asyncio.sleep(seconds)
        return (common.cpu_seconds(self.event_pid) - cpu0) / (time.perf_counter() - wall0)

    async def fanout(self) -> None:
        self.results.event_service_idle_cpu = await self.idle_cpu_rate()
        common.say(f"fan-out: event service idle CPU {self.results.event_service_idle_cpu * 1000:.1f} ms/s")
        for count in self.args.fanout:
            arrivals = Arrivals()
            channels = [grpc.aio.insecure_channel(self.mesh.address("event")) for _ in range(min(count, 10))]
            stubs = [event_service_pb2_grpc.EventServiceStub(ch) for ch in channels]
            subs = [grpc_subscriber(f"s{i}", stubs[i % len(stubs)], self.key, arrivals) for i in range(count)]
            n = self.args.fanout_samples
            common.say(f"fan-out: {count} gRPC subscribers, {n} CreateAgent samples")
            per_delivery: list[float] = []
            slowest: list[float] = []
            lost = 0
            try:
                await wait_ready(subs, timeout=60)
                await asyncio.sleep(1.0)  # let the subscribers' first heartbeats pass
                cpu0, client0, wall0 = (
                    common.cpu_seconds(self.event_pid),
                    time.process_time(),
                    time.perf_counter(),
                )
                for _ in range(n):
                    agent_id, _issued, answered = await self.create_agent()
                    got = await arrivals.wait(agent_id, count, DELIVERY_TIMEOUT)
                    lost += count - len(got)
                    per_delivery.extend(t - answered for t in got.values())
                    if len(got) == count:
                        slowest.append(max(got.values()) - answered)
                    arrivals.forget(agent_id)
                    if lost > MAX_LOST_FRACTION * n * count:
                        raise RuntimeError(f"fan-out {count}: {lost} deliveries lost")
                    await asyncio.sleep(self.args.pause)
                cpu = common.cpu_seconds(self.event_pid) - cpu0
                client = time.process_time() - client0
                wall = time.perf_counter() - wall0
            finally:
                for sub in subs:
                    await sub.stop()
                for ch in channels:
                    await ch.close()
            result = FanoutResult(
                subscribers=count,
                samples=n,
                lost_deliveries=lost,
                per_delivery=common.Dist.of(per_delivery),
                slowest=common.Dist.of(slowest),
                event_service_cpu_ms_per_event=(cpu - self.results.event_service_idle_cpu * wall) / n * 1000,
                event_service_cpu_s=cpu,
                wall_s=wall,
                client_cpu_ms_per_event=client / n * 1000,
            )
            common.say(
                f"  p50 {result.per_delivery.p50_ms:6.2f} ms  p99 {result.per_delivery.p99_ms:7.2f} ms  "
                f"slowest-subscriber p99 {result.slowest.p99_ms:7.2f} ms  "
                f"event-service CPU {result.event_service_cpu_ms_per_event:.2f} ms/event"
            )
            self.results.fanout.append(result)


async def run_benchmark(mesh: Mesh, kafka: KafkaBroker, api_key: str, args: argparse.Namespace) -> Results:
    bench = Bench(mesh, kafka, api_key, args)
    try:
        common.say(
            f"warm-up: {args.warmup} CreateAgent -> subscriber and {args.warmup} raw Kafka round trips"
        )
        await bench.warm_up()
        if "latency" in args.phases:
            await bench.latency()
        if "throughput" in args.phases:
            await bench.throughput()
        if "fanout" in args.phases:
            await bench.fanout()
        return bench.results
    finally:
        await bench.close()


# -- reporting ---------------------------------------------------------------------------------------


def ratios(results: Results) -> dict[str, float]:
    out: dict[str, float] = {}
    raw = next((r for r in results.latency if r.path == "raw-kafka"), None)
    if raw is not None:
        for r in results.latency:
            if r.path != "raw-kafka" and r.measured_from == "CreateAgent reply":
                out[f"{r.path}_p50_x_raw"] = r.dist.p50_ms / raw.dist.p50_ms
                out[f"{r.path}_p99_x_raw"] = r.dist.p99_ms / raw.dist.p99_ms
    raw_t = next((t for t in results.throughput if t.path == "raw-kafka"), None)
    if raw_t is not None:
        for t in results.throughput:
            if t.path != "raw-kafka":
                out[f"{t.path}_throughput_fraction_of_raw"] = t.events_per_s / raw_t.events_per_s
    base = next((f for f in results.fanout if f.subscribers == 1), None)
    for f in results.fanout:
        if base is not None and f.subscribers > 1:
            out[f"fanout_{f.subscribers}_cpu_ms_per_extra_subscriber_per_event"] = (
                f.event_service_cpu_ms_per_event - base.event_service_cpu_ms_per_event
            ) / (f.subscribers - 1)
    return out


def figures_of(payload: dict[str, Any]) -> dict[str, common.Figure]:
    """Latency p50/p99 per path, throughput per path, fan-out latency and CPU per subscriber count,
    and the ratios against raw aiokafka."""
    figures: dict[str, common.Figure] = {}
    for r in payload["latency"]:
        key = f"latency/{r['path']}/from {r['measured_from']}"
        figures[f"{key}/p50"] = common.lower(r["dist"]["p50_ms"], "ms")
        figures[f"{key}/p99"] = common.lower(r["dist"]["p99_ms"], "ms")
    for t in payload["throughput"]:
        figures[f"throughput/{t['path']}"] = common.higher(t["events_per_s"], "events/s")
    for f in payload["fanout"]:
        key = f"fanout/{f['subscribers']} subscribers"
        figures[f"{key}/p50"] = common.lower(f["per_delivery"]["p50_ms"], "ms")
        figures[f"{key}/slowest p99"] = common.lower(f["slowest"]["p99_ms"], "ms")
        figures[f"{key}/event-service CPU per event"] = common.lower(
            f["event_service_cpu_ms_per_event"], "ms"
        )
    for key, value in payload["ratios"].items():
        if "fraction_of_raw" in key:
            figures[f"ratio/{key}"] = common.higher(value, "fraction")
        else:
            figures[f"ratio/{key}"] = common.lower(value, "x" if key.endswith("_x_raw") else "ms")
    return figures


def print_report(facts: dict[str, Any], args: argparse.Namespace, results: Results) -> None:
    line = "=" * 104
    print()
    print(line)
    print("Godel event-plane benchmark")
    print(
        f"machine: {facts['usable_cores']} cores ({facts['cpu_model'] or 'unknown cpu'}), "
        f"Python {facts['python']}, grpcio {facts['grpcio']}, aiokafka {facts['aiokafka']}, "
        f"load avg at start {facts['load_avg_at_start']}, at end {facts.get('load_avg_at_end')}"
    )
    print(f"database: {facts['db_backend']}; event size on Kafka: {results.event_bytes} bytes")
    print(line)
    raw = next((r for r in results.latency if r.path == "raw-kafka"), None)
    if results.latency:
        print(f"latency: {args.samples} sequential samples, {args.pause * 1000:.0f} ms pause between samples")
        head = f"{'path':<34}{'measured from':<20}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'mean ms':>9}{'max ms':>9}{'lost':>6}{'p50 x raw':>11}"
        print(head)
        print("-" * len(head))
        for r in results.latency:
            x = f"{r.dist.p50_ms / raw.dist.p50_ms:10.1f}x" if raw and r is not raw else f"{'-':>11}"
            print(
                f"{r.label:<34}{r.measured_from:<20}{r.dist.p50_ms:8.2f}{r.dist.p90_ms:8.2f}{r.dist.p99_ms:8.2f}"
                f"{r.dist.mean_ms:9.2f}{r.dist.max_ms:9.2f}{r.lost:>6}{x}"
            )
        print()
    if results.throughput:
        raw_t = next((t for t in results.throughput if t.path == "raw-kafka"), None)
        print(f"throughput: bursts of {args.burst} events, timed until the last one is stored (or consumed)")
        head = f"{'path':<40}{'events':>8}{'seconds':>9}{'events/s':>10}{'of raw':>9}"
        print(head)
        print("-" * len(head))
        for t in results.throughput:
            frac = f"{t.events_per_s / raw_t.events_per_s:9.2f}" if raw_t and t is not raw_t else f"{'-':>9}"
            label = t.label + (f" (c={t.concurrency})" if t.concurrency else "")
            print(f"{label:<40}{t.events:>8}{t.seconds:9.2f}{t.events_per_s:10.0f}{frac}")
        print()
    if results.fanout:
        print(
            "fan-out: CreateAgent -> every live gRPC subscriber (latency from the CreateAgent reply); "
            f"svc CPU = event service, net of its idle {results.event_service_idle_cpu * 1000:.1f} ms/s"
        )
        head = (
            f"{'subs':>5}{'samples':>8}{'p50 ms':>8}{'p99 ms':>8}{'slowest p50':>12}{'slowest p99':>12}"
            f"{'lost':>6}{'svc CPU ms/ev':>14}{'client CPU ms/ev':>17}"
        )
        print(head)
        print("-" * len(head))
        for f in results.fanout:
            print(
                f"{f.subscribers:>5}{f.samples:>8}{f.per_delivery.p50_ms:8.2f}{f.per_delivery.p99_ms:8.2f}"
                f"{f.slowest.p50_ms:12.2f}{f.slowest.p99_ms:12.2f}{f.lost_deliveries:>6}"
                f"{f.event_service_cpu_ms_per_event:14.2f}{f.client_cpu_ms_per_event:17.2f}"
            )
        print()
    print("ratios:")
    for key, value in ratios(results).items():
        print(f"  {key} = {value:.3f}")
    print(line)


# -- orchestration -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Event-plane latency (commit -> gRPC/SSE subscriber), ingest throughput and fan-out "
        "cost, against raw aiokafka on the same Kafka.",
    )
    parser.add_argument("--samples", type=int, default=300, help="latency samples per path (300)")
    parser.add_argument("--pause", type=float, default=0.01, help="pause (s) between samples (0.01)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed samples before timing (20)")
    parser.add_argument("--burst", type=int, default=5000, help="events per throughput burst (5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="PublishEvent calls in flight (16)")
    parser.add_argument(
        "--fanout", type=str, default="1,10,100", help="subscriber counts of the fan-out phase (1,10,100)"
    )
    parser.add_argument("--fanout-samples", type=int, default=100, help="events per fan-out step (100)")
    parser.add_argument(
        "--phases", type=str, default="latency,throughput,fanout", help="which phases to run (all three)"
    )
    common.add_json_option(parser, NAME)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 20 samples, 5 warm-up, bursts of 200, fan-out 1,10 with 10 samples",
    )
    common.add_mesh_options(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.warmup, args.burst, args.fanout, args.fanout_samples = 20, 5, 200, "1,10", 10
    try:
        args.fanout = [int(x) for x in args.fanout.split(",") if x.strip()]
    except ValueError:
        parser.error("--fanout takes comma-separated integers, e.g. 1,10,100")
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not args.phases <= {"latency", "throughput", "fanout"}:
        parser.error("--phases: choose from latency, throughput, fanout")
    if not 1 <= args.samples <= 100_000 or not 1 <= args.fanout_samples <= 100_000:
        parser.error("--samples and --fanout-samples must be between 1 and 100,000")
    if not 1 <= args.burst <= 1_000_000 or not 1 <= args.concurrency <= 256:
        parser.error("--burst must be between 1 and 1,000,000, --concurrency between 1 and 256")
    if any(not 1 <= s <= 1000 for s in args.fanout) or args.warmup < 0 or not 0 <= args.pause <= 10:
        parser.error("--fanout counts must be 1..1000, --warmup >= 0, --pause 0..10 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with common.Run(args.home, keep=args.keep, prefix="godel-bench-events-", postgres=args.postgres) as run:
        mesh, api_key = run.start(echo=False)
        assert run.kafka is not None
        facts = common.machine_facts(run.backend, libraries=(httpx, aiokafka))
        if run.pg is not None:
            facts["postgres_port"] = run.pg.port
        results = asyncio.run(run_benchmark(mesh, run.kafka, api_key, args))
        facts["load_avg_at_end"] = common.load_avg()
        facts["event_bytes"] = results.event_bytes
        print_report(facts, args, results)
        payload = {
            "machine": facts,
            "config": {
                "samples": args.samples,
                "pause": args.pause,
                "warmup": args.warmup,
                "burst": args.burst,
                "concurrency": args.concurrency,
                "fanout": args.fanout,
                "fanout_samples": args.fanout_samples,
                "phases": sorted(args.phases),
                "postgres": args.postgres,
            },
            "latency": [asdict(r) for r in results.latency],
            "throughput": [asdict(t) for t in results.throughput],
            "fanout": [asdict(f) for f in results.fanout],
            "event_service_idle_cpu_ms_per_s": results.event_service_idle_cpu * 1000,
            "ratios": ratios(results),
        }
        common.write_results(NAME, payload, figures_of(payload), args.json)
        return 0
    return 130  # interrupted (Ctrl-C or SIGTERM); everything is stopped


if __name__ == "__main__":
    sys.exit(main())
