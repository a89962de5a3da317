"""One WorkerService.Connect stream to one agent-service replica, reconnected forever with backoff.

On every (re)connect the worker sends WorkerHello first and waits for WorkerWelcome; then it sends
WorkerHeartbeat every heartbeat_interval_ms, reads assignments and controls, and writes the messages
queued on this connection. Messages about runs that were still queued (or being written) when the
stream broke go back to their run's outbox, to be sent when the run's owner is reachable again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

import grpc

from godel.v1 import worker_service_pb2, worker_service_pb2_grpc

log = logging.getLogger(__name__)

BACKOFF_START = 0.2
BACKOFF_MAX = 2.0
WELCOME_TIMEOUT = 10.0
DEFAULT_HEARTBEAT_MS = 5000


class ProtocolError(Exception):
    """The replica did not follow the worker protocol."""


class ConnectionOwner(Protocol):
    """What a connection needs from the worker."""

    def hello(self) -> worker_service_pb2.WorkerHello: ...

    def heartbeat(self) -> worker_service_pb2.WorkerHeartbeat: ...

    def on_welcome(self, conn: Connection) -> None: ...

    def on_response(self, conn: Connection, response: worker_service_pb2.ConnectResponse) -> None: ...

    def requeue(self, run_id: str, requests: list[worker_service_pb2.ConnectRequest]) -> None: ...

    def delivered(self, run_id: str, request: worker_service_pb2.ConnectRequest) -> None: ...


_Item = tuple[str | None, worker_service_pb2.ConnectRequest]


class Connection:
    def __init__(self, address: str, owner: ConnectionOwner, api_key: str | None = None) -> None:
        self.address = address
        self._owner = owner
        self._metadata = (("x-api-key", api_key),) if api_key else ()
        self.replica_id: str | None = None
        self.heartbeat_interval = DEFAULT_HEARTBEAT_MS / 1000
        self.live = False
        self.connects = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._inflight: _Item | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"Connection({self.address!r}, replica={self.replica_id!r}, live={self.live})"

    def start(self) -> None:
        self._task = asyncio.create_task(self.run_forever(), name=f"worker-connection-{self.address}")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self, timeout: float) -> None:
        """Waits (at most `timeout` s) until everything queued on a live stream has been written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.live and (not self._queue.empty() or self._inflight is not None):
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    def send(self, request: worker_service_pb2.ConnectRequest, run_id: str | None = None) -> bool:
        """Queues a message on the live stream; False (nothing queued) when the stream is down."""
        if not self.live:
            return False
        self._queue.put_nowait((run_id, request))
        return True

    async def run_forever(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping:
            welcomed = False
            try:
                welcomed = await self._session()
                log.info("worker stream closed by the replica", extra={"address": self.address})
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                unavailable = exc.code() == grpc.StatusCode.UNAVAILABLE
                log.log(
                    logging.INFO if unavailable else logging.WARNING,
                    "worker stream failed",
                    extra={"address": self.address, "code": str(exc.code()), "details": exc.details()},
                )
            except (ProtocolError, TimeoutError, OSError) as exc:
                log.warning("worker stream failed", extra={"address": self.address, "error": str(exc)})
            finally:
                self._down()
            if welcomed:
                backoff = BACKOFF_START
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self) -> bool:
        """One stream, from hello to its end; True when the replica welcomed the worker."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            call = stub.Connect(metadata=self._metadata)
            try:
                await call.write(worker_service_pb2.ConnectRequest(hello=self._owner.hello()))
                first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT)
                if first is grpc.aio.EOF:
                    return False
                if first.WhichOneof("message") != "welcome":
                    raise ProtocolError(f"expected WorkerWelcome first, got {first.WhichOneof('message')}")
                self.replica_id = first.welcome.replica_id
                interval_ms = first.welcome.heartbeat_interval_ms or DEFAULT_HEARTBEAT_MS
                self.heartbeat_interval = max(interval_ms, 10) / 1000
                self.live = True
                self.connects += 1
                log.info(
                    "worker connected",
                    extra={"address": self.address, "replica": self.replica_id, "heartbeat_ms": interval_ms},
                )
                self._owner.on_welcome(self)
                tasks = [
                    asyncio.create_task(self._read_loop(call)),
                    asyncio.create_task(self._write_loop(call)),
                    asyncio.create_task(self._heartbeat_loop()),
                ]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                for task in done:
                    task.result()
                return True
            finally:
                self.live = False
                call.cancel()

    async def _read_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            try:
                self._owner.on_response(self, response)
            except Exception:
                log.exception("handling a message from the replica failed", extra={"address": self.address})

    async def _write_loop(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            item = await self._queue.get()
            self._inflight = item
            await call.write(item[1])
            self._inflight = None
            if item[0] is not None:
                self._owner.delivered(item[0], item[1])

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            self.send(worker_service_pb2.ConnectRequest(heartbeat=self._owner.heartbeat()))

    def _down(self) -> None:
        """Gives the run messages that were not written back to their runs' outboxes."""
        self.live = False
        unsent: dict[str, list[worker_service_pb2.ConnectRequest]] = {}
        items: list[_Item] = [self._inflight] if self._inflight is not None else []
        self._inflight = None
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        for run_id, request in items:
            if run_id is not None:
                unsent.setdefault(run_id, []).append(request)
        for run_id, requests in unsent.items():
            self._owner.requeue(run_id, requests)
