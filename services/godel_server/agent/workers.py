"""The workers connected to this replica: what they run, how much room they have, why an agent
cannot be placed on any of them, when each was last heard from, and a channel to send them
assignments, controls and acknowledgements (the service side of proto/godel/v1/worker_service.proto).

Slots are counted per live connection: a connection's free slots start from its hello (capacity
minus the runs it reports alive), follow its heartbeats (less the runs sent on it that the worker
had not seen when it counted), and drop by one per assignment sent on it; a closed connection's
slots count nowhere.

A connection carries at most MAX_IN_FLIGHT assignments the worker has not acknowledged by a word
on the run (an update, or a heartbeat that lists it): the stream is ordered, and a burst of a
thousand assignments that a busy worker reads a few dozen a second would hold the acknowledgements
of its heartbeats back past its run lease, and the worker would stop every run it has. The rest of
a burst waits here, where it costs nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import Gauge

from godel.v1 import agent_pb2
from godel.v1 import worker_service_pb2 as wpb
from godel_server.runtime.served import WORKER_RUNTIMES
from godel_server.runtime.stream_queue import StreamQueue

WORKERS = Gauge("godel_workers_connected", "Workers connected to this agent-service replica")
WORKER_CAPACITY = Gauge("godel_worker_free_capacity", "Free run slots over connected workers")

# Workers that left whose last contact is remembered (the oldest are forgotten first).
MAX_GONE = 10_000

ALIVE_RUN_STATES = frozenset(
    {wpb.RUN_STATE_STARTING, wpb.RUN_STATE_WORKTREE_READY, wpb.RUN_STATE_RUNNING, wpb.RUN_STATE_PAUSED}
)


# What a control's caller gets when the worker did not answer it.
NO_ANSWER = "worker did not answer in time"
DISCONNECTED = "worker disconnected"


def unanswered(ack: wpb.ControlAck) -> bool:
    """True when the ack is not the worker's answer (it did not answer, or went away)."""
    return not ack.ok and ack.error in (NO_ANSWER, DISCONNECTED)


@dataclass(frozen=True)
class Placement:
    """What a run needs of a worker: the runtime it hosts and the labels it has
    (AgentConfig.runtime and AgentConfig.worker_selector)."""

    runtime: str
    selector: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, config: agent_pb2.AgentConfig) -> Placement:
        return cls(config.runtime or "command", tuple(sorted(config.worker_selector.items())))

    def hosted_by(self, worker: WorkerConnection) -> bool:
        return self.runtime in worker.runtimes and all(worker.labels.get(k) == v for k, v in self.selector)

    def describe(self) -> str:
        """ "the 'command' runtime" or "the 'command' runtime and labels language=go"."""
        labels = ",".join(f"{k}={v}" for k, v in self.selector)
        return f"the {self.runtime!r} runtime" + (f" and labels {labels}" if labels else "")


MAX_IN_FLIGHT = 64
# An assignment the worker has not spoken of after this long no longer holds a place: the worker
# has read it by then or the run is the supervisor's to judge, and a worker that ignored a few
# must not stop this connection from taking any.
IN_FLIGHT_SECONDS = 10.0


@dataclass(frozen=True)
class Unplaced:
    """Why no connected worker can take an agent's run now. `passing`: only for a moment (the
    workers with room are still taking runs sent to them), nothing to tell the agent's owner."""

    reason: agent_pb2.PendingReason.ValueType
    message: str
    passing: bool = False


