"""The agent service's run coordinator (agent/runner.py) without a database: the real
AgentStateStore, state machine and worker registry over an in-memory `MemoryDatabase` (agent,
session and transition rows in dicts; events kept instead of going to the outbox), and a
`FakeWorker` that answers the coordinator's controls the way a worker process does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from sqlalchemy import Insert, Update

from godel.v1 import event_pb2, worker_service_pb2_grpc
from godel.v1 import worker_service_pb2 as wpb
from godel_server.agent.logstore import LogLine, LogStore
from godel_server.agent.models import AgentRow, AgentTransitionRow, SessionMessageRow, SessionRow
from godel_server.agent.runner import RunCoordinator
from godel_server.agent.state import AgentStateStore
from godel_server.agent.worker_servicer import WorkerServicer
from godel_server.agent.workers import WorkerConnection, WorkerRegistry
from godel_server.runtime.config import load_settings
from godel_server.runtime.db import Database
from godel_server.runtime.events import event_data, utcnow
from godel_server.runtime.publisher import EventPublisher
from godel_server.runtime.statuses import AgentStatus, LifecycleState


class MemorySession:
    """The part of an AsyncSession the coordinator and the state store use."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    async def get(self, model: type[Any], key: str, **_: Any) -> Any:
        if model is AgentRow:
            return self._db.agents.get(key)
        if model is SessionRow:
            return self._db.sessions.get(key)
        raise AssertionError(f"the coordinator read a {model.__name__}")

    def add(self, instance: object) -> None:
        if isinstance(instance, SessionRow):
            self._db.sessions[instance.id] = instance
        elif isinstance(instance, AgentTransitionRow):
            self._db.transitions.append(instance)
        elif isinstance(instance, SessionMessageRow):
            self._db.messages.append(instance)
        else:
            raise AssertionError(f"the coordinator added a {type(instance).__name__}")

    async def flush(self) -> None:
        return None

    # The store inserts transition rows without flushing first (runtime/rows.py).
    no_autoflush = contextlib.nullcontext()

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> None:
        """The statements the coordinator and the store run themselves: a transition row's INSERT
        (runtime/rows.py), kept like an added row, and `UPDATE agents SET ... WHERE id = ... AND
        owner = ...` (why an agent waits), applied to that agent's row."""
        if isinstance(statement, Insert) and getattr(statement.table, "name", "") == "agent_transitions":
            self.add(AgentTransitionRow(**(params or {})))
            return
        if (
            not isinstance(statement, Update)
            or getattr(statement.table, "name", "") != AgentRow.__tablename__
        ):
            raise AssertionError(f"the coordinator ran {statement}")
        params = dict(statement.compile().params)
        row = self._db.agents.get(params.pop("id_1"))
        if row is None or row.owner != params.pop("owner_1"):
            return
        for column in ("pending_reason", "pending_message"):
            if column in params:
                setattr(row, column, params[column])


class MemoryDatabase:
    def __init__(self) -> None:
        self.agents: dict[str, AgentRow] = {}
        self.sessions: dict[str, SessionRow] = {}
        self.transitions: list[AgentTransitionRow] = []
        self.messages: list[SessionMessageRow] = []
        self.events: list[event_pb2.Event] = []
        self.transactions = 0  # sessions opened, readers included

    @asynccontextmanager
    async def session(self) -> AsyncIterator[MemorySession]:
        self.transactions += 1
        yield MemorySession(self)

    reader = session

    def event_types(self, agent_id: str) -> list[str]:
        return [e.type for e in self.events if e.metadata.agent_id == agent_id]

    def last_event(self, event_type: str) -> Message | None:
        """The typed payload of the last event of `event_type`."""
        return event_data(next(e for e in reversed(self.events) if e.type == event_type))


class MemoryPublisher:
    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    async def publish(self, session: object, events: Sequence[event_pb2.Event]) -> None:
        self._db.events.extend(events)


