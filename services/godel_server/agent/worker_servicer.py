"""WorkerService.Connect: the agent service's end of a worker's stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc

from godel.v1 import worker_service_pb2 as wpb
from godel.v1 import worker_service_pb2_grpc
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.workers import WorkerConnection, WorkerRegistry
from godel_server.runtime.validation import Violations

log = logging.getLogger(__name__)

HEARTBEAT_MS = 1000


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(self, coordinator: RunCoordinator, registry: WorkerRegistry) -> None:
        self._coordinator = coordinator
        self._registry = registry

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
        v.raise_if_any()
        conn = self._registry.add(hello)
        self._coordinator.nudge()
        log.info(
            "worker connected",
            extra={"workerId": hello.worker_id, "capacity": hello.capacity, "runtimes": list(hello.runtimes)},
        )
        await context.write(
            wpb.ConnectResponse(
                welcome=wpb.WorkerWelcome(
                    replica_id=self._coordinator.replica_id, heartbeat_interval_ms=HEARTBEAT_MS
                )
            )
        )
        writer = asyncio.create_task(self._write(conn, context), name=f"worker-writer-{hello.worker_id}")
        try:
            async for message in requests:
                await self._handle(conn, message)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError:
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if self._registry.remove(conn):
                await self._coordinator.on_worker_gone(conn)

    async def _write(self, conn: WorkerConnection, context: grpc.aio.ServicerContext) -> None:
        while True:
            message = await conn.outbox.get()
            await context.write(message)

    async def _handle(self, conn: WorkerConnection, message: wpb.ConnectRequest) -> None:
        kind = message.WhichOneof("message")
        try:
            if kind == "heartbeat":
                conn.report(list(message.heartbeat.runs), message.heartbeat.free_capacity)
                self._coordinator.nudge()
            elif kind == "update":
                await self._coordinator.on_update(conn, message.update)
            elif kind == "logs":
                await self._coordinator.on_logs(message.logs)
            elif kind == "usage":
                await self._coordinator.on_usage(conn, message.usage)
            elif kind == "session_message":
                await self._coordinator.on_session_message(message.session_message)
            elif kind == "ack":
                conn.acked(message.ack)
            elif kind == "hello":
                conn.report(list(message.hello.runs))
        except Exception:
            # One bad message must not drop the worker's stream (and with it every run on it).
            log.exception(
                "handling a worker message failed", extra={"workerId": conn.worker_id, "kind": kind}
            )
