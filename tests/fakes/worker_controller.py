"""A fake agent-service replica for worker tests: an in-process grpc.aio WorkerService server on
127.0.0.1:<free port> that welcomes workers, lets the test assign and control runs, records
everything the workers send and, like the agent service, acknowledges heartbeats and numbered
updates and usage (unless `acks` is False: then nothing is acknowledged).

    ctl = await FakeController("replica-a").start()
    ...  # start a worker with GODEL_WORKER_CONNECT=ctl.address
    stream = await ctl.wait_stream()
    ctl.assign(worker_service_pb2.RunAssignment(run_id="r1", agent_id="a1", ...))
    final = await ctl.wait_final("r1")
    ctl.control("r1", worker_service_pb2.CONTROL_ACTION_KILL)
    ack = await ctl.wait_ack("r1", worker_service_pb2.CONTROL_ACTION_KILL)
    await ctl.stop()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable

import grpc

from godel.v1 import worker_service_pb2, worker_service_pb2_grpc

Request = worker_service_pb2.ConnectRequest
Response = worker_service_pb2.ConnectResponse
TERMINAL = {
    worker_service_pb2.RUN_STATE_SUCCEEDED,
    worker_service_pb2.RUN_STATE_FAILED,
    worker_service_pb2.RUN_STATE_KILLED,
    worker_service_pb2.RUN_STATE_REJECTED,
    worker_service_pb2.RUN_STATE_LOST,
}


class FakeStream:
    """One Connect stream of one worker."""

    def __init__(self) -> None:
        self.hello: worker_service_pb2.WorkerHello | None = None
        self.received: list[Request] = []
        self.outgoing: asyncio.Queue[Response | None] = asyncio.Queue()
        self.closed = False

    def send(self, response: Response) -> None:
        self.outgoing.put_nowait(response)

    def close(self) -> None:
        """Ends the stream from the replica's side (the worker then reconnects)."""
        self.outgoing.put_nowait(None)