@dataclass
class WorkerConnection:
    worker_id: str
    runtimes: frozenset[str]
    capacity: int
    hostname: str
    free: int
    labels: dict[str, str] = field(default_factory=dict)
    # Runs the worker last reported (alive, or ended with updates not yet acknowledged).
    runs: dict[str, wpb.RunStatus] = field(default_factory=dict)
    # What waits to be written to the worker; heartbeat acknowledgements go first.
    outbox: StreamQueue[wpb.ConnectResponse] = field(default_factory=StreamQueue)
    # Callers waiting for the ack of (run id, action); several may wait for the same control.
    acks: dict[tuple[str, int], list[asyncio.Future[wpb.ControlAck]]] = field(default_factory=dict)
    # The (agent id, run id) pairs this connection may report on, whose updates the worker sends
    # here: assigned on it, adopted on it (ADOPT), or the agent's current run on this worker when
    # the worker first reports on it (`RunCoordinator.owns`). Reports on any other run are ignored:
    # a worker's credential lets it speak for its own runs only.
    owned: set[tuple[str, str]] = field(default_factory=set)
    # Who connected (the credential's id), and the monotonic time of the newest message from the
    # worker on this connection.
    credential_id: str = ""
    last_heard: float = field(default_factory=time.monotonic)
    closed: bool = False
    # Per run: updates received on this connection and not yet applied (they wait for the database).
    unapplied: Counter[str] = field(default_factory=Counter)
    # Runs assigned on this connection that the worker has not yet shown it has (module
    # docstring), with the monotonic time each was sent, oldest first.
    in_flight: dict[str, float] = field(default_factory=dict)

    def report(self, runs: list[wpb.RunStatus], free: int | None = None) -> None:
        self.runs = {r.run_id: r for r in runs}
        for run_id in self.runs:
            self.in_flight.pop(run_id, None)
        if free is not None:
            # The worker counted without the runs still on their way to it.
            self.free = max(0, free - self._in_flight())

    def assigned(self, run_id: str) -> None:
        self.free -= 1
        self.in_flight[run_id] = time.monotonic()

    def unassigned(self, run_id: str) -> None:
        """An assignment whose transaction did not commit: its slot is free again."""
        self.in_flight.pop(run_id, None)
        self.free += 1

    def seen(self, run_id: str) -> bool:
        """The worker spoke about the run; True when that frees room for another assignment."""
        if self.in_flight.pop(run_id, None) is None:
            return False
        return self._in_flight() == MAX_IN_FLIGHT - 1

    def taking(self) -> bool:
        """Room on the stream for one more assignment."""
        return self._in_flight() < MAX_IN_FLIGHT

    def _in_flight(self) -> int:
        expired = time.monotonic() - IN_FLIGHT_SECONDS
        while self.in_flight:
            run_id, sent = next(iter(self.in_flight.items()))
            if sent > expired:
                break
            del self.in_flight[run_id]
        return len(self.in_flight)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def applying(self, run_id: str) -> bool:
        """True while an update of the run received here waits to be applied: a report that the
        run ended may have overtaken its final update."""
        return self.unapplied[run_id] > 0

    def applied(self, run_id: str) -> None:
        self.unapplied[run_id] -= 1
        if self.unapplied[run_id] <= 0:
            del self.unapplied[run_id]

    def has_run(self, run_id: str) -> bool:
        status = self.runs.get(run_id)
        return status is not None and status.state in ALIVE_RUN_STATES

    def send(self, message: wpb.ConnectResponse) -> None:
        self.outbox.put(message)

    def acknowledge_heartbeat(self, seq: int) -> None:
        """Renews the worker's lease on this replica's runs, ahead of any message still queued."""
        self.outbox.put_urgent(wpb.ConnectResponse(heartbeat_ack=wpb.HeartbeatAck(seq=seq)))

    def acknowledge(self, run_id: str, seq: int) -> None:
        """Tells the worker that the run's messages up to `seq` are committed."""
        if seq:
            self.send(wpb.ConnectResponse(run_ack=wpb.RunAck(run_id=run_id, seq=seq)))

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
            return wpb.ControlAck(run_id=run_id, action=action, ok=False, error=NO_ANSWER)
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


def _offers(workers: list[WorkerConnection]) -> str:
    """What connected workers offer, e.g. "w1: command,openai language=python; w2: ...", bounded."""
    parts = []
    for w in sorted(workers, key=lambda w: w.worker_id)[:5]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(w.labels.items()))
        parts.append(f"{w.worker_id}: {','.join(sorted(w.runtimes))}" + (f" {labels}" if labels else ""))
    more = f"; {len(workers) - 5} more" if len(workers) > 5 else ""
    return "; ".join(parts) + more


