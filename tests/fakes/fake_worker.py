"""A stand-in worker for agent-service integration tests: it connects to a real agent service with
the runtimes and capacity a test chooses, accepts assignments and never runs them (its heartbeats
report them running, so they are not declared lost).

    worker = FakeWorker(mesh.address("agent"), mesh.worker_key(), runtimes=["command"], capacity=1)
    worker.start()           # returns once the replica welcomed it
    ...
    worker.assigned          # the RunAssignments it received
    worker.stop()
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import grpc

from godel.v1 import worker_service_pb2 as wpb
from godel.v1 import worker_service_pb2_grpc

HEARTBEAT_SECONDS = 0.5


class FakeWorker:
    def __init__(
        self, address: str, api_key: str, *, worker_id: str, runtimes: list[str], capacity: int
    ) -> None:
        self.address = address
        self.api_key = api_key
        self.hello = wpb.WorkerHello(
            worker_id=worker_id, runtimes=runtimes, capacity=capacity, hostname="fake-host"
        )
        self.assigned: list[wpb.RunAssignment] = []
        self.welcomed = threading.Event()
        self._stop = threading.Event()
        self._wake: queue.Queue[None] = queue.Queue()
        self._channel = grpc.insecure_channel(address)
        self._call: grpc.Future | None = None
        self._thread = threading.Thread(target=self._read, name=f"fake-{worker_id}", daemon=True)
        self.error: grpc.RpcError | None = None

    def start(self, timeout: float = 30.0) -> FakeWorker:
        stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._call = stub.Connect(self._requests(), metadata=[("x-api-key", self.api_key)])
        self._thread.start()
        if not self.welcomed.wait(timeout):
            raise AssertionError(f"the agent service did not welcome the fake worker: {self.error}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.put(None)
        if self._call is not None:
            self._call.cancel()
        self._thread.join(10)
        self._channel.close()

    def _heartbeat(self) -> wpb.ConnectRequest:
        runs = [
            wpb.RunStatus(run_id=a.run_id, agent_id=a.agent_id, state=wpb.RUN_STATE_RUNNING)
            for a in list(self.assigned)
        ]
        free = max(self.hello.capacity - len(runs), 0)
        return wpb.ConnectRequest(heartbeat=wpb.WorkerHeartbeat(runs=runs, free_capacity=free))

    def _requests(self) -> Iterator[wpb.ConnectRequest]:
        yield wpb.ConnectRequest(hello=self.hello)
        while not self._stop.is_set():
            with contextlib.suppress(queue.Empty):
                self._wake.get(timeout=HEARTBEAT_SECONDS)
            if not self._stop.is_set():
                yield self._heartbeat()

    def _read(self) -> None:
        assert self._call is not None
        try:
            for response in self._call:
                kind = response.WhichOneof("message")
                if kind == "welcome":
                    self.welcomed.set()
                elif kind == "assign":
                    self.assigned.append(response.assign)
                    self._wake.put(None)  # report the run (and the slot it takes) at once
        except grpc.RpcError as exc:
            if not self._stop.is_set():
                self.error = exc
