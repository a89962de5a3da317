"""Heartbeats and their acknowledgements go ahead of the run messages queued on a worker's stream,
on both ends: behind a burst of updates (a thousand runs ending) or of controls (a thousand kills)
they would arrive after the worker's run lease, and the worker would stop every run it has while
the replica was there all along."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from godel.v1 import worker_service_pb2 as wpb
from godel_server.runtime.stream_queue import StreamQueue
from godel_server.worker.connection import Connection
from tests.fakes.agents import worker_stream
from tests.fakes.worker_controller import FakeController

pytestmark = pytest.mark.timeout(60)

# Far more than the stream's flow-control windows hold, so most of a burst waits in the queue.
BURST = 3000
PAYLOAD = "x" * 2000


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_the_urgent_item_goes_first_and_a_newer_one_replaces_it() -> None:
    queue: StreamQueue[str] = StreamQueue()
    for item in ("a", "b", "c"):
        queue.put(item)
    queue.put_urgent("beat 1")
    queue.put_urgent("beat 2")
    assert len(queue) == 4
    assert [await queue.get() for _ in range(2)] == ["beat 2", "a"]
    queue.put_urgent("beat 3")
    assert queue.drain() == ["b", "c"] and len(queue) == 0

    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put("d")
    assert await asyncio.wait_for(waiting, 5) == "d"


class Owner:
    """The worker side of one connection: counts the heartbeats it was asked for."""

    def __init__(self) -> None:
        self.beats = 0

    def hello(self) -> wpb.WorkerHello:
        return wpb.WorkerHello(worker_id="w", runtimes=["command"], capacity=1)

    def heartbeat(self) -> wpb.WorkerHeartbeat:
        self.beats += 1
        return wpb.WorkerHeartbeat()

    def on_welcome(self, conn: Connection) -> None:
        pass

    def on_response(self, conn: Connection, response: wpb.ConnectResponse) -> None:
        pass

    def requeue(self, run_id: str, items: list[tuple[int, wpb.ConnectRequest]]) -> None:
        pass


async def test_the_workers_heartbeat_overtakes_a_burst_of_run_messages() -> None:
    ctl = await FakeController("replica-a", heartbeat_interval_ms=50, run_lease_ms=10_000).start()
    owner = Owner()
    conn = Connection(ctl.address, owner)
    conn.start()
    try:
        await _until(lambda: conn.live)
        ctl.reading.clear()
        loop = asyncio.get_running_loop()
        paused = loop.time()
        for i in range(BURST):
            update = wpb.RunUpdate(run_id="r1", agent_id="a1", seq=i + 1, error=PAYLOAD)
            assert conn.send(wpb.ConnectRequest(update=update), "r1", i + 1)
        beats = owner.beats
        await _until(lambda: owner.beats > beats + 5)  # heartbeats queued behind the burst
        await asyncio.sleep(0.5)
        ctl.reading.set()

        def first_heartbeat() -> int | None:
            kinds = [r.WhichOneof("message") for r in ctl.received]
            return kinds.index("heartbeat", 1) if "heartbeat" in kinds[1:] else None

        await _until(lambda: first_heartbeat() is not None)
        index = first_heartbeat()
        assert index is not None and index < BURST // 3, f"heartbeat written after {index} messages"
        # Its acknowledgement renews contact as of its write, not as of the pause.
        await _until(lambda: conn.silence("replica-a", loop.time()) < loop.time() - paused)
    finally:
        ctl.reading.set()
        await conn.stop()
        await ctl.stop()


class IdleCoordinator:
    replica_id = "replica-1"

    def nudge(self) -> None:
        return None

    async def on_worker_gone(self, conn: object) -> None:
        return None


async def test_the_replicas_heartbeat_acknowledgement_overtakes_a_burst_of_controls() -> None:
    async with worker_stream(IdleCoordinator()) as (call, conn):
        for i in range(BURST):
            kill = wpb.RunControl(
                run_id=f"r{i}", agent_id="a1", action=wpb.CONTROL_ACTION_KILL, reason=PAYLOAD
            )
            conn.send(wpb.ConnectResponse(control=kill))
        await _until(lambda: len(conn.outbox) < BURST)  # the writer is blocked on the stream
        running = wpb.RunStatus(run_id="r-beat", state=wpb.RUN_STATE_RUNNING)
        await call.write(wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(seq=7, runs=[running])))
        await _until(lambda: "r-beat" in conn.runs)  # the heartbeat was taken, its ack queued
        assert len(conn.outbox) > BURST // 2
        read = 0
        while True:
            message = await asyncio.wait_for(call.read(), 10)
            if message.HasField("heartbeat_ack"):
                break
            read += 1
        assert message.heartbeat_ack.seq == 7
        assert read < BURST // 3, f"acknowledged after {read} controls"