class WorkerRegistry:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerConnection] = {}
        # Monotonic time each worker that is no longer connected was last heard from.
        self._gone: dict[str, float] = {}
        self._runtimes_seen: set[str] = set()

    def add(self, hello: wpb.WorkerHello) -> WorkerConnection:
        old = self.workers.get(hello.worker_id)
        if old is not None:
            old.closed = True
        conn = WorkerConnection(
            worker_id=hello.worker_id,
            runtimes=frozenset(hello.runtimes),
            capacity=hello.capacity,
            hostname=hello.hostname,
            labels=dict(hello.labels),
            free=max(0, hello.capacity - sum(1 for r in hello.runs if r.state in ALIVE_RUN_STATES)),
        )
        conn.report(list(hello.runs))
        self.workers[hello.worker_id] = conn
        self._gone.pop(hello.worker_id, None)
        self._gauges()
        return conn

    def remove(self, conn: WorkerConnection) -> bool:
        """Forgets a closed connection; False when a newer connection of the same worker replaced it."""
        conn.closed = True
        for futures in conn.acks.values():
            for future in futures:
                if not future.done():
                    future.set_result(wpb.ControlAck(ok=False, error=DISCONNECTED))
        if self.workers.get(conn.worker_id) is conn:
            del self.workers[conn.worker_id]
            self._gone[conn.worker_id] = conn.last_heard
            while len(self._gone) > MAX_GONE:
                del self._gone[next(iter(self._gone))]
            self._gauges()
            return True
        return False

    def last_contact(self, worker_id: str | None) -> float | None:
        """When this replica last heard from the worker (monotonic), None if never (since it started)."""
        if not worker_id:
            return None
        conn = self.workers.get(worker_id)
        return conn.last_heard if conn is not None else self._gone.get(worker_id)

    def get(self, worker_id: str | None) -> WorkerConnection | None:
        return self.workers.get(worker_id) if worker_id else None

    def pick(self, placement: Placement, exclude: frozenset[str] = frozenset()) -> WorkerConnection | None:
        """The connected worker with the runtime and labels of `placement` with the most free slots."""
        candidates = [
            w
            for w in self.workers.values()
            if not w.closed
            and w.free > 0
            and w.taking()
            and placement.hosted_by(w)
            and w.worker_id not in exclude
        ]
        return max(candidates, key=lambda w: w.free, default=None)

    def unplaced(self, placement: Placement, replica_id: str) -> Unplaced:
        """Why `pick(placement)` finds no worker: none connected, none with the runtime and labels,
        or none free."""
        live = [w for w in self.workers.values() if not w.closed]
        if not live:
            return Unplaced(
                agent_pb2.PENDING_REASON_NO_WORKER,
                f"no worker is connected to agent-service replica {replica_id}",
            )
        hosting = [w for w in live if placement.hosted_by(w)]
        if not hosting:
            if not placement.selector:
                offered = ", ".join(sorted({r for w in live for r in w.runtimes})) or "none"
                message = (
                    f"no connected worker hosts the {placement.runtime!r} runtime (they host: {offered})"
                )
            else:
                message = f"no connected worker has {placement.describe()} ({_offers(live)})"
            return Unplaced(agent_pb2.PENDING_REASON_NO_RUNTIME, message)
        if any(w.free > 0 and not w.taking() for w in hosting):
            return Unplaced(
                agent_pb2.PENDING_REASON_NO_FREE_SLOT,
                f"the workers that have {placement.describe()} are still taking the runs sent to them",
                passing=True,
            )
        # Worker and slot counts only: a message that changed with every run would be rewritten often.
        slots = sum(w.capacity for w in hosting)
        return Unplaced(
            agent_pb2.PENDING_REASON_NO_FREE_SLOT,
            f"every worker that has {placement.describe()} is busy "
            f"({len(hosting)} worker(s), {slots} slot(s) in all)",
        )

    def connected(self) -> list[WorkerConnection]:
        """The live connections, by worker id."""
        return sorted((w for w in self.workers.values() if not w.closed), key=lambda w: w.worker_id)

    def any(self) -> WorkerConnection | None:
        return next((w for w in self.workers.values() if not w.closed), None)

    def _gauges(self) -> None:
        WORKERS.set(len(self.workers))
        WORKER_CAPACITY.set(sum(w.free for w in self.workers.values()))
        offering = Counter(runtime for w in self.workers.values() for runtime in w.runtimes)
        self._runtimes_seen |= offering.keys()
        for runtime in self._runtimes_seen:
            WORKER_RUNTIMES.labels(runtime).set(offering[runtime])
