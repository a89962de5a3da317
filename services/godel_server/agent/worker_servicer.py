"""WorkerService.Connect: the agent service's end of a worker's stream.

Heartbeats and control acks are handled as they arrive: a heartbeat's acknowledgement renews the
worker's lease on this replica's runs, so it must not wait behind database work nor behind the
messages queued for the worker (it goes ahead of them, runtime/stream_queue.py), and its report of
the worker's runs must be current (a run assigned a moment ago that it did not list would be asked
about). Run messages (updates, usage, logs, session messages) are applied in the order they came,
one at a time, by a task of the stream (at most MAX_BACKLOG waiting, then the stream waits); a
run's STARTING and WORKTREE_READY wait up to 0.1 s for its next update, which may make them
redundant (agent/run_messages.py);
numbered updates and usage are acknowledged (RunAck) once their change is committed, so the worker
can forget them. Updates still waiting are counted per run (`WorkerConnection.applying`): a report
that a run ended can overtake the run's final update, and the supervisor must not take the run
for lost meanwhile.

Every message is cut to the bounds of the contract and made storable first (runtime/bounds.py
clamp): a worker relays what agents print, and one NUL or one huge result must not make a write
fail for ever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc

from godel.v1 import worker_service_pb2 as wpb
from godel.v1 import worker_service_pb2_grpc
from godel_server.agent.run_messages import Coalescer
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.workers import WorkerConnection, WorkerRegistry
from godel_server.runtime.agent_rules import label_problems
from godel_server.runtime.bounds import clamp, violations
from godel_server.runtime.context import current_caller
from godel_server.runtime.errors import AlreadyExistsError
from godel_server.runtime.validation import Violations

log = logging.getLogger(__name__)

HEARTBEAT_MS = 1000
MAX_BACKLOG = 10_000
# Run messages taken from the backlog at a time (agent/run_messages.py holds back those a later
# one may make redundant).
APPLY_BATCH = 256
# A connection not heard from for this long may be replaced by a new one of the same worker and
# credential (its stream broke without this replica noticing yet).
STALE_SECONDS = 3 * HEARTBEAT_MS / 1000


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self, coordinator: RunCoordinator, registry: WorkerRegistry, run_lease_seconds: float
    ) -> None:
        self._coordinator = coordinator
        self._registry = registry
        self._run_lease_ms = int(run_lease_seconds * 1000)

    async def Connect(  # type: ignore[override]
        self, request_iterator: AsyncIterator[wpb.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> None:
        requests = request_iterator.__aiter__()
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        hello = first.hello
        v = Violations()
        if not first.HasField("hello"):
            v.add("hello", "the first message of a worker must be WorkerHello")
        v.require("hello.worker_id", hello.worker_id)
        if hello.capacity <= 0:
            v.add("hello.capacity", "must be greater than 0")
        for i, runtime in enumerate(hello.runtimes):
            v.require(f"hello.runtimes[{i}]", runtime)
        # Runtime names become metric labels (godel_worker_runtimes): the contract bounds them.
        v.items += violations(hello, "hello")
        for name, problem in label_problems(hello.labels):
            v.add(f"hello.{name}", problem)
        v.raise_if_any()
        caller = current_caller()
        credential_id = caller.credential_id if caller else ""
        self._check_takeover(hello.worker_id, credential_id)
        conn = self._registry.add(hello)
        conn.credential_id = credential_id
        self._coordinator.nudge()
        log.info(
            "worker connected",
            extra={"workerId": hello.worker_id, "capacity": hello.capacity, "runtimes": list(hello.runtimes)},
        )
        await context.write(
            wpb.ConnectResponse(
                welcome=wpb.WorkerWelcome(
                    replica_id=self._coordinator.replica_id,
                    heartbeat_interval_ms=HEARTBEAT_MS,
                    run_lease_ms=self._run_lease_ms,
                )
            )
        )
        writer = asyncio.create_task(self._write(conn, context), name=f"worker-writer-{hello.worker_id}")
        backlog: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue(MAX_BACKLOG)
        applier = asyncio.create_task(self._apply(conn, backlog), name=f"worker-runs-{hello.worker_id}")
        try:
            async for message in requests:
                conn.heard()
                cut = clamp(message)
                if cut:
                    log.warning(
                        "worker message cut to its bounds",
                        extra={"workerId": conn.worker_id, "fields": cut[:10]},
                    )
                if not self._handle_now(conn, message):
                    if message.HasField("update"):
                        conn.unapplied[message.update.run_id] += 1
                        if conn.seen(message.update.run_id):
                            self._coordinator.nudge()  # room for the next assignment
                    await backlog.put(message)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError:
            pass
        finally:
            for task in (applier, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._registry.remove(conn):
                await self._coordinator.on_worker_gone(conn)

    def _check_takeover(self, worker_id: str, credential_id: str) -> None:
        """A second connection with a worker id in use does not take over the first one's runs,
        unless it is the same worker reconnecting (same credential) after the first went silent."""
        live = self._registry.get(worker_id)
        if live is None or live.closed:
            return
        if live.credential_id == credential_id and time.monotonic() - live.last_heard > STALE_SECONDS:
            return
        raise AlreadyExistsError(
            f"worker {worker_id!r} is connected already: a second connection may not take over its "
            "runs (give each worker process its own GODEL_WORKER_ID)",
            metadata={"workerId": worker_id},
        )

    async def _write(self, conn: WorkerConnection, context: grpc.aio.ServicerContext) -> None:
        while True:
            message = await conn.outbox.get()
            await context.write(message)

    def _handle_now(self, conn: WorkerConnection, message: wpb.ConnectRequest) -> bool:
        """Handles a heartbeat, control ack or repeated hello at once; False for a run message."""
        kind = message.WhichOneof("message")
        if kind == "heartbeat":
            conn.report(list(message.heartbeat.runs), message.heartbeat.free_capacity)
            conn.acknowledge_heartbeat(message.heartbeat.seq)
            self._coordinator.nudge()
        elif kind == "ack":
            conn.acked(message.ack)
        elif kind == "hello":
            conn.report(list(message.hello.runs))
        else:
            return False
        return True

    async def _apply(self, conn: WorkerConnection, backlog: asyncio.Queue[wpb.ConnectRequest]) -> None:
        loop = asyncio.get_running_loop()
        held = Coalescer()
        while True:
            waiting: list[wpb.ConnectRequest] = []
            due = held.deadline()
            if due is None:
                waiting.append(await backlog.get())
            else:
                with contextlib.suppress(TimeoutError):
                    waiting.append(await asyncio.wait_for(backlog.get(), max(due - loop.time(), 0.0)))
            while len(waiting) < APPLY_BATCH and not backlog.empty():
                waiting.append(backlog.get_nowait())
            taken = held.take(waiting, loop.time())
            for message in taken.redundant:
                conn.applied(message.update.run_id)  # its run's next update does what it does
            for message in taken.ready:
                await self._handle(conn, message)

    async def _handle(self, conn: WorkerConnection, message: wpb.ConnectRequest) -> None:
        kind = message.WhichOneof("message")
        try:
            if kind == "update":
                try:
                    await self._coordinator.on_update(conn, message.update)
                finally:
                    conn.applied(message.update.run_id)
                conn.acknowledge(message.update.run_id, message.update.seq)
            elif kind == "logs":
                await self._coordinator.on_logs(conn, message.logs)
            elif kind == "usage":
                await self._coordinator.on_usage(conn, message.usage)
                conn.acknowledge(message.usage.run_id, message.usage.seq)
            elif kind == "session_message":
                await self._coordinator.on_session_message(conn, message.session_message)
            elif kind == "safety_block":
                await self._coordinator.on_safety_block(conn, message.safety_block)
        except Exception:
            # One bad message must not drop the worker's stream (and with it every run on it).
            log.exception(
                "handling a worker message failed", extra={"workerId": conn.worker_id, "kind": kind}
            )