class MemoryLogs:
    """The coordinator's log store: lines are kept, flushing is immediate."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None, LogLine]] = []

    def append(self, agent_id: str, session_id: str | None, lines: list[LogLine]) -> None:
        self.lines.extend((agent_id, session_id, line) for line in lines)

    async def flush(self) -> None:
        return None


class FakeWorker:
    """A connected worker: acks every control it gets (ok, or with `fail` set for an action, an
    error), and records the assignments, controls and run acknowledgements it was sent."""

    def __init__(self, registry: WorkerRegistry, worker_id: str, *, capacity: int = 4) -> None:
        self.conn: WorkerConnection = registry.add(
            wpb.WorkerHello(worker_id=worker_id, runtimes=["command", "openai"], capacity=capacity)
        )
        self.assigned: list[wpb.RunAssignment] = []
        self.controls: list[wpb.RunControl] = []
        self.acks: list[wpb.RunAck] = []
        self.fail: set[wpb.ControlAction.ValueType] = set()
        self._task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            message = await self.conn.outbox.get()
            if message.HasField("assign"):
                self.assigned.append(message.assign)
            elif message.HasField("run_ack"):
                self.acks.append(message.run_ack)
            elif message.HasField("control"):
                control = message.control
                self.controls.append(control)
                failed = control.action in self.fail
                self.conn.acked(
                    wpb.ControlAck(
                        run_id=control.run_id,
                        action=control.action,
                        ok=not failed,
                        error="refused" if failed else "",
                    )
                )

    def update(
        self, run_id: str, agent_id: str, state: wpb.RunState.ValueType, **fields: Any
    ) -> wpb.RunUpdate:
        return wpb.RunUpdate(run_id=run_id, agent_id=agent_id, state=state, **fields)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def coordinator(home: Path, **env: str) -> tuple[RunCoordinator, MemoryDatabase, WorkerRegistry]:
    """A run coordinator (replica "replica-1") over the in-memory database; not started (no
    lease, scheduling or supervision loops: tests call what those loops call)."""
    settings = load_settings("agent", {"GODEL_HOME": str(home), "GODEL_INSTANCE_ID": "replica-1", **env})
    db = MemoryDatabase()
    # The store runs for real; the casts hand it the in-memory stand-ins for its database.
    store = AgentStateStore(cast(Database, db), cast(EventPublisher, MemoryPublisher(db)), "replica-1")
    registry = WorkerRegistry()
    return RunCoordinator(settings, store, cast(LogStore, MemoryLogs()), registry), db, registry


def agent_row(
    *, command: tuple[str, ...] = ("true",), max_retries: int = 3, owner: str | None = "replica-1"
) -> AgentRow:
    """A new agent as CreateAgent stores it, waiting for its first run (`owner`: the replica that
    claimed it, None before a replica consumed its run request)."""
    now = utcnow()
    return AgentRow(
        id=str(uuid.uuid4()),
        model="m",
        task="do it",
        config={"runtime": "command", "command": list(command)},
        status=AgentStatus.PENDING,
        lifecycle_state=LifecycleState.INITIALIZING,
        commits=[],
        spawned_at=now,
        updated_at=now,
        runtime_seconds=0,
        retry_count=0,
        reschedules=0,
        max_retries=max_retries,
        budget_consumed=0.0,
        meta={},
        version=1,
        owner=owner,
    )


def new_agent(db: MemoryDatabase, *, command: tuple[str, ...] = ("true",), max_retries: int = 3) -> AgentRow:
    """An agent the coordinator owns, created and waiting for its first run."""
    row = agent_row(command=command, max_retries=max_retries)
    db.agents[row.id] = row
    return row


@asynccontextmanager
async def worker_stream(
    coordinator: object, worker_id: str = "w1"
) -> AsyncIterator[tuple[grpc.aio.StreamStreamCall, WorkerConnection]]:
    """The agent service's WorkerService on a free loopback port over `coordinator`, and a
    worker's Connect stream to it, welcomed: the stream's call and the replica's connection."""
    server = grpc.aio.server()
    registry = WorkerRegistry()
    servicer = WorkerServicer(cast(RunCoordinator, coordinator), registry, run_lease_seconds=10.0)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect()
            hello = wpb.WorkerHello(worker_id=worker_id, runtimes=["command"], capacity=1)
            await call.write(wpb.ConnectRequest(hello=hello))
            assert (await call.read()).HasField("welcome")
            conn = registry.get(worker_id)
            assert conn is not None
            try:
                yield call, conn
            finally:
                call.cancel()
    finally:
        await server.stop(None)
