"""The workers connected to this replica: what they run, how much room they have, and a channel to
send them assignments and controls (the service side of proto/godel/v1/worker_service.proto)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from prometheus_client import Gauge

from godel.v1 import worker_service_pb2 as wpb

WORKERS = Gauge("godel_workers_connected", "Workers connected to this agent-service replica")
WORKER_CAPACITY = Gauge("godel_worker_free_capacity", "Free run slots over connected workers")

ALIVE_RUN_STATES = frozenset(
    {wpb.RUN_STATE_STARTING, wpb.RUN_STATE_WORKTREE_READY, wpb.RUN_STATE_RUNNING, wpb.RUN_STATE_PAUSED}
)


@dataclass
class WorkerConnection:
    worker_id: str
    runtimes: frozenset[str]
    capacity: int
    hostname: str
    free: int
    # Runs the worker last reported, with the monotonic time each was last seen.
    runs: dict[str, wpb.RunStatus] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    outbox: asyncio.Queue[wpb.ConnectResponse] = field(default_factory=asyncio.Queue)
    # Callers waiting for the ack of (run id, action); several may wait for the same control.
    acks: dict[tuple[str, int], list[asyncio.Future[wpb.ControlAck]]] = field(default_factory=dict)
    closed: bool = False

    def report(self, runs: list[wpb.RunStatus], free: int | None = None) -> None:
        now = time.monotonic()
        self.runs = {r.run_id: r for r in runs}
        for r in runs:
            self.seen[r.run_id] = now
        if free is not None:
            self.free = free

    def has_run(self, run_id: str) -> bool:
        status = self.runs.get(run_id)
        return status is not None and status.state in ALIVE_RUN_STATES

    def send(self, message: wpb.ConnectResponse) -> None:
        self.outbox.put_nowait(message)

    async def control(
        self,
        run_id: str,
        agent_id: str,
        action: wpb.ControlAction.ValueType,
        *,
        reason: str = "",
        worktree: str = "",
        repo: str = "",
        timeout: float = 3.0,
    ) -> wpb.ControlAck:
        """Sends a control and waits for the worker's ack (ok=false with an error on timeout)."""
        key = (run_id, int(action))
        future: asyncio.Future[wpb.ControlAck] = asyncio.get_running_loop().create_future()
        self.acks.setdefault(key, []).append(future)
        self.send(
            wpb.ConnectResponse(
                control=wpb.RunControl(
                    run_id=run_id,
                    agent_id=agent_id,
                    action=action,
                    reason=reason,
                    worktree=worktree,
                    repo=repo,
                )
            )
        )
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return wpb.ControlAck(
                run_id=run_id, action=action, ok=False, error="worker did not answer in time"
            )
        finally:
            waiting = self.acks.get(key, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self.acks.pop(key, None)

    def awaiting(self, run_id: str, action: wpb.ControlAction.ValueType) -> bool:
        """True while a control of this kind for the run has not been answered."""
        return bool(self.acks.get((run_id, int(action))))

    def acked(self, ack: wpb.ControlAck) -> None:
        for future in self.acks.pop((ack.run_id, int(ack.action)), []):
            if not future.done():
                future.set_result(ack)


class WorkerRegistry:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerConnection] = {}

    def add(self, hello: wpb.WorkerHello) -> WorkerConnection:
        old = self.workers.get(hello.worker_id)
        if old is not None:
            old.closed = True
        conn = WorkerConnection(
            worker_id=hello.worker_id,
            runtimes=frozenset(hello.runtimes),
            capacity=hello.capacity,
            hostname=hello.hostname,
            free=max(0, hello.capacity - sum(1 for r in hello.runs if r.state in ALIVE_RUN_STATES)),
        )
        conn.report(list(hello.runs))
        self.workers[hello.worker_id] = conn
        self._gauges()
        return conn

    def remove(self, conn: WorkerConnection) -> bool:
        """Forgets a closed connection; False when a newer connection of the same worker replaced it."""
        conn.closed = True
        for futures in conn.acks.values():
            for future in futures:
                if not future.done():
                    future.set_result(wpb.ControlAck(ok=False, error="worker disconnected"))
        if self.workers.get(conn.worker_id) is conn:
            del self.workers[conn.worker_id]
            self._gauges()
            return True
        return False

    def get(self, worker_id: str | None) -> WorkerConnection | None:
        return self.workers.get(worker_id) if worker_id else None

    def pick(self, runtime: str, exclude: frozenset[str] = frozenset()) -> WorkerConnection | None:
        """The connected worker hosting `runtime` with the most free slots."""
        candidates = [
            w
            for w in self.workers.values()
            if not w.closed and w.free > 0 and runtime in w.runtimes and w.worker_id not in exclude
        ]
        return max(candidates, key=lambda w: w.free, default=None)

    def has_room(self) -> bool:
        return any(w.free > 0 and not w.closed for w in self.workers.values())

    def any(self) -> WorkerConnection | None:
        return next((w for w in self.workers.values() if not w.closed), None)

    def _gauges(self) -> None:
        WORKERS.set(len(self.workers))
        WORKER_CAPACITY.set(sum(w.free for w in self.workers.values()))