class FakeController(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self,
        replica_id: str = "replica-a",
        heartbeat_interval_ms: int = 200,
        port: int = 0,
        *,
        run_lease_ms: int = 0,
        acks: bool = True,
    ) -> None:
        self.replica_id = replica_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.run_lease_ms = run_lease_ms
        self.acks = acks
        self.port = port
        self.streams: list[FakeStream] = []
        self.received: list[Request] = []
        self.metadata: list[dict[str, str]] = []
        # Cleared, the replica stops reading its streams (what the worker writes then waits).
        self.reading = asyncio.Event()
        self.reading.set()
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeController:
        self._server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self

    async def stop(self) -> None:
        """Stops the server (streams break; a later start() on the same port acts as a restart)."""
        for stream in self.streams:
            stream.close()
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

    async def Connect(
        self, request_iterator: AsyncIterator[Request], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Response]:
        stream = FakeStream()
        self.streams.append(stream)
        self.metadata.append({k: v for k, v in context.invocation_metadata() or ()})

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await self.reading.wait()
                    stream.received.append(request)
                    self.received.append(request)
                    if request.WhichOneof("message") == "hello" and stream.hello is None:
                        stream.hello = request.hello
                        stream.send(
                            Response(
                                welcome=worker_service_pb2.WorkerWelcome(
                                    replica_id=self.replica_id,
                                    heartbeat_interval_ms=self.heartbeat_interval_ms,
                                    run_lease_ms=self.run_lease_ms,
                                )
                            )
                        )
                    elif self.acks:
                        self._acknowledge(stream, request)
            finally:
                stream.closed = True
                stream.close()

        reader = asyncio.create_task(read())
        try:
            while True:
                response = await stream.outgoing.get()
                if response is None:
                    return
                yield response
        finally:
            stream.closed = True
            reader.cancel()

    @staticmethod
    def _acknowledge(stream: FakeStream, request: Request) -> None:
        kind = request.WhichOneof("message")
        if kind == "heartbeat":
            stream.send(Response(heartbeat_ack=worker_service_pb2.HeartbeatAck(seq=request.heartbeat.seq)))
        elif kind in ("update", "usage"):
            message = getattr(request, kind)
            if message.seq:
                stream.send(
                    Response(run_ack=worker_service_pb2.RunAck(run_id=message.run_id, seq=message.seq))
                )

    # ----------------------------------------------------------------- test helpers
    def live_stream(self) -> FakeStream:
        for stream in reversed(self.streams):
            if stream.hello is not None and not stream.closed:
                return stream
        raise AssertionError("no live worker stream")

    async def wait_stream(self, timeout: float = 10.0, after: int = 0) -> FakeStream:
        """The newest welcomed stream (index >= after)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for stream in reversed(self.streams[after:]):
                if stream.hello is not None and not stream.closed:
                    return stream
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no worker connected to {self.replica_id} within {timeout}s")

    def assign(self, assignment: worker_service_pb2.RunAssignment, stream: FakeStream | None = None) -> None:
        (stream or self.live_stream()).send(Response(assign=assignment))

    def control(
        self,
        run_id: str,
        action: int,
        *,
        agent_id: str = "",
        reason: str = "",
        worktree: str = "",
        repo: str = "",
        stream: FakeStream | None = None,
    ) -> None:
        control = worker_service_pb2.RunControl(
            run_id=run_id,
            agent_id=agent_id,
            action=action,  # type: ignore[arg-type]
            reason=reason,
            worktree=worktree,
            repo=repo,
        )
        (stream or self.live_stream()).send(Response(control=control))

    async def wait_for(
        self,
        predicate: Callable[[Request], bool],
        timeout: float = 10.0,
        source: Iterable[Request] | None = None,
    ) -> Request:
        deadline = time.monotonic() + timeout
        while True:
            for request in list(self.received if source is None else source):
                if predicate(request):
                    return request
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.replica_id}: no matching message within {timeout}s")
            await asyncio.sleep(0.01)

    def updates(self, run_id: str) -> list[worker_service_pb2.RunUpdate]:
        return [
            r.update
            for r in list(self.received)
            if r.WhichOneof("message") == "update" and r.update.run_id == run_id
        ]

    def states(self, run_id: str) -> list[int]:
        return [u.state for u in self.updates(run_id)]

    def log_lines(self, run_id: str) -> list[worker_service_pb2.RunLogLine]:
        return [
            line
            for r in list(self.received)
            if r.WhichOneof("message") == "logs" and r.logs.run_id == run_id
            for line in r.logs.lines
        ]

    def usage(self, run_id: str) -> list[worker_service_pb2.RunUsage]:
        return [
            r.usage
            for r in list(self.received)
            if r.WhichOneof("message") == "usage" and r.usage.run_id == run_id
        ]

    def session_messages(self, run_id: str) -> list[worker_service_pb2.RunSessionMessage]:
        return [
            r.session_message
            for r in list(self.received)
            if r.WhichOneof("message") == "session_message" and r.session_message.run_id == run_id
        ]

    async def wait_update(
        self, run_id: str, states: int | Iterable[int], timeout: float = 10.0
    ) -> worker_service_pb2.RunUpdate:
        wanted = {states} if isinstance(states, int) else set(states)
        request = await self.wait_for(
            lambda r: (
                r.WhichOneof("message") == "update" and r.update.run_id == run_id and r.update.state in wanted
            ),
            timeout,
        )
        return request.update

    async def wait_final(self, run_id: str, timeout: float = 10.0) -> worker_service_pb2.RunUpdate:
        return await self.wait_update(run_id, TERMINAL, timeout)

    async def wait_ack(
        self, run_id: str, action: int, timeout: float = 10.0
    ) -> worker_service_pb2.ControlAck:
        request = await self.wait_for(
            lambda r: r.WhichOneof("message") == "ack" and r.ack.run_id == run_id and r.ack.action == action,
            timeout,
        )
        return request.ack
